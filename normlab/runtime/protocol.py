"""What travels between the driver and the workers: the run context going out, a typed result
coming back, and the identity that makes resume exact."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping as _MappingABC
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

__all__ = ["TrialResult", "RunContext", "canonical_json", "experiment_id", "trial_id",
           "FINISHED", "STATUSES", "RESULT_STATUSES", "trial_id_of_json"]

RESULT_STATUSES = ("ok", "diverged", "failed")
FINISHED = ("ok", "diverged")                 # a rerun skips these; 'failed' runs again
STATUSES = ("pending", "running", *RESULT_STATUSES)


_SCALARS = (str, int, bool, type(None))


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings, so every stored blob is valid JSON."""
    kind = type(value)
    if kind in _SCALARS:                                       # the common case, checked cheaply
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in _SCALARS else _plain(v)
                for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _SCALARS else _plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, _MappingABC):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# one encoder, built once (json.dumps with options builds a new one per call)
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal descriptions give equal strings (and hashes)."""
    if not value and type(value) in (list, dict):
        return "[]" if type(value) is list else "{}"
    return _ENCODE(_plain(value))


def experiment_id(kind: str, name: str, identity: Mapping[str, Any]) -> str:
    """An experiment's identity: its kind, its name and the result-relevant part of its config."""
    blob = f"{kind}\n{name}\n{canonical_json(identity)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trial_id(experiment: str, description: Mapping[str, Any]) -> str:
    """A trial's identity: hash(experiment identity, canonical trial description). Two experiments
    that describe the same trial each run their own."""
    return trial_id_of_json(experiment, canonical_json(description))


def trial_id_of_json(experiment: str, description_json: str) -> str:
    """``trial_id`` from the description's canonical JSON (when the caller has it already)."""
    return hashlib.sha256(f"{experiment}\n{description_json}".encode()).hexdigest()[:16]


@dataclass
class TrialResult:
    """One trial's outcome, as a worker hands it back and the store keeps it."""

    status: str                                    # ok | diverged | failed
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    started: float | None = None                   # wall-clock times on the worker
    finished: float | None = None

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"status={self.status!r} is invalid: expected one of "
                             f"{', '.join(RESULT_STATUSES)}")

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @classmethod
    def failure(cls, error: str, started: float | None = None) -> "TrialResult":
        return cls("failed", error=error, started=started, finished=time.time())

    @classmethod
    def coerce(cls, value: Any) -> "TrialResult":
        """A TrialResult from what a trial function returned (a TrialResult or a mapping)."""
        if isinstance(value, TrialResult):
            return value
        if isinstance(value, Mapping):
            known = {k: value[k] for k in ("status", "metrics", "history", "error", "started", "finished")
                     if k in value}
            known.setdefault("status", "ok")
            return cls(**known)
        raise TypeError(f"a trial function returned {type(value).__name__}: expected a TrialResult "
                        f"or a mapping with a 'status'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunContext:
    """Where a trial finds its inputs, passed explicitly to every trial function (never inside
    the trial's description, which is its identity). Thread counts are the executor's business:
    each worker sets them once when it starts."""

    data_root: str | None = None
    download: bool = False
