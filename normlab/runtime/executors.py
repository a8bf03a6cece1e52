"""Executors run trials anywhere and hand results back; only the driver writes the store.

One small interface: ``run(trials, fn)`` yields ``(trial, result)`` as trials finish, where
``fn(trial) -> result`` is a picklable module-level function.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

__all__ = ["BACKENDS", "Executor", "SerialExecutor", "PoolExecutor", "RayExecutor", "make_executor"]

Trial = dict[str, Any]
BACKENDS = ("serial", "process", "ray")


class Executor:
    name = "executor"

    def run(self, trials: Iterable[Trial], fn: Callable[[Trial], dict]) -> Iterator[tuple[Trial, dict]]:
        raise NotImplementedError

    def close(self) -> None: ...


class SerialExecutor(Executor):
    """In this process, one trial after another (the default)."""

    name = "serial"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, trials, fn):
        for trial in trials:
            yield trial, fn({**trial, "_threads": self.threads})


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


class PoolExecutor(Executor):
    """A process pool of ``workers`` processes; torch threads are split between them so the
    workers do not oversubscribe the cores."""

    name = "process"

    def __init__(self, workers: int, threads: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers} is invalid: expected a positive integer")
        self.workers = workers
        self.threads = threads or _threads_per_worker(workers)
        import multiprocessing as mp

        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                        initializer=_init_worker, initargs=(self.threads,))

    def run(self, trials, fn):
        pending = {}
        queue = list(trials)
        while queue or pending:
            while queue and len(pending) < 2 * self.workers:
                trial = queue.pop(0)
                pending[self.pool.submit(fn, {**trial, "_threads": self.threads})] = trial
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                trial = pending.pop(fut)
                try:
                    yield trial, fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker crash is the trial's failure
                    yield trial, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor(Executor):
    """Ray tasks, one CPU each; ``address`` joins a running cluster, else a local instance."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 threads: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("the ray backend needs Ray: pip install 'normlab[ray]'") from None
        self.ray = ray
        self.threads = threads
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                      "include_dashboard": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            ray.init(**kwargs)
            self._owned = True
        else:
            self._owned = False

    def run(self, trials, fn):
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = {remote.remote({**t, "_threads": self.threads}): t for t in trials}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                trial = refs.pop(ref)
                try:
                    yield trial, ray.get(ref)
                except Exception as exc:  # noqa: BLE001
                    yield trial, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        if self._owned:
            self.ray.shutdown()


def make_executor(backend: str = "serial", workers: int = 1, address: str | None = None) -> Executor:
    if backend == "serial" and workers > 1:
        backend = "process"
    if backend == "serial":
        return SerialExecutor()
    if backend == "process":
        return PoolExecutor(workers)
    if backend == "ray":
        return RayExecutor(address=address, num_cpus=workers if workers > 1 else None)
    raise ValueError(f"backend={backend!r} is invalid: expected {', '.join(BACKENDS)}")
