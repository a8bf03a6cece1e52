"""The store's schema: its tables and view, the version it is at, and the migration of a store
written by an older one (see :mod:`normlab.runtime.store` for the promises). Functions of an open
SQLite connection; the Store calls them inside its transactions."""

from __future__ import annotations

import json
import sqlite3
import time

from .protocol import experiment_id

__all__ = ["SCHEMA_VERSION", "TABLES", "tables", "create", "set_version", "stored_version", "migrate"]

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    config  TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_name ON experiments (name);
CREATE TABLE IF NOT EXISTS trials (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    description   TEXT NOT NULL,
    status        TEXT NOT NULL,
    metrics       TEXT, history TEXT, error TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    owner         TEXT, lease_expires REAL,
    created       REAL, started REAL, finished REAL
);
CREATE INDEX IF NOT EXISTS trials_experiment ON trials (experiment_id, status);
CREATE VIEW IF NOT EXISTS bench_trials AS
    SELECT t.id, e.name AS experiment, json_extract(t.description, '$.model') AS model,
           json_extract(t.description, '$.norm') AS norm,
           json_extract(t.description, '$.dataset') AS dataset,
           json_extract(t.description, '$.batch_size') AS batch_size,
           json_extract(t.description, '$.seed') AS seed,
           t.status, json_extract(t.metrics, '$.test_acc') AS test_acc, t.attempts, t.error
    FROM trials t JOIN experiments e ON e.id = t.experiment_id WHERE e.kind = 'bench';
"""

TABLES = {"meta", "experiments", "trials", "bench_trials"}     # what a store of this schema holds


def tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")}


def create(db: sqlite3.Connection) -> None:
    for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
        db.execute(statement)


def set_version(db: sqlite3.Connection) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
               (str(SCHEMA_VERSION),))


def stored_version(db: sqlite3.Connection, present: set[str]) -> int:
    """The schema version of the store behind ``db``, whose tables are ``present``."""
    if "meta" in present:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else SCHEMA_VERSION
    if "trials" in present:
        return 1                            # the bench-only schema of normlab 0.1
    return SCHEMA_VERSION


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a store of schema ``version`` to :data:`SCHEMA_VERSION` (inside a transaction)."""
    if version == 1:
        # v1: one bench-only table with model/norm/dataset/batch_size/seed columns and the
        # experiment's name in 'experiment'. Each name becomes a 'bench' experiment; trial
        # ids and descriptions are kept as they were.
        db.execute("ALTER TABLE trials RENAME TO trials_v1")
        db.execute("DROP INDEX IF EXISTS trials_experiment")
        create(db)
        names = [r[0] for r in db.execute(
            "SELECT experiment, MIN(created) FROM trials_v1 GROUP BY experiment")]
        for name in names:
            created = db.execute("SELECT MIN(created) FROM trials_v1 WHERE experiment=?",
                                 (name,)).fetchone()[0] or time.time()
            exp = experiment_id("bench", name, {"migrated_from_schema": 1})
            db.execute("INSERT OR IGNORE INTO experiments (id, name, kind, config, created) "
                       "VALUES (?, ?, 'bench', ?, ?)",
                       (exp, name, json.dumps({"name": name, "migrated_from_schema": 1}), created))
            db.execute(
                "INSERT OR IGNORE INTO trials (id, experiment_id, description, status, metrics, "
                "history, error, attempts, created, started, finished) "
                "SELECT id, ?, description, CASE WHEN status='running' THEN 'pending' ELSE status END, "
                "metrics, history, error, attempts, created, started, finished "
                "FROM trials_v1 WHERE experiment=? ORDER BY rowid", (exp, name))
        db.execute("DROP TABLE trials_v1")
    set_version(db)
