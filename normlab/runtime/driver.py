"""The driver: plan -> store -> dispatch -> finish -> resume, shared by every study and search.

Only the driver writes the store. A trial is claimed (status ``running``, this driver as owner,
a lease) only when it is handed to the executor, and its lease is renewed by a heartbeat thread
while it runs; its result is stored the moment it comes back. So:

- a killed driver loses only its in-flight trials, which become claimable when their lease runs
  out (``lease`` seconds); an interrupted one (SIGINT/SIGTERM) gives them back at once;
- two drivers on one store never run the same trial: each claims before it dispatches, and a
  driver that finds a trial claimed by another waits for it (or takes it over when the other's
  lease expires) instead of training it again.

Two ways in: ``run(descriptions)`` for a fixed plan (the batch-size study), and
``submit``/``wait`` for a steady-state search that proposes after each result.

Group commit (``commit_interval`` > 0, what the search engine uses): results are not committed
one transaction each but queued and committed together: with the next trial's claim (one
transaction for both), when ``commit_interval`` seconds have passed since the oldest queued one
(a background thread sees to it while the driver waits), before any read, and when the driver
closes or is interrupted. So a SIGKILL loses at most the results that came back in the last
``commit_interval`` seconds (they are evaluated again on resume, nothing else is). While trials
are fast (the last one came back within ``FAST`` seconds of its claim), claims are queued too,
so a stream of quick evaluations costs one transaction per ``commit_interval``; once trials are
slow, each claim is committed before its trial starts, as without group commit (the first slow
one's within ``commit_interval``). Two drivers on one store may thus both run a trial claimed in
the same interval; the first result is kept. On an in-memory
store, which no other process can see, claims are always queued, and everything is written in
batches of up to ``MEMORY_BATCH`` trials.

``timeout`` (seconds) limits each trial; the executor enforces it (see executors).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .executors import Executor, SerialExecutor, check_timeout
from .protocol import FINISHED, RunContext, TrialResult, canonical_json, trial_id_of_json
from .store import ExperimentRecord, Store, new_owner

__all__ = ["Driver", "Completed", "Outcome", "Sink", "MEMORY_BATCH"]

MEMORY_BATCH = 1024                     # queued writes committed together at the most
FAST = 0.01                             # seconds: a trial this quick has its successors' claims queued


@dataclass
class Completed:
    """A trial that came back: its id, description and result (already stored)."""

    id: str
    description: dict[str, Any]
    result: TrialResult


@dataclass
class Outcome:
    """What ``Driver.run`` did: planned, skipped (finished before), ran, and results by status."""

    planned: int = 0
    skipped: int = 0
    ran: int = 0
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    elsewhere: int = 0                    # finished by another driver while we waited
    results: list[Completed] = field(default_factory=list)

    def count(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)


class Sink:
    """Something that hears about every stored result (MLflow, a log file...)."""

    def on_result(self, experiment: ExperimentRecord, done: Completed) -> None:  # pragma: no cover
        ...


class _Heartbeat(threading.Thread):
    def __init__(self, driver: "Driver") -> None:
        super().__init__(daemon=True, name="normlab-lease")
        self.driver = driver
        self.stop = threading.Event()

    def run(self) -> None:
        driver = self.driver
        every = max(0.05, driver.lease / 3)
        tick = min(every, driver.commit_interval) if driver.commit_interval > 0 else every
        renewed = time.monotonic()
        while not self.stop.wait(tick):
            try:
                if driver._queued and time.monotonic() - driver._oldest >= driver.commit_interval:
                    driver.flush()
                if time.monotonic() - renewed >= every:
                    renewed = time.monotonic()
                    ids = list(driver._flight)
                    if ids:
                        driver.store.renew(driver.owner, ids, driver.lease)
            except Exception:  # noqa: BLE001 - the next renewal, flush or the result will tell
                pass


class Driver:
    """Runs one experiment's trials through an executor into the store.

    ``fn(description, context) -> TrialResult | mapping`` is a picklable module-level function;
    ``context`` (a RunContext) carries where data lives, never the trial description.
    """

    def __init__(self, store: Store, experiment: ExperimentRecord, fn: Callable[..., Any],
                 executor: Executor | None = None, *, context: RunContext | None = None,
                 lease: float = 120.0, sinks: Sequence[Sink] = (), owner: str | None = None,
                 timeout: float | None = None, commit_interval: float = 0.0) -> None:
        self.store = store
        self.timeout = check_timeout(timeout)
        self.commit_interval = float(commit_interval)
        self._lock = threading.RLock()
        self._starts: list[tuple[str, str]] = []            # queued (in-memory store only)
        self._finishes: list[tuple[str, TrialResult]] = []  # queued results
        self._queued = 0
        self._oldest = 0.0
        self._sent: dict[str, float] = {}                  # id -> when it was handed out
        self._fast = False                                 # the last trial was quick
        self.experiment = experiment
        self.executor = executor or SerialExecutor()
        self.context = context or RunContext()
        self.call = functools.partial(fn, context=self.context)
        self.lease = float(lease)
        self.sinks = list(sinks)
        self.owner = owner or new_owner()
        self._flight: dict[str, dict[str, Any]] = {}
        self._copies: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._beat: _Heartbeat | None = None

    # -- one trial at a time (searches) ---------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    @property
    def has_room(self) -> bool:
        return self.executor.has_room

    def add(self, descriptions: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store trials as pending (idempotent); returns their ids."""
        return self.store.add_trials(self.experiment, descriptions)

    def submit(self, description: Mapping[str, Any], trial: str | None = None,
               description_json: str | None = None) -> str | None:
        """Claim a trial and hand it to the executor; returns its id, or None when it could not
        be claimed (finished already, or running under another driver's live lease). With group
        commit the trial need not be stored yet (it is inserted as it is claimed);
        ``description_json`` is its canonical JSON when the caller has it."""
        description = dict(description)
        if self.commit_interval > 0:
            blob = description_json or canonical_json(description)
            tid = trial or trial_id_of_json(self.experiment.id, blob)
            with self._lock:
                if self.store.memory or self._fast:     # nobody else sees it, or quick: claim in bulk
                    self._queue_write(starts=(tid, blob))
                    held = True
                else:                                   # claim now, with what is queued
                    held = self.store.write_trials(self.experiment, start=[*self._starts, (tid, blob)],
                                                   finish=self._finishes, owner=self.owner,
                                                   lease=self.lease)[-1]
                    self._starts, self._finishes, self._queued = [], [], 0
            if not held:
                return None
        else:
            tid = trial or self.add([description])[0]
            if not self.store.claim(tid, self.owner, self.lease):
                return None
        self._flight[tid] = description
        self._sent[tid] = time.monotonic()
        self._start_heartbeat()
        if self.timeout is None:
            self.executor.submit(tid, self.call, description)
        else:
            self.executor.submit(tid, self.call, description, timeout=self.timeout)
        return tid

    def _queue_write(self, starts: tuple[str, str] | None = None,
                     finishes: tuple[str, TrialResult] | None = None) -> None:
        with self._lock:
            if not self._queued:
                self._oldest = time.monotonic()
            if starts is not None:
                self._starts.append(starts)
            if finishes is not None:
                self._finishes.append(finishes)
            self._queued += 1
            if self._queued >= MEMORY_BATCH or (
                    not self.store.memory and time.monotonic() - self._oldest >= self.commit_interval):
                self.flush()

    def flush(self) -> None:
        """Commit the queued writes (group commit) in one transaction."""
        with self._lock:
            if not self._queued:
                return
            self.store.write_trials(self.experiment, start=self._starts, finish=self._finishes,
                                    owner=self.owner, lease=self.lease)
            self._starts, self._finishes, self._queued = [], [], 0      # kept if the write failed

    def wait(self, timeout: float | None = None) -> list[Completed]:
        """Results that came back, each stored (or, with group commit, queued for the next
        commit) before it is returned and told to the sinks."""
        out = []
        for tid, result in self.executor.poll(timeout):
            description = self._flight.pop(tid)
            self._fast = time.monotonic() - self._sent.pop(tid, 0.0) < FAST
            if self.commit_interval > 0:
                self._queue_write(finishes=(tid, result))
            else:
                self.store.finish(tid, result)
            done = Completed(tid, description, result)
            for sink in self.sinks:
                try:
                    sink.on_result(self.experiment, done)
                except Exception as exc:  # noqa: BLE001 - a sink never loses a stored result
                    result.metrics.setdefault("sink_error", f"{type(exc).__name__}: {exc}")
            out.append(done)
        return out

    def interrupt(self) -> int:
        """Commit what came back, give in-flight trials back to the store (pending) and stop the
        executor's workers."""
        ids = list(self._flight)
        try:
            self.flush()
            self.store.release(self.owner, ids)
        finally:
            self._flight.clear()
            self._sent.clear()
            self.executor.close()
        return len(ids)

    def close(self) -> None:
        if self._beat is not None:
            self._beat.stop.set()
            self._beat = None
        self.flush()

    def _start_heartbeat(self) -> None:
        if self._beat is None and not self.store.memory:
            self._beat = _Heartbeat(self)
            self._beat.start()

    # -- a fixed plan (studies) -------------------------------------------------------------

    def run(self, descriptions: Sequence[Mapping[str, Any]], *,
            on_start: Callable[[int, int], None] | None = None,
            on_result: Callable[[Completed], None] | None = None,
            poll_every: float = 2.0,
            same: Callable[[Mapping[str, Any]], Any] | None = None) -> Outcome:
        """Run every trial of the plan that is not finished yet. Failed trials run again;
        trials another driver is running are waited for (and taken over if its lease expires).
        SIGINT/SIGTERM (KeyboardInterrupt) gives in-flight trials back and re-raises.

        ``same(description)``: trials with equal keys are the same computation under different
        labels (e.g. a batch-independent norm at several normalization batches): the first one
        runs and the others are stored with its result (``metrics["same_run_as"]`` names it)."""
        descriptions = [dict(d) for d in descriptions]
        ids = self.add(descriptions)
        self.store.reap_dead_owners()
        self.store.requeue_failed(ids)
        status = self.store.status_of(ids)
        todo = [(tid, d) for tid, d in zip(ids, descriptions) if status.get(tid) not in FINISHED]
        out = Outcome(planned=len(ids), skipped=len(ids) - len(todo))
        self._copies = {}
        if same is not None:
            todo = self._share(ids, descriptions, status, todo, same, out, on_result)
        if on_start:
            on_start(len(ids), len(todo) + sum(map(len, self._copies.values())))
        return self.dispatch(todo, out, on_result=on_result, poll_every=poll_every)

    def _share(self, ids, descriptions, status, todo, same, out, on_result):
        """Group the open trials by ``same``: one runs per group, the rest wait in
        ``self._copies``; a group with a member finished earlier is completed from it now."""
        finished: dict[str, str] = {}
        for tid, d in zip(ids, descriptions):
            if status.get(tid) in FINISHED:
                finished.setdefault(canonical_json(same(d)), tid)
        groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for tid, d in todo:
            groups.setdefault(canonical_json(same(d)), []).append((tid, d))
        runs = []
        for key, members in groups.items():
            if key in finished:
                self._finish_copies(finished[key], members, self._stored_result(finished[key]),
                                    out, on_result)
            else:
                runs.append(members[0])
                self._copies[members[0][0]] = members[1:]
        return runs

    def _stored_result(self, tid: str) -> TrialResult:
        row = self.store.trial(tid) or {}
        return TrialResult(row.get("status", "failed"), metrics=dict(row.get("metrics") or {}),
                           history=list(row.get("history") or []), error=row.get("error"),
                           started=row.get("started"), finished=row.get("finished"))

    def _finish_copies(self, source: str, members, result: TrialResult, out: Outcome, on_result) -> None:
        for tid, d in members:
            copy = TrialResult(result.status, metrics={**result.metrics, "same_run_as": source},
                               history=result.history, error=result.error,
                               started=result.started, finished=result.finished)
            if not self.store.finish(tid, copy):
                continue                                # finished meanwhile by another driver
            done = Completed(tid, d, copy)
            out.ran += 1
            out.count(copy.status)
            out.results.append(done)
            if on_result:
                on_result(done)

    def dispatch(self, trials: Iterable[tuple[str, Mapping[str, Any]]], out: Outcome | None = None, *,
                 on_result: Callable[[Completed], None] | None = None,
                 poll_every: float = 2.0) -> Outcome:
        """Run stored, unfinished trials given as (id, description) until each is finished here
        or elsewhere; ``run`` is this after planning. A search calls it once per batch."""
        todo = deque((tid, dict(d)) for tid, d in trials)
        out = out or Outcome(planned=len(todo))
        busy: dict[str, dict[str, Any]] = {}
        try:
            while todo or self._flight or busy:
                while todo and self.has_room:
                    tid, d = todo.popleft()
                    if self.submit(d, trial=tid) is None:
                        busy[tid] = d                  # claimed elsewhere: wait for it below
                if self._flight:
                    for done in self.wait(timeout=poll_every if busy else None):
                        out.ran += 1
                        out.count(done.result.status)
                        out.results.append(done)
                        if on_result:
                            on_result(done)
                        copies = self._copies.pop(done.id, None)
                        if copies:                     # a failure too: a rerun retries one
                            self._finish_copies(done.id, copies, done.result, out, on_result)
                elif busy:
                    time.sleep(poll_every)
                if busy and not todo:
                    self.flush()
                    now = self.store.status_of(busy)
                    for tid in list(busy):
                        state = now.get(tid)
                        if state in FINISHED:
                            busy.pop(tid)
                            out.elsewhere += 1
                            copies = self._copies.pop(tid, None)
                            if copies:
                                self._finish_copies(tid, copies, self._stored_result(tid), out, on_result)
                        elif state == "failed":          # the other driver's attempt failed
                            busy.pop(tid)
                            out.failed += 1
                        else:                            # given back, or its lease may expire
                            todo.append((tid, busy.pop(tid)))
            return out
        except BaseException:
            self.interrupt()
            raise
        finally:
            self.close()
