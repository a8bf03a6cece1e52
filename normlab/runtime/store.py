"""The results store: one SQLite row per trial, in WAL mode, written only by the driver.

Every state change is its own committed transaction, so a process killed at any moment (SIGKILL
included) loses at most the trials that were in flight; they are found as 'running' on the next
start and run again.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

__all__ = ["Store", "FINISHED", "STATUSES"]

FINISHED = ("ok", "diverged")                 # a rerun skips these
STATUSES = ("pending", "running", "ok", "diverged", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id          TEXT PRIMARY KEY,
    experiment  TEXT NOT NULL,
    description TEXT NOT NULL,
    model       TEXT, norm TEXT, dataset TEXT,
    batch_size  INTEGER, seed INTEGER,
    status      TEXT NOT NULL,
    metrics     TEXT, history TEXT, error TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created     REAL, started REAL, finished REAL
);
CREATE INDEX IF NOT EXISTS trials_experiment ON trials (experiment);
"""


class Store:
    """SQLite results store. ``Store("runs/normlab.sqlite")``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writes (the driver only) ------------------------------------------------------

    def add_planned(self, experiment: str, trials: Iterable[dict[str, Any]]) -> int:
        """Insert planned trials that are not stored yet; returns how many were new."""
        now = time.time()
        rows = [(t["id"], experiment, json.dumps(t, sort_keys=True), t["model"], t["norm"],
                 t["dataset"], t["batch_size"], t["seed"], now) for t in trials]
        before = self.count()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR IGNORE INTO trials (id, experiment, description, model, norm, dataset, "
                "batch_size, seed, status, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)", rows)
        return self.count() - before

    def mark_running(self, trial_id: str) -> None:
        self.db.execute("UPDATE trials SET status='running', started=?, attempts=attempts+1 WHERE id=?",
                        (time.time(), trial_id))

    def finish(self, trial_id: str, status: str, metrics: dict | None = None,
               history: list | None = None, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status={status!r} is invalid: expected one of {', '.join(STATUSES)}")
        self.db.execute("UPDATE trials SET status=?, metrics=?, history=?, error=?, finished=? WHERE id=?",
                        (status, json.dumps(metrics or {}), json.dumps(history or []), error,
                         time.time(), trial_id))

    # -- reads --------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def status_of(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            q = f"SELECT id, status FROM trials WHERE id IN ({','.join('?' * len(chunk))})"
            out.update({r["id"]: r["status"] for r in self.db.execute(q, chunk)})
        return out

    def rows(self, *, experiment: str | None = None, status: str | None = None,
             norm: str | None = None, model: str | None = None, dataset: str | None = None,
             batch_size: int | None = None) -> list[dict[str, Any]]:
        """Trials as dicts (description, metrics and history decoded), filtered by equality."""
        where, args = [], []
        for col, val in (("experiment", experiment), ("status", status), ("norm", norm),
                         ("model", model), ("dataset", dataset), ("batch_size", batch_size)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        q = "SELECT * FROM trials" + (" WHERE " + " AND ".join(where) if where else "")
        q += " ORDER BY experiment, model, norm, batch_size, seed, id"
        out = []
        for r in self.db.execute(q, args):
            d = dict(r)
            d["description"] = json.loads(d["description"])
            d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
            d["history"] = json.loads(d["history"]) if d["history"] else []
            out.append(d)
        return out

    def experiments(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT experiment FROM trials ORDER BY 1")]


def export(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as CSV (flat: description fields and final metrics) or JSON (everything)."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt != "csv":
        raise ValueError(f"format={fmt!r} is invalid: expected csv or json")
    keys = ["id", "experiment", "model", "norm", "dataset", "batch_size", "seed", "status",
            "attempts", "error"]
    metric_keys = sorted({k for r in rows for k in r["metrics"]})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(keys + metric_keys)
    for r in rows:
        writer.writerow([r.get(k) for k in keys] + [r["metrics"].get(k) for k in metric_keys])
    return buf.getvalue()
