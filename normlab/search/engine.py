"""The one search loop (:class:`Search`): a strategy (``normlab.search.Strategy``: random search,
regularized evolution, optuna's samplers, NAGO's generator search, or your own) proposes, the loop
evaluates through the runtime's store and executors, every evaluation a trial stored as it
finishes, and feeds the results back; a rerun replays the search.

The split is optuna's sampler/study split: the strategy (the sampler) proposes ``n`` candidates
and observes results (``strategy.py``); the loop (the study) owns the store, the dedup by key, the
executors and the window, resume, time-outs, fail-fast and progress. Unlike optuna's ask/tell,
a candidate is any structure (graph, op list, bit string) that the space's ``sample``/``mutate``/
``key`` understand, so evolution's mutation and aging population are strategies too; optuna's
own samplers, for points of a fixed parameter space, run as one (``OptunaStrategy``,
``NagoStrategy``).

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
from ..runtime.protocol import FINISHED, RunContext, TrialResult, canonical_json, trial_id_of_json
from ..runtime.store import Store, check_name
from .history import Evaluation, SearchResult, check_objectives
from .space import SearchError, check_space, decode_arch, encode_arch, space_identity
from .strategy import Candidate, RandomSearch, RegularizedEvolution, Strategy, check_strategy

__all__ = ["Search", "optimize", "random_search", "evolution", "EvaluateTrial", "SEARCH_KIND", "COMMIT_INTERVAL",
           "FAIL_FAST"]

log = logging.getLogger("normlab.search")
SEARCH_KIND = "search"
COMMIT_INTERVAL = 0.25            # seconds: the most a kill -9 can lose of a search on disk
FAIL_FAST = 3                     # the first evaluations failing alike before a search stops


class _Slot:
    """A proposed candidate until its result is fed back."""

    __slots__ = ("arch", "key", "desc", "blob", "tid", "counts", "state", "metrics", "error")

    def __init__(self, arch: Any, key: str, desc: Any, blob: str, tid: str, counts: bool = True) -> None:
        self.arch, self.key, self.desc, self.blob, self.tid, self.counts = arch, key, desc, blob, tid, counts
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


class Search:
    """The one search loop: a :class:`~normlab.search.Strategy` proposes into a window of
    ``batch`` outstanding candidates, the Driver evaluates them through the executor into the
    store, and the results are fed back to the strategy in proposal order (see the module
    docstring). Every search in normlab runs here: random search, evolution, optuna's samplers,
    NAGO's generator search and a user's own strategy (:func:`optimize`).

    ``trial`` is the runtime's trial function (``EvaluateTrial(evaluate, space)`` for a user's
    ``evaluate``). ``kind``, ``identity`` and ``config`` name the stored experiment (default: a
    ``search`` whose identity is the strategy, seed, batch, objectives, space and the strategy's
    settings); ``context`` is the RunContext handed to every trial.
    """

    def __init__(self, strategy: Strategy, space: Any, trial: Callable[..., Any], *, budget: int,
                 seed: int = 0, objectives: Mapping[str, str] | None = None,
                 constraint: Callable[[Any], bool] | None = None, store: Any = None, name: str | None = None,
                 executor: Executor | None = None, batch: int | None = None, max_tries: int = 1000,
                 progress: bool | None = None, log_every: int = 0, timeout: float | None = None,
                 fail_fast: int = FAIL_FAST, kind: str = SEARCH_KIND, identity: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, context: RunContext | None = None) -> None:
        self.strategy = check_strategy(strategy, SearchError)
        if constraint is not None and not callable(constraint):
            raise SearchError(f"constraint={constraint!r} is not callable: expected constraint(arch) -> bool")
        self.budget = _check_int("budget", budget, 1)
        self.seed = _check_int("seed", seed, 0)
        self.max_tries = _check_int("max_tries", max_tries, 1)
        self.objectives = check_objectives(objectives)
        self.space, self.constraint, self.kind = space, constraint, kind
        try:
            self.timeout = check_timeout(timeout)
        except ExecutorError as exc:
            raise SearchError(str(exc)) from None
        self.fail_fast = _check_int("fail_fast", fail_fast, 0)
        self.executor = executor or SerialExecutor()
        capacity = max(1, int(getattr(self.executor, "capacity", 1)))
        default = 1 if capacity == 1 or isinstance(self.executor, SerialExecutor) else 2 * capacity
        self.batch = _check_int("batch", batch, 1) if batch is not None else default
        self.trial = trial
        if not isinstance(self.executor, SerialExecutor):
            try:
                pickle.dumps(trial)
            except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
                raise SearchError(f"evaluate and the space must be picklable (module-level) to run on the "
                                  f"{getattr(self.executor, 'name', 'parallel')} executor: {exc}") from None
        self.name = check_name(name or strategy.name)     # before the store is opened (issue 28)
        if identity is None:
            identity = {"strategy": strategy.name, "seed": self.seed, "batch": self.batch,
                        "objectives": self.objectives, **space_identity(space), **strategy.settings()}
        self.identity = dict(identity)
        self.config = dict(config) if config is not None else {**self.identity, "budget": self.budget}
        self._init_state(progress, log_every)
        self.strategy.start(self)                 # the strategy checks what it needs before any write
        self.store, self.owns_store = _open_store(store)
        try:
            self.experiment = self.store.experiment(self.name, kind, self.config, identity=self.identity)
            self.driver = Driver(self.store, self.experiment, trial, self.executor, context=context,
                                 timeout=self.timeout, commit_interval=COMMIT_INTERVAL)
        except BaseException:
            if self.owns_store:
                self.store.close()
            raise

    def _init_state(self, progress: bool | None, log_every: int) -> None:
        self.rng = random.Random(self.seed)
        self.history: list[Evaluation] = []
        self.seen: set[str] = set()               # every key proposed: the dedup
        self.pending = 0                          # proposals out (not fed back yet)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.log_every = log_every
        self.reused = 0
        self.infeasible = 0                       # candidates the constraint rejected (never evaluated)
        self.stopped: str | None = None
        self.counted = 0                          # evaluations fed back that count towards the budget
        self.out_counted = 0                      # outstanding proposals that count towards it

    # -- what strategies use ----------------------------------------------------------------

    def fresh(self, make: Callable[[], Any]) -> Candidate | None:
        """A feasible candidate with a key never proposed, from ``make``; None when ``max_tries``
        calls found none."""
        rejected = 0
        key_of, seen, constraint = self.space.key, self.seen, self.constraint
        for _ in range(self.max_tries):
            arch = make()
            key = str(key_of(arch))
            if key in seen:
                continue
            if constraint is not None and not constraint(arch):
                rejected += 1
                self.infeasible += 1
                continue
            return Candidate(arch, key)
        if rejected == self.max_tries and not self.history:
            raise SearchError(f"the constraint rejected all {self.max_tries} candidates tried: the "
                              f"space seems to have no feasible architecture (max_tries={self.max_tries})")
        return None

    def is_new(self, key: str) -> bool:
        """Whether ``key`` was never proposed in this search (neither fed back nor outstanding)."""
        return key not in self.seen

    # -- evaluating -----------------------------------------------------------------------

    def _slot(self, c: Any) -> _Slot:
        """A proposal as a trial: its description, canonical JSON and id; its stored result when
        a previous run finished it (resume)."""
        if not isinstance(c, Candidate):                  # a bare architecture from a strategy
            if self.space is None:
                raise SearchError(f"strategy {self.strategy.name!r} proposed {c!r}: without a space, "
                                  f"propose normlab.search.Candidate(arch, key, description)")
            c = Candidate(c, str(self.space.key(c)))
        if c.key in self.seen:
            raise SearchError(f"strategy {self.strategy.name!r} proposed {c.key!r} again: a key is "
                              f"evaluated once per search (use search.fresh(make) or search.is_new(key))")
        self.seen.add(c.key)
        desc = c.description
        if desc is None:
            desc = {"key": c.key, "arch": encode_arch(self.space, c.arch)}
        blob = canonical_json(desc)
        slot = _Slot(c.arch, c.key, desc, blob, trial_id_of_json(self.experiment.id, blob), c.counts)
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
            for k in self.objectives:
                v = scores.get(k)
                if v is None:
                    missing_obj = [k for k in self.objectives if k not in scores]
                    ok, err = False, (f"evaluate returned {', '.join(sorted(scores)) or 'nothing'} but "
                                      f"the objectives need {', '.join(missing_obj)}")
                    break
                if not math.isfinite(v):
                    ok, err = False, err or f"a non-finite {k}={v}"
                    break
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
        if count >= self.fail_fast and self.counted < self.budget:
            raise SearchError(f"search '{self.name}' stopped: its first {count} evaluations all failed with "
                              f"the same error, so evaluate looks broken: {first} (the evaluations so far "
                              f"are kept; fail_fast=0 goes on regardless)")

    def _feed(self, slot: _Slot, bar: Any) -> None:
        ev = self._evaluation(slot)
        self.history.append(ev)
        self.counted += slot.counts
        self.out_counted -= slot.counts
        self.pending -= 1
        self.strategy.observe(ev)
        if bar is not None:
            bar.show(self._best_text() + self._counts_text())
        if self.log_every and len(self.history) % self.log_every == 0:
            log.info("%s '%s': %d/%d evaluated, best %s", self.strategy.name, self.name,
                     len(self.history), self.budget, self._best_text())
        self._check_failing(ev, slot.state)

    def run(self) -> SearchResult:
        """Run (or resume) the search; the SearchResult of what was fed back."""
        from contextlib import nullcontext

        bar_ctx = nullcontext(None)
        if self.progress:
            bar_ctx = _ProgressBar(self.strategy.name, self.budget, self.objectives)
        try:
            with bar_ctx as bar:
                self._loop(bar)
            # the count of infeasible candidates is kept with the search (a replay after a
            # kill proposes the same candidates, so it recounts the same number)
            self.driver.flush()
            if self.kind == SEARCH_KIND or self.infeasible:
                self.config = {**self.config, "infeasible": self.infeasible}
            if not self.store.readonly:
                self.store.experiment(self.name, self.kind, self.config, identity=self.identity)
        finally:
            try:
                self.driver.close()
            finally:
                if self.owns_store:
                    self.store.close()
        return SearchResult(self.name, self.strategy.name, self.objectives, self.history, self.config,
                            self.stopped, self.infeasible)

    def _propose(self, window: deque, queue: deque, left: int, room: int) -> bool:
        """Ask the strategy for what the window has room for (beyond the budget: its ``extra``);
        put them in the window, those not finished before in the queue. False when it found fewer
        than asked."""
        n = min(room, left) if left > 0 else room
        found = self.strategy.propose(n) if left > 0 else self.strategy.extra(n)
        if len(found) > n:
            raise SearchError(f"strategy {self.strategy.name!r} proposed {len(found)} candidates when "
                              f"asked for {n}")
        for c in found:
            slot = self._slot(c)
            if left <= 0:
                slot.counts = False                        # an extra never counts towards the budget
            window.append(slot)
            self.pending += 1
            self.out_counted += slot.counts
            if slot.state is None:
                queue.append(slot)
        return len(found) == n

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
        extra_at = -1                              # history length when extra() last found nothing
        try:
            while True:
                room = self.batch - len(window)
                left = self.budget - self.counted - self.out_counted
                if room > 0 and (not blocked if left > 0 else extra_at != len(self.history)):
                    if self._propose(window, queue, left, room):
                        continue                       # fill the window before anything else
                    if left > 0:
                        blocked = True
                    else:
                        extra_at = len(self.history)
                if not window:                         # nothing outstanding, nothing new
                    if self.counted < self.budget:
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
                self._wait(flight, busy, queue)
        except BaseException:
            driver.interrupt()
            raise

    def _wait(self, flight: dict[str, _Slot], busy: dict[str, _Slot], queue: deque) -> None:
        """Wait for a result here (or, for trials another driver runs, poll the store)."""
        if flight:
            for done in self.driver.wait(timeout=0.5 if busy else None):
                slot = flight.pop(done.id)
                slot.state, slot.metrics, slot.error = done.result.status, done.result.metrics, done.result.error
        elif busy:
            time.sleep(0.5)
        if busy:
            self._check_elsewhere(busy, queue)

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


def _user_trial(space: Any, evaluate: Callable[[Any], Any]) -> EvaluateTrial:
    """The trial function for a user's ``evaluate(arch)`` over ``space`` (both checked)."""
    check_space(space)
    if not callable(evaluate):
        raise SearchError(f"evaluate={evaluate!r} is not callable: expected evaluate(arch) -> float or mapping")
    return EvaluateTrial(evaluate, space)


def optimize(space: Any, evaluate: Callable[[Any], Any], strategy: Strategy, *, budget: int, seed: int = 0,
             objectives: Mapping[str, str] | None = None, constraint: Callable[[Any], bool] | None = None,
             store: Any = None, name: str | None = None, executor: Executor | None = None,
             batch: int | None = None, max_tries: int = 1000, progress: bool | None = None,
             log_every: int = 0, timeout: float | None = None, fail_fast: int = FAIL_FAST) -> SearchResult:
    """Run any :class:`~normlab.search.Strategy` (your own subclass included) on the search loop:
    ``budget`` evaluations of what it proposes, each stored in ``store`` as it finishes, fed back
    to ``strategy.observe`` in proposal order; a rerun with the same store resumes by replay.
    Every other argument as in :func:`random_search`."""
    trial = _user_trial(space, evaluate)
    return Search(strategy, space, trial, budget=budget, seed=seed, objectives=objectives,
                  constraint=constraint, store=store, name=name, executor=executor, batch=batch,
                  max_tries=max_tries, progress=progress, log_every=log_every, timeout=timeout,
                  fail_fast=fail_fast).run()


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
    return Search(RandomSearch(), space, _user_trial(space, evaluate), budget=budget, seed=seed,
                  objectives=objectives, constraint=constraint, store=store, name=name, executor=executor,
                  batch=batch, max_tries=max_tries, progress=progress, log_every=log_every, timeout=timeout,
                  fail_fast=fail_fast).run()


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
    strategy = RegularizedEvolution(population, sample_size, selection, bool(regularized), float(crossover))
    return Search(strategy, space, _user_trial(space, evaluate), budget=budget, seed=seed, objectives=objectives,
                  constraint=constraint, store=store, name=name, executor=executor, batch=batch,
                  max_tries=max_tries, progress=progress,
                  log_every=population if log_every is None else log_every, timeout=timeout,
                  fail_fast=fail_fast).run()
