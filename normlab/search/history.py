"""What a search leaves: every evaluation in order, the best, the Pareto front, and its export."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .space import SearchError

__all__ = ["Evaluation", "SearchResult", "pareto_mask", "check_objectives"]


def check_objectives(objectives: Mapping[str, str] | None) -> dict[str, str]:
    if objectives is None:
        return {"score": "max"}
    if not isinstance(objectives, Mapping) or not objectives:
        raise SearchError(f"objectives={objectives!r} is invalid: expected a mapping name -> 'max' or 'min'")
    bad = {k: v for k, v in objectives.items() if v not in ("max", "min")}
    if bad:
        raise SearchError(f"objectives {bad} are invalid: each objective is 'max' or 'min'")
    return dict(objectives)


@dataclass
class Evaluation:
    """One evaluated architecture: its step (0-based order), key, scores and status."""

    step: int
    key: str
    arch: Any
    scores: dict[str, float] = field(default_factory=dict)
    status: str = "ok"                                 # ok | failed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self, encode: Callable[[Any], Any] = lambda a: a) -> dict[str, Any]:
        return {"step": self.step, "key": self.key, "arch": encode(self.arch), "scores": self.scores,
                "status": self.status, "error": self.error}


def _signed(points: np.ndarray, objectives: Mapping[str, str]) -> np.ndarray:
    """Flip 'min' objectives so that larger is better everywhere."""
    sign = np.array([1.0 if d == "max" else -1.0 for d in objectives.values()])
    return points * sign


def pareto_mask(points: np.ndarray, objectives: Mapping[str, str]) -> np.ndarray:
    """True for rows not dominated by any other row (at least as good everywhere, better once)."""
    p = _signed(np.asarray(points, dtype=float).reshape(len(points), -1), objectives)
    keep = np.ones(len(p), dtype=bool)
    for start in range(0, len(p), 512):
        chunk = p[start:start + 512]
        ge = (p[None, :, :] >= chunk[:, None, :]).all(-1)
        gt = (p[None, :, :] > chunk[:, None, :]).any(-1)
        keep[start:start + len(chunk)] = ~(ge & gt).any(1)
    return keep


@dataclass
class SearchResult:
    """A search's history (in evaluation order) and what follows from it."""

    name: str
    strategy: str
    objectives: dict[str, str]
    history: list[Evaluation]
    config: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None                 # why it ended before its budget, if it did
    infeasible: int = 0                        # candidates the constraint rejected (never evaluated)

    @property
    def ok(self) -> list[Evaluation]:
        return [e for e in self.history if e.ok]

    def _objective(self, objective: str | None) -> str:
        if objective is None:
            if len(self.objectives) > 1:
                raise SearchError(f"this search has objectives {', '.join(self.objectives)}: name one "
                                  f"(best('...')) or use pareto_front()")
            return next(iter(self.objectives))
        if objective not in self.objectives and not any(objective in e.scores for e in self.ok):
            raise SearchError(f"unknown objective {objective!r}: expected one of {', '.join(self.objectives)}")
        return objective

    def best(self, objective: str | None = None) -> Evaluation:
        """The best evaluation on ``objective`` (the only objective when there is one)."""
        name = self._objective(objective)
        found = [e for e in self.ok if name in e.scores]
        if not found:
            raise SearchError(f"search '{self.name}' has no successful evaluation yet")
        sign = 1.0 if self.objectives.get(name, "max") == "max" else -1.0
        return max(found, key=lambda e: (sign * e.scores[name], -e.step))

    def best_so_far(self, objective: str | None = None) -> list[float]:
        """After each evaluation, the best value seen on ``objective`` (NaN before the first)."""
        name = self._objective(objective)
        sign = 1.0 if self.objectives.get(name, "max") == "max" else -1.0
        out, best = [], -math.inf
        for e in self.history:
            if e.ok and name in e.scores:
                best = max(best, sign * e.scores[name])
            out.append(sign * best if best > -math.inf else math.nan)
        return out

    def pareto_front(self) -> list[Evaluation]:
        """Every successful evaluation not dominated by another on all objectives."""
        found = [e for e in self.ok if all(k in e.scores for k in self.objectives)]
        if not found:
            return []
        pts = np.array([[e.scores[k] for k in self.objectives] for e in found])
        return [e for e, keep in zip(found, pareto_mask(pts, self.objectives)) if keep]

    # -- export ---------------------------------------------------------------------------

    def to_dict(self, encode: Callable[[Any], Any] = lambda a: a) -> dict[str, Any]:
        return {"name": self.name, "strategy": self.strategy, "objectives": self.objectives,
                "config": self.config, "stopped": self.stopped,
                "history": [e.to_dict(encode) for e in self.history]}

    def to_json(self, encode: Callable[[Any], Any] = lambda a: a) -> str:
        return json.dumps(self.to_dict(encode), indent=1, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], decode: Callable[[Any], Any] = lambda a: a) -> "SearchResult":
        try:
            history = [Evaluation(int(e["step"]), str(e["key"]), decode(e["arch"]), dict(e.get("scores") or {}),
                                  e.get("status", "ok"), e.get("error")) for e in data["history"]]
            return cls(data["name"], data["strategy"], dict(data["objectives"]), history,
                       dict(data.get("config") or {}), data.get("stopped"),
                       int((data.get("config") or {}).get("infeasible") or 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise SearchError(f"not a saved search result: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, decode: Callable[[Any], Any] = lambda a: a) -> "SearchResult":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SearchError(f"not a saved search result (invalid JSON: {exc})") from None
        return cls.from_dict(data, decode)

    def save(self, path: str | Path, encode: Callable[[Any], Any] = lambda a: a) -> Path:
        path = Path(path)
        path.write_text(self.to_json(encode))
        return path

    @classmethod
    def load(cls, path: str | Path, decode: Callable[[Any], Any] = lambda a: a) -> "SearchResult":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SearchError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise SearchError(f"cannot read {path}: it is not UTF-8 text") from None
        return cls.from_json(text, decode)

    def rows(self, evaluations: Sequence[Evaluation] | None = None) -> list[dict[str, Any]]:
        """Flat rows (step, key, status, one column per score, error) for CSV and tables."""
        evaluations = self.history if evaluations is None else evaluations
        names = list(self.objectives) + sorted({k for e in evaluations for k in e.scores} - set(self.objectives))
        return [{"step": e.step, "key": e.key, "status": e.status,
                 **{k: e.scores.get(k, "") for k in names}, "error": (e.error or "").splitlines()[0] if e.error else ""}
                for e in evaluations]

    def to_csv(self, front: bool = False) -> str:
        rows = self.rows(self.pareto_front() if front else None)
        out = io.StringIO()
        if rows:
            w = csv.DictWriter(out, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return out.getvalue()

    @classmethod
    def from_store(cls, store: Any, experiment: Any, decode: Callable[[Any], Any] = lambda a: a) -> "SearchResult":
        """The stored history of one search experiment (an ExperimentRecord), in evaluation order."""
        cfg = dict(experiment.config)
        history = []
        for r in store.rows(experiment_id=experiment.id):
            if r["status"] not in ("ok", "diverged", "failed"):
                continue                                   # proposed but never finished
            d = r["description"]
            scores = {k: float(v) for k, v in r["metrics"].items() if isinstance(v, (int, float))}
            history.append(Evaluation(len(history), d["key"], decode(d["arch"]), scores,
                                      "ok" if r["status"] == "ok" else "failed", r["error"]))
        return cls(experiment.name, cfg.get("strategy", experiment.kind),
                   dict(cfg.get("objectives") or {"score": "max"}), history, cfg,
                   infeasible=int(cfg.get("infeasible") or 0))
