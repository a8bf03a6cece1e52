"""Executors run trial functions anywhere and hand results back; only the driver writes the store.

One interface for every backend, fed one trial at a time so a steady-state search can propose
its next candidate after a result comes back:

    ex.submit(key, fn, description)      # only while ex.in_flight < ex.capacity
    for key, result in ex.poll(timeout): ...   # finished since the last poll (a TrialResult each)

``fn(description) -> TrialResult | mapping`` is a picklable module-level function (or a
``functools.partial`` of one). A trial is in flight from ``submit`` until ``poll`` returns it:
the process pool sends it to an idle worker at once (capacity = workers), Ray keeps about two
per CPU queued. A trial that raises, or whose worker process dies, comes back as ``failed``;
the other trials are not affected and the pool replaces the dead worker.

Time-outs: ``submit(key, fn, description, timeout=seconds)`` limits one trial. The process pool
enforces it: the worker still running the trial after ``timeout`` seconds is killed and replaced,
and the trial comes back as ``failed`` ("timed out after N s"); a fresh worker's start-up is not
counted. Ray cancels the task (force: its worker process is killed), counting from when the task
is expected to start (Ray queues about two tasks per CPU; the workers are started once before
the first timed task, and a worker Ray starts later has its start-up counted). The serial executor runs trials in this process and cannot interrupt
one: a trial that overruns is waited for and then returned as timed out (so every executor
gives the same outcome for an evaluation that finishes), and one that never returns hangs the
run: use a pool (even of one worker) for evaluations that may hang.

Thread counts are set once per worker by its initialiser; pool workers also watch their parent
and exit when the driver dies (SIGKILL included), so a killed driver leaves no orphans.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from .protocol import TrialResult

__all__ = ["BACKENDS", "Executor", "SerialExecutor", "PoolExecutor", "RayExecutor", "make_executor",
           "check_executor",
           "call_trial", "ExecutorError", "threads_per_worker", "check_timeout", "timed_out"]

BACKENDS = ("serial", "process", "ray")
TrialFn = Callable[[dict], Any]


class ExecutorError(ValueError):
    """An executor that cannot start (bad settings, unreachable cluster): one line."""


def timed_out(timeout: float, started: float | None = None) -> TrialResult:
    """The result of a trial stopped (or overrun) at its time-out."""
    return TrialResult.failure(f"timed out after {timeout:g} s", started)


def check_timeout(timeout: Any, name: str = "timeout=") -> float | None:
    """None, or a positive number of seconds (one clear error otherwise)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 \
            or timeout != timeout or timeout == float("inf"):
        raise ExecutorError(f"{name}{timeout!r} is invalid: expected a positive number of seconds")
    return float(timeout)


def call_trial(fn: TrialFn, description: dict) -> TrialResult:
    """Run one trial function; any exception becomes a failed result (never raises)."""
    started = time.time()
    try:
        result = TrialResult.coerce(fn(description))
    except Exception as exc:  # noqa: BLE001 - a failing trial is recorded, the run goes on
        tail = traceback.format_exc(limit=4)
        return TrialResult.failure(f"{type(exc).__name__}: {exc}\n{tail}", started)
    if result.started is None:
        result.started = started
    if result.finished is None:
        result.finished = time.time()
    return result


class Executor:
    """Base class: ``submit`` while ``in_flight < capacity``, then ``poll``."""

    name = "executor"
    capacity = 1

    @property
    def in_flight(self) -> int:
        raise NotImplementedError

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.capacity

    def submit(self, key: str, fn: TrialFn, description: dict, timeout: float | None = None) -> None:
        raise NotImplementedError

    def poll(self, timeout: float | None = None) -> list[tuple[str, TrialResult]]:
        raise NotImplementedError

    def close(self) -> None: ...

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SerialExecutor(Executor):
    """In this process, one trial at a time (the default). ``poll`` runs the submitted trial."""

    name = "serial"
    capacity = 1

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._queue: list[tuple[str, TrialFn, dict, float | None]] = []

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, key, fn, description, timeout=None):
        if self._queue:
            raise RuntimeError("SerialExecutor holds one trial at a time: poll() it first")
        self._queue.append((key, fn, description, timeout))

    def poll(self, timeout=None):
        if not self._queue:
            return []
        key, fn, description, limit = self._queue[0]
        previous = None
        if self.threads:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(int(self.threads))
        started = time.perf_counter()
        try:
            result = call_trial(fn, description)
        finally:
            self._queue.pop(0)
            if previous is not None and previous != int(self.threads):
                import torch

                torch.set_num_threads(previous)      # serial runs leave no trace on the caller
        if limit is not None and time.perf_counter() - started > limit:
            result = timed_out(limit, result.started)     # cannot interrupt: the same verdict late
        return [(key, result)]


def threads_per_worker(workers: int) -> int:
    """torch threads each of ``workers`` pool workers gets: the cores split between them."""
    return max(1, (os.cpu_count() or 1) // workers)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)                           # the driver died: never outlive it


def _init_worker(threads: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the driver's to handle
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()


class PoolExecutor(Executor):
    """``workers`` worker processes (spawned), one trial each at a time; torch threads are split
    between them so the workers do not oversubscribe the cores.

    Each worker is its own single-process pool, so a worker that dies (killed, out of memory,
    a segfault) fails exactly the trial it was running; it is replaced and the run goes on."""

    name = "process"

    def __init__(self, workers: int, threads: int | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ExecutorError(f"workers={workers!r} is invalid: expected a positive integer")
        self.workers = workers
        self.capacity = workers
        self.threads = threads or threads_per_worker(workers)
        self._slots: list[ProcessPoolExecutor | None] = [None] * workers
        self._busy: dict[Future, tuple[int, str]] = {}
        self._deadline: dict[Future, tuple[float, float]] = {}     # future -> (deadline, timeout)
        self._starting: dict[Future, tuple[Future, float]] = {}    # future -> (its worker's start, timeout)
        self._ready: dict[int, Future] = {}                         # slot -> a fresh worker's start

    def _slot(self, i: int) -> ProcessPoolExecutor:
        pool = self._slots[i]
        if pool is None:
            import multiprocessing as mp

            pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                       initargs=(self.threads, os.getpid()))
            self._slots[i] = pool
            # done once the new worker has started (spawn, imports): time-outs count from there
            self._ready[i] = pool.submit(os.getpid)
        return pool

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def submit(self, key, fn, description, timeout=None):
        busy = {slot for slot, _ in self._busy.values()}
        free = [i for i in range(self.workers) if i not in busy]
        if not free:
            raise RuntimeError("every worker is busy: poll() before submitting more")
        slot = free[0]
        try:
            fut = self._slot(slot).submit(call_trial, fn, description)
        except BrokenProcessPool:
            self._replace(slot)
            fut = self._slot(slot).submit(call_trial, fn, description)
        self._busy[fut] = (slot, key)
        if timeout is not None:
            ready = self._ready.get(slot)
            if ready is not None and not ready.done():
                self._starting[fut] = (ready, float(timeout))     # the clock starts with the worker
            else:               # an idle worker alone in its pool: the trial starts now
                self._deadline[fut] = (time.monotonic() + timeout, float(timeout))

    def _replace(self, slot: int, kill: bool = False) -> None:
        pool = self._slots[slot]
        self._slots[slot] = None
        self._ready.pop(slot, None)
        if pool is not None:
            procs = list((getattr(pool, "_processes", None) or {}).values()) if kill else []
            for p in procs:                       # a stuck trial: its worker is killed, not asked
                if p.is_alive():
                    p.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.join(5)

    def poll(self, timeout=None):
        if not self._busy:
            return []
        wait_for = timeout
        if self._deadline:
            first = min(d for d, _ in self._deadline.values()) - time.monotonic()
            wait_for = max(0.0, first) if timeout is None else max(0.0, min(timeout, first))
        starts = {ready for ready, _ in self._starting.values()}
        done, _ = wait([*self._busy, *starts], timeout=wait_for, return_when=FIRST_COMPLETED)
        done = {f for f in done if f in self._busy}
        out = []
        now = time.monotonic()
        for fut, (ready, limit) in list(self._starting.items()):
            if ready.done() or fut in done:
                del self._starting[fut]
                if fut not in done:
                    self._deadline[fut] = (now + limit, limit)
        for fut in [f for f, (d, _) in self._deadline.items() if f not in done and d <= now]:
            slot, key = self._busy.pop(fut)
            _, limit = self._deadline.pop(fut)
            self._replace(slot, kill=True)
            out.append((key, timed_out(limit, time.time() - limit)))
        for fut in done:
            self._deadline.pop(fut, None)
            self._starting.pop(fut, None)
            slot, key = self._busy.pop(fut)
            try:
                out.append((key, fut.result()))
            except BrokenProcessPool:
                self._replace(slot)
                out.append((key, TrialResult.failure(
                    "the worker process running this trial died (killed, out of memory or crashed); "
                    "it was replaced and the other trials went on")))
            except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                out.append((key, TrialResult.failure(f"{type(exc).__name__}: {exc}")))
        return out

    def close(self) -> None:
        for i, pool in enumerate(self._slots):
            if pool is None:
                continue
            procs = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:                   # in-flight trials are abandoned: stop them now
                if p.is_alive():
                    p.terminate()
            self._slots[i] = None
        self._busy.clear()
        self._deadline.clear()
        self._starting.clear()
        self._ready.clear()


def _probe(address: str, timeout: float) -> None:
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        host, _, port = address[len("ray://"):].rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address {address!r} is invalid: expected HOST:PORT (e.g. 10.0.0.5:6379) "
                            f"or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExecutorError(f"cannot reach a Ray cluster at {address} ({reason.lower()} after at most "
                            f"{timeout:g}s): start one with 'ray start --head' or fix --address") from None


class RayExecutor(Executor):
    """Ray tasks, one CPU each; ``address`` joins a running cluster (checked within
    ``connect_timeout`` seconds), else a local instance with ``num_cpus``."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, threads: int = 1,
                 connect_timeout: float = 10.0) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray backend needs Ray: pip install 'normlab[ray]'") from None
        self.ray = ray
        self.threads = threads
        if address and address != "auto":
            _probe(address, connect_timeout)
        self._owned = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                      "include_dashboard": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot start or join Ray (address={address or 'local'}): "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            self._owned = True
        cpus = int(ray.cluster_resources().get("CPU", num_cpus or 1))
        self.capacity = max(2, 2 * cpus)
        self.cpus = max(1, cpus)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
        self._refs: dict[Any, str] = {}
        self._limits: dict[Any, float] = {}            # ref -> its time-out (seconds)
        self._deadline: dict[Any, float] = {}          # ref -> deadline, once it is expected to run
        self._warm = False

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def submit(self, key, fn, description, timeout=None):
        if timeout is not None and not self._warm:
            # start the workers first (spawn, imports), so that start-up is not counted as work
            self.ray.get([self._remote.remote(_noop, {}, self.threads) for _ in range(self.cpus)])
            self._warm = True
        ref = self._remote.remote(fn, description, self.threads)
        self._refs[ref] = key
        if timeout is not None:
            self._limits[ref] = float(timeout)
            self._start_clocks()

    def _start_clocks(self) -> None:
        """Tasks run about in submission order, one per CPU: a task's clock starts when fewer
        than ``cpus`` tasks submitted before it are still out."""
        now = time.monotonic()
        for ref in list(self._refs)[:self.cpus]:
            if ref in self._limits and ref not in self._deadline:
                self._deadline[ref] = now + self._limits[ref]

    def poll(self, timeout=None):
        if not self._refs:
            return []
        wait_for = timeout
        if self._deadline:
            first = min(self._deadline.values()) - time.monotonic()
            wait_for = max(0.0, first) if timeout is None else max(0.0, min(timeout, first))
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=wait_for)
        if ready:
            more, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
            ready = list(dict.fromkeys([*ready, *more]))
        out = []
        now = time.monotonic()
        for ref in [r for r, d in self._deadline.items() if r not in ready and d <= now]:
            key = self._refs.pop(ref)
            limit = self._limits.pop(ref)
            self._deadline.pop(ref)
            try:
                self.ray.cancel(ref, force=True)         # kills the worker process running it
            except Exception:  # noqa: BLE001 - finished meanwhile: the verdict stands
                pass
            out.append((key, timed_out(limit, time.time() - limit)))
        for ref in ready:
            self._limits.pop(ref, None)
            self._deadline.pop(ref, None)
            key = self._refs.pop(ref)
            try:
                out.append((key, self.ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - a dead worker fails its own trial
                out.append((key, TrialResult.failure(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")))
        if self._limits:
            self._start_clocks()
        return out

    def close(self) -> None:
        for ref in list(self._refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._refs.clear()
        self._limits.clear()
        self._deadline.clear()
        if self._owned:
            self.ray.shutdown()


def _noop(description: dict) -> TrialResult:
    return TrialResult("ok")


def _ray_call(fn: TrialFn, description: dict, threads: int) -> TrialResult:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return call_trial(fn, description)


def check_executor(backend: Any, workers: Any, address: str | None = None) -> None:
    """The one check of executor settings every command makes before it creates anything (the
    same one :func:`make_executor` makes): a known backend, a positive worker count, an address
    only with ray. ExecutorError otherwise."""
    if backend not in BACKENDS:
        raise ExecutorError(f"backend={backend!r} is invalid: expected {', '.join(BACKENDS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ExecutorError(f"workers={workers!r} is invalid: expected a positive integer")
    if address and backend != "ray":
        raise ExecutorError(f"--address {address} needs --backend ray (got --backend {backend})")


def make_executor(backend: str = "serial", workers: int = 1, address: str | None = None,
                  connect_timeout: float = 10.0) -> Executor:
    """serial (workers=1), process (a pool of ``workers``) or ray (local or ``address``)."""
    check_executor(backend, workers, address)
    if backend == "serial" and workers > 1:
        backend = "process"
    if backend == "serial":
        return SerialExecutor()
    if backend == "process":
        return PoolExecutor(workers)
    return RayExecutor(address=address, num_cpus=workers if workers > 1 else None,
                       connect_timeout=connect_timeout)
