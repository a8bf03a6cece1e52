"""Random search and regularized (aging) evolution on one loop, through the runtime's store and
executors: every evaluation is a trial, stored as it finishes; a rerun replays the search.

How this differs from optuna's ask/tell: optuna samples points of a fixed parameter space
(floats, ints, categories) and its samplers model that space. The spaces here are structures
(graphs, op lists, bit strings) that only the user's ``sample``/``mutate``/``key`` understand,
and the strategies need the mutation operator, a deduplication by canonical key and the aging
population, none of which optuna's ask/tell expresses. Continuous, low-dimensional problems
(the generator search's few parameters) should use optuna, and do.

Determinism, and how the workers stay busy: the strategy sees results in proposal order, and
``batch`` is a sliding window: candidate i is proposed right after result i - batch has been fed
back (the first ``batch`` candidates from the initial state), one ``random.Random(seed)`` drawing
every proposal. So what candidate i is depends on (seed, batch) only, never on the executor or on
which evaluation finished first, and with ``batch=1`` this is the plain sequential search. The
window keeps the executor full as results come: when the oldest outstanding evaluation comes
back, the next candidate goes out at once, without waiting for the rest of a "generation".
A slow evaluation holds back only the proposals that must see its result: while it runs, the
other workers go on with the other ``batch - 1`` candidates of the window, so ``batch`` larger
than the executor's capacity (the default for a pool is twice it) gives them work to go on with;
``timeout`` bounds how long any one evaluation can hold the window (the pool and Ray kill the
stuck worker; see ``normlab.runtime.executors``). Once every outstanding evaluation but the
slowest has returned, the workers wait for it: proposing past it would make the sequence depend
on timing.

Resume replays that sequence: a proposed candidate already finished in the store is not
evaluated again, its stored scores are used, and the state (population, ages, random generator)
comes out exactly as in an uninterrupted run; nothing is pickled.

Cost per evaluation: the engine adds a canonical JSON, a hash and one row of a batched SQLite
write to the strategy's own work. Results are group-committed (``Driver(commit_interval=...)``):
with a store on disk, a kill -9 loses at most the results of the last ``COMMIT_INTERVAL``
seconds (0.25 s), which a resume evaluates again.

Failing fast: when the first ``fail_fast`` evaluations (default 3) all fail with the same error
(``evaluate`` returning None, a string, a mapping without an objective, raising the same
exception...) and the budget is not spent yet, the search stops with one SearchError naming that
error instead of spending the budget on it (``fail_fast=0``: never). What was evaluated is stored.
"""

from __future__ import annotations

import logging
import math
import pickle
import random
import sys
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..runtime.driver import Driver
from ..runtime.executors import Executor, ExecutorError, SerialExecutor, check_timeout
from ..runtime.protocol import FINISHED, TrialResult, canonical_json, trial_id_of_json
from ..runtime.store import Store, check_name
from .history import Evaluation, SearchResult, check_objectives
from .space import SearchError, check_space, decode_arch, encode_arch, space_identity

__all__ = ["random_search", "evolution", "EvaluateTrial", "SEARCH_KIND", "COMMIT_INTERVAL", "FAIL_FAST"]

log = logging.getLogger("normlab.search")
SEARCH_KIND = "search"
COMMIT_INTERVAL = 0.25            # seconds: the most a kill -9 can lose of a search on disk
FAIL_FAST = 3                     # the first evaluations failing alike before a search stops


class _Slot:
    """A proposed candidate until its result is fed back."""

    __slots__ = ("arch", "key", "desc", "blob", "tid", "state", "metrics", "error")

    def __init__(self, arch: Any, key: str, desc: dict[str, Any], blob: str, tid: str) -> None:
        self.arch, self.key, self.desc, self.blob, self.tid = arch, key, desc, blob, tid
        self.state: str | None = None            # ok | diverged | failed once the result is in
        self.metrics: dict[str, Any] = {}
        self.error: str | None = None


class EvaluateTrial:
    """The trial function the runtime runs: decode the architecture, call the user's
    ``evaluate``, turn its float or mapping into metrics. Picklable when ``evaluate`` and the
    space are (module-level functions and classes)."""

    def __init__(self, evaluate: Callable[[Any], Any], space: Any) -> None:
        self.evaluate = evaluate
        self.space = space

    def __call__(self, description: Mapping[str, Any], context: Any = None) -> TrialResult:
        out = self.evaluate(decode_arch(self.space, description["arch"]))
        if isinstance(out, TrialResult):
            return out
        if isinstance(out, (int, float, np.number)) and not isinstance(out, bool):
            scores = {"score": float(out)}
        elif isinstance(out, Mapping) and out:
            scores = {}
            for k, v in out.items():
                if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                    raise TypeError(f"evaluate returned {k}={v!r}: expected a number")
                scores[str(k)] = float(v)
        else:
            raise TypeError(f"evaluate returned {type(out).__name__}: expected a float or a mapping "
                            f"name -> float")
        bad = [k for k, v in scores.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"evaluate returned a non-finite {', '.join(f'{k}={scores[k]}' for k in bad)}")
        return TrialResult("ok", metrics=scores)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SearchError(f"{name}={value!r} is invalid: expected an integer >= {low}")
    return value


def _open_store(store: Store | str | Path | None) -> tuple[Store, bool]:
    if store is None:
        return Store.in_memory(), True
    if isinstance(store, Store):
        return store, False
    return Store(store), True


class _Loop:
    """The shared loop: propose into a window of ``batch`` outstanding candidates, evaluate them
    through the Driver, feed results back in proposal order (see the module docstring).

    A strategy subclasses it with ``candidate(taken, pending) -> (arch, key) | None`` (its next
    proposal: ``taken`` holds the keys outstanding, ``pending`` how many there are; ``propose``
    does the dedup and the constraint) and ``tell(evaluation)`` (a result, in proposal order).
    """

    def __init__(self, strategy: str, space: Any, evaluate: Callable[[Any], Any], *, budget: int,
                 seed: int, objectives: Mapping[str, str] | None, constraint: Callable[[Any], bool] | None,
                 store: Any, name: str | None, executor: Executor | None, batch: int | None,
                 max_tries: int, progress: bool | None, settings: dict[str, Any], log_every: int,
                 timeout: float | None = None, fail_fast: int = FAIL_FAST) -> None:
        check_space(space)
        if not callable(evaluate):
            raise SearchError(f"evaluate={evaluate!r} is not callable: expected evaluate(arch) -> float or mapping")
        if constraint is not None and not callable(constraint):
            raise SearchError(f"constraint={constraint!r} is not callable: expected constraint(arch) -> bool")
        self.budget = _check_int("budget", budget, 1)
        self.seed = _check_int("seed", seed, 0)
        self.max_tries = _check_int("max_tries", max_tries, 1)
        self.objectives = check_objectives(objectives)
        self.strategy, self.space, self.constraint = strategy, space, constraint
        try:
            self.timeout = check_timeout(timeout)
        except ExecutorError as exc:
            raise SearchError(str(exc)) from None
        self.fail_fast = _check_int("fail_fast", fail_fast, 0)
        self.executor = executor or SerialExecutor()
        capacity = max(1, int(getattr(self.executor, "capacity", 1)))
        default = 1 if capacity == 1 or isinstance(self.executor, SerialExecutor) else 2 * capacity
        self.batch = _check_int("batch", batch, 1) if batch is not None else default
        self.trial = EvaluateTrial(evaluate, space)
        if not isinstance(self.executor, SerialExecutor):
            try:
                pickle.dumps(self.trial)
            except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
                raise SearchError(f"evaluate and the space must be picklable (module-level) to run on the "
                                  f"{getattr(self.executor, 'name', 'parallel')} executor: {exc}") from None
        self.name = check_name(name or strategy)         # before the store is opened (issue 28)
        identity = {"strategy": strategy, "seed": self.seed, "batch": self.batch,
                    "objectives": self.objectives, **space_identity(space), **settings}
        self.config = {**identity, "budget": self.budget}
        self.store, self.owns_store = _open_store(store)
        self.experiment = self.store.experiment(self.name, SEARCH_KIND, self.config, identity=identity)
        self.driver = Driver(self.store, self.experiment, self.trial, self.executor, timeout=self.timeout,
                             commit_interval=COMMIT_INTERVAL)
        self.rng = random.Random(self.seed)
        self.history: list[Evaluation] = []
        self.seen: set[str] = set()
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.log_every = log_every
        self.reused = 0
        self.infeasible = 0              # candidates the constraint rejected (never evaluated)
        self.identity = identity
        self.stopped: str | None = None

    # -- proposing ------------------------------------------------------------------------

    def propose(self, make: Callable[[], Any], taken: set[str]) -> tuple[Any, str] | None:
        """A feasible candidate with a key never seen, from ``make``; None when none was found."""
        rejected = 0
        for _ in range(self.max_tries):
            arch = make()
            key = str(self.space.key(arch))
            if key in self.seen or key in taken:
                continue
            if self.constraint is not None and not self.constraint(arch):
                rejected += 1
                self.infeasible += 1
                continue
            return arch, key
        if rejected == self.max_tries and not self.history:
            raise SearchError(f"the constraint rejected all {self.max_tries} candidates tried: the "
                              f"space seems to have no feasible architecture (max_tries={self.max_tries})")
        return None

    def next_batch(self, size: int) -> list[tuple[Any, str]]:
        """Up to ``size`` new feasible candidates with distinct keys (fewer when none is found)."""
        out: list[tuple[Any, str]] = []
        taken: set[str] = set()
        for _ in range(size):
            found = self.candidate(taken, pending=len(out))
            if found is None:
                break
            out.append(found)
            taken.add(found[1])
        return out

    def candidate(self, taken: set[str], pending: int) -> tuple[Any, str] | None:
        """The strategy's next proposal (``pending`` already proposed in this batch)."""
        raise NotImplementedError

    def tell(self, evaluation: Evaluation) -> None:
        """Strategy state update, in proposal order."""

    # -- evaluating -----------------------------------------------------------------------

    def _slot(self, arch: Any, key: str) -> _Slot:
        """A proposal as a trial: its description, canonical JSON and id; its stored result when
        a previous run finished it (resume)."""
        desc = {"key": key, "arch": encode_arch(self.space, arch)}
        blob = canonical_json(desc)
        slot = _Slot(arch, key, desc, blob, trial_id_of_json(self.experiment.id, blob))
        stored = self._stored.get(slot.tid)
        if stored is not None:
            slot.state, slot.metrics, slot.error = stored
            self.reused += 1
        return slot

    def _evaluation(self, slot: _Slot) -> Evaluation:
        ok, err = slot.state == "ok", slot.error
        scores = {k: float(v) for k, v in slot.metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if ok:
            missing_obj = [k for k in self.objectives if k not in scores]
            if missing_obj:
                ok, err = False, (f"evaluate returned {', '.join(sorted(scores)) or 'nothing'} but "
                                  f"the objectives need {', '.join(missing_obj)}")
        return Evaluation(len(self.history), slot.key, slot.arch, scores, "ok" if ok else "failed", err)

    def _check_failing(self, ev: Evaluation, trial_state: str | None) -> None:
        """Fail fast: the first ``fail_fast`` evaluations all failed with the same error."""
        if not self.fail_fast or self._any_ok:
            return
        if ev.ok:
            self._any_ok = True
            return
        if trial_state == "diverged":               # a verdict on the candidate, not a broken evaluate
            self._same_failures = (None, 0)
            return
        first = (ev.error or "failed").strip().splitlines()[0] if (ev.error or "").strip() else "failed"
        last, count = self._same_failures
        count = count + 1 if first == last else 1
        self._same_failures = (first, count)
        if count >= self.fail_fast and len(self.history) < self.budget:
            raise SearchError(f"search '{self.name}' stopped: its first {count} evaluations all failed with "
                              f"the same error, so evaluate looks broken: {first} (the evaluations so far "
                              f"are kept; fail_fast=0 goes on regardless)")

    def _feed(self, slot: _Slot, bar: Any) -> None:
        ev = self._evaluation(slot)
        self.history.append(ev)
        self.tell(ev)
        if bar is not None:
            bar.show(self._best_text() + self._counts_text())
        if self.log_every and len(self.history) % self.log_every == 0:
            log.info("%s '%s': %d/%d evaluated, best %s", self.strategy, self.name,
                     len(self.history), self.budget, self._best_text())
        self._check_failing(ev, slot.state)

    def run(self) -> SearchResult:
        from contextlib import nullcontext

        bar_ctx = nullcontext(None)
        if self.progress:
            bar_ctx = _ProgressBar(self.strategy, self.budget, self.objectives)
        try:
            with bar_ctx as bar:
                self._loop(bar)
            # the count of infeasible candidates is kept with the search (a replay after a
            # kill proposes the same candidates, so it recounts the same number)
            self.driver.flush()
            self.config = {**self.config, "infeasible": self.infeasible}
            if not self.store.readonly:
                self.store.experiment(self.name, SEARCH_KIND, self.config, identity=self.identity)
        finally:
            try:
                self.driver.close()
            finally:
                if self.owns_store:
                    self.store.close()
        return SearchResult(self.name, self.strategy, self.objectives, self.history, self.config,
                            self.stopped, self.infeasible)

    def _loop(self, bar: Any) -> None:
        """Propose into the window, run what is proposed, feed results back in proposal order
        (see the module docstring: one proposal after each result fed back)."""
        driver, store = self.driver, self.store
        store.reap_dead_owners()
        self._stored = store.finished_results(self.experiment)
        self._any_ok, self._same_failures = False, (None, 0)
        window: deque[_Slot] = deque()             # proposed, not fed back yet, in proposal order
        queue: deque[_Slot] = deque()              # proposed, waiting for room in the executor
        flight: dict[str, _Slot] = {}              # running here
        busy: dict[str, _Slot] = {}                # running under another driver: waited for
        blocked = False                            # no candidate found: wait for the window to drain
        try:
            while len(self.history) < self.budget:
                if not blocked and len(window) < self.batch and len(self.history) + len(window) < self.budget:
                    found = self.candidate({s.key for s in window}, pending=len(window))
                    if found is None:
                        blocked = True
                    else:
                        arch, key = found
                        self.seen.add(key)
                        slot = self._slot(arch, key)
                        window.append(slot)
                        if slot.state is None:
                            queue.append(slot)
                        continue                       # fill the window before anything else
                if not window:                         # blocked with nothing outstanding
                    self.stopped = (f"no new architecture found in {self.max_tries} tries after "
                                    f"{len(self.history)} evaluations: the space looks exhausted")
                    warnings.warn(f"search '{self.name}' stopped early: {self.stopped}", stacklevel=4)
                    break
                while queue and driver.has_room:
                    slot = queue.popleft()
                    if driver.submit(slot.desc, trial=slot.tid, description_json=slot.blob) is None:
                        busy[slot.tid] = slot
                    else:
                        flight[slot.tid] = slot
                if window[0].state is not None:        # feed one back, then propose one
                    self._feed(window.popleft(), bar)
                    if not window:
                        blocked = False
                    continue
                if flight:
                    for done in driver.wait(timeout=0.5 if busy else None):
                        slot = flight.pop(done.id)
                        slot.state, slot.metrics, slot.error = (done.result.status, done.result.metrics,
                                                                done.result.error)
                elif busy:
                    time.sleep(0.5)
                if busy:
                    self._check_elsewhere(busy, queue)
        except BaseException:
            driver.interrupt()
            raise

    def _check_elsewhere(self, busy: dict[str, _Slot], queue: deque) -> None:
        """Trials another driver was running: take its result, or the trial back if it gave up."""
        self.driver.flush()
        now = self.store.status_of(busy)
        finished = [tid for tid in busy if now.get(tid) in (*FINISHED, "failed")]
        for r in self.store.rows(ids=finished) if finished else ():
            slot = busy.pop(r["id"])
            slot.state, slot.metrics, slot.error = r["status"], r["metrics"], r["error"]
        for tid in list(busy):          # given back, or its lease may run out: try to claim it again
            queue.append(busy.pop(tid))

    def _counts_text(self) -> str:
        """What did not count as a success so far: failed (or rejected) evaluations, and
        candidates the constraint turned down before evaluation."""
        failed = sum(not e.ok for e in self.history)
        parts = ([f"{failed} failed"] if failed else []) + (
            [f"{self.infeasible} infeasible"] if self.infeasible else [])
        return f" ({', '.join(parts)})" if parts else ""

    def _best_text(self) -> str:
        ok = [e for e in self.history if e.ok]
        if not ok:
            return "-"
        parts = []
        for name, d in self.objectives.items():
            vals = [e.scores[name] for e in ok if name in e.scores]
            if vals:
                parts.append(f"{name}={max(vals) if d == 'max' else min(vals):.4g}")
        return " ".join(parts)


class _ProgressBar:
    def __init__(self, strategy: str, total: int, objectives: Mapping[str, str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn(f"[bold]{strategy}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("best {task.fields[best]}"),
                                 console=Console(stderr=True), transient=False)
        self.total = total

    def __enter__(self) -> "_ProgressBar":
        self.progress.start()
        self.task = self.progress.add_task("search", total=self.total, best="-")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def advance(self) -> None:
        pass                                 # the bar counts evaluations fed back (show)

    def show(self, best: str) -> None:
        self.progress.update(self.task, advance=1, best=best)


class _Random(_Loop):
    def candidate(self, taken: set[str], pending: int) -> tuple[Any, str] | None:
        return self.propose(lambda: self.space.sample(self.rng), taken)


class _Evolution(_Loop):
    def __init__(self, *args: Any, population: int, sample_size: int, selection: str,
                 regularized: bool, crossover: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population_size = population
        self.sample_size = sample_size
        self.selection = selection
        self.regularized = regularized
        self.crossover = crossover
        self.population: deque[Evaluation] = deque()

    def _fitness(self, members: list[Evaluation]) -> list[float]:
        """Each objective min-max normalised over ``members`` (so that 1 is best), averaged; with
        one objective, the signed score itself (same order, no normalising needed)."""
        if len(self.objectives) == 1:
            (name, d), = self.objectives.items()
            return [m.scores[name] if d == "max" else -m.scores[name] for m in members]
        total = [0.0] * len(members)
        for name, d in self.objectives.items():
            vals = [m.scores[name] if d == "max" else -m.scores[name] for m in members]
            lo, hi = min(vals), max(vals)
            if hi > lo:
                for i, v in enumerate(vals):
                    total[i] += (v - lo) / (hi - lo)
        return [t / len(self.objectives) for t in total]

    def _winner(self) -> Evaluation:
        k = min(self.sample_size, len(self.population))
        contenders = self.rng.sample(self.population, k)
        if self.selection == "pareto" and len(self.objectives) > 1:
            from .history import pareto_mask

            pts = np.array([[m.scores[o] for o in self.objectives] for m in contenders])
            front = [m for m, keep in zip(contenders, pareto_mask(pts, self.objectives)) if keep]
            return front[self.rng.randrange(len(front))]
        fit = self._fitness(contenders)
        return contenders[fit.index(max(fit))]

    def _child(self) -> Any:
        parent = self._winner()
        cross = getattr(self.space, "crossover", None)
        if self.crossover > 0 and callable(cross) and self.rng.random() < self.crossover:
            other = self._winner()
            return self.space.mutate(cross(parent.arch, other.arch, self.rng), self.rng)
        return self.space.mutate(parent.arch, self.rng)

    def candidate(self, taken: set[str], pending: int) -> tuple[Any, str] | None:
        warming = len(self.history) + pending < self.population_size or not self.population
        make = (lambda: self.space.sample(self.rng)) if warming else self._child
        found = self.propose(make, taken)
        if found is None and not warming:                # mutations exhausted: try fresh samples
            found = self.propose(lambda: self.space.sample(self.rng), taken)
        return found

    def tell(self, evaluation: Evaluation) -> None:
        if not evaluation.ok:
            return
        self.population.append(evaluation)
        if len(self.population) > self.population_size:
            if self.regularized:
                self.population.popleft()                 # aging: the oldest dies
            else:
                fit = self._fitness(list(self.population))
                del self.population[fit.index(min(fit))]


def random_search(space: Any, evaluate: Callable[[Any], Any], *, budget: int, seed: int = 0,
                  objectives: Mapping[str, str] | None = None,
                  constraint: Callable[[Any], bool] | None = None, store: Any = None,
                  name: str | None = None, executor: Executor | None = None, batch: int | None = None,
                  max_tries: int = 1000, progress: bool | None = None, log_every: int = 0,
                  timeout: float | None = None, fail_fast: int = FAIL_FAST) -> SearchResult:
    """Evaluate ``budget`` distinct feasible architectures sampled from ``space``.

    ``evaluate(arch)`` returns a float (higher is better: objective ``score``) or a mapping name
    -> float with ``objectives`` saying which to ``"max"``/``"min"``. ``constraint(arch)`` is
    checked before evaluation (an infeasible arch is never evaluated). ``store`` (a path or a
    Store) keeps every evaluation and makes a rerun resume; without it nothing is written to
    disk. ``executor`` runs several evaluations at once, up to ``batch`` outstanding (default:
    twice its capacity, 1 for the serial executor); the sequence depends on (seed, batch) only.
    ``timeout`` (seconds) limits each evaluation: one that runs longer is stored as failed ("timed
    out after N s"); a process pool or Ray kills and replaces its worker, the serial executor
    cannot interrupt it (it waits, then records the time-out). ``fail_fast``: stop with one error
    when the first that many evaluations fail alike (0: never). See the module docstring.
    """
    return _Random("random", space, evaluate, budget=budget, seed=seed, objectives=objectives,
                   constraint=constraint, store=store, name=name, executor=executor, batch=batch,
                   max_tries=max_tries, progress=progress, settings={}, log_every=log_every,
                   timeout=timeout, fail_fast=fail_fast).run()


def evolution(space: Any, evaluate: Callable[[Any], Any], *, budget: int, population: int = 50,
              sample_size: int = 10, seed: int = 0, selection: str = "mean", regularized: bool = True,
              crossover: float = 0.0, objectives: Mapping[str, str] | None = None,
              constraint: Callable[[Any], bool] | None = None, store: Any = None,
              name: str | None = None, executor: Executor | None = None, batch: int | None = None,
              max_tries: int = 1000, progress: bool | None = None, log_every: int | None = None,
              timeout: float | None = None, fail_fast: int = FAIL_FAST) -> SearchResult:
    """Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image
    Classifier Architecture Search": the first ``population`` evaluations are random samples;
    then each child is a mutation of a tournament winner (``sample_size`` members drawn at
    random from the population), and once the population is full the oldest member dies
    (``regularized=False``: the worst dies instead).

    ``selection="mean"``: the winner has the best mean over the objectives, each min-max
    normalised over the tournament; ``selection="pareto"``: the winner is a random member of the
    tournament's Pareto front (the two options of the EvoNorm paper, Liu et al. 2020). With
    ``crossover`` > 0 and a space that has ``crossover(a, b, rng)``, that fraction of children
    cross two winners before mutating. Failed evaluations count towards the budget but never
    join the population. Everything else as in :func:`random_search`.
    """
    _check_int("population", population, 2)
    _check_int("sample_size", sample_size, 1)
    if sample_size > population:
        raise SearchError(f"sample_size={sample_size} is larger than population={population}: "
                          f"expected 1 <= sample_size <= population")
    if selection not in ("mean", "pareto"):
        raise SearchError(f"selection={selection!r} is invalid: expected 'mean' or 'pareto'")
    if isinstance(crossover, bool) or not isinstance(crossover, (int, float)) or not 0 <= crossover <= 1:
        raise SearchError(f"crossover={crossover!r} is invalid: expected a probability in [0, 1]")
    settings = {"population": population, "sample_size": sample_size, "selection": selection,
                "regularized": bool(regularized), "crossover": float(crossover)}
    return _Evolution("evolution", space, evaluate, budget=budget, seed=seed, objectives=objectives,
                      constraint=constraint, store=store, name=name, executor=executor, batch=batch,
                      max_tries=max_tries, progress=progress, settings=settings,
                      log_every=population if log_every is None else log_every,
                      timeout=timeout, fail_fast=fail_fast, population=population, sample_size=sample_size, selection=selection,
                      regularized=bool(regularized), crossover=float(crossover)).run()
