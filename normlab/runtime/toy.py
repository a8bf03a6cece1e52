"""Toy trial functions: cheap, deterministic stand-ins for training, for trying an executor or a
store by hand and for the runtime's own tests (spawned workers import them by name).

    Driver(store, exp, toy.square).run([{"x": 3}])     # metrics {"y": 9}
"""

from __future__ import annotations

import os
import time
from typing import Any

from .protocol import RunContext, TrialResult

__all__ = ["square", "sleepy", "StallOn"]


def square(description: dict[str, Any], context: RunContext | None = None) -> TrialResult:
    """metrics {"y": x*x}; ``fail: true`` raises; ``pid: true`` records the worker's pid."""
    if description.get("fail"):
        raise RuntimeError(f"asked to fail on x={description.get('x')}")
    metrics: dict[str, Any] = {"y": description["x"] ** 2}
    if description.get("pid"):
        metrics["pid"] = os.getpid()
    return TrialResult("ok", metrics=metrics)


def sleepy(description: dict[str, Any], context: RunContext | None = None) -> TrialResult:
    """Sleeps ``seconds``, then returns like ``square``; ``die: true`` kills its own process
    (a crashed worker); ``marker: PATH`` appends this trial's x to PATH when it starts (to count
    how many times each trial really ran)."""
    marker = description.get("marker")
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{description['x']} {os.getpid()}\n")
    time.sleep(float(description.get("seconds", 0.1)))
    if description.get("die"):
        os._exit(3)
    return square(description, context)


class StallOn:
    """A search ``evaluate`` over bit strings for the time-out tests: the number of ones, except
    that an architecture in ``stall`` never returns; ``log: PATH`` appends each evaluation's
    key and worker pid to PATH when it starts."""

    def __init__(self, stall: list[str], log: str | None = None) -> None:
        self.stall, self.log = set(stall), log

    def __call__(self, bits: Any) -> float:
        key = "".join(str(int(b)) for b in bits)
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(f"{key} {os.getpid()}\n")
        while key in self.stall:
            time.sleep(3600)
        return float(sum(bits))
