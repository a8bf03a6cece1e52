"""The store: every study and search keeps its experiments and trials here (SQLite, WAL mode).

Two tables any kind of work can use:

- ``experiments``: id (hash of kind, name and the result-relevant config), name, kind (``bench``,
  ``search``, ``evolve``, ``nas``, ``nago``, ...), the full frozen config as JSON, created time.
- ``trials``: id (hash of the experiment id and the canonical trial description), the
  experiment's id, the description as JSON, status, metrics, history, error, attempts, the
  worker's lease (owner and expiry), timings, and ``seq`` (insertion order).

Nothing study-specific is schema: the ``bench_trials`` view pulls model/norm/batch size/seed out
of the JSON, and ``rows(where={...})`` filters on any description field.

Promises:
- every state change is its own committed transaction (``write_trials`` commits several at once,
  for a search's group commit; see the driver): a process killed at any moment loses at most the
  trials in flight (and, with group commit, the results not committed yet), and those become
  claimable again when their lease runs out;
- ``claim`` is atomic (one UPDATE): two drivers never run the same trial at once, and a finished
  trial (ok, diverged) is never marked running again;
- a store written by an older schema is migrated when opened for writing and read through an
  in-memory copy when opened read-only; a newer schema is refused with one line;
- every SQLite failure (not a database, corrupt, a directory, read-only, disk full) becomes one
  ``StoreError`` line naming the path, and nothing is written to a file that is not our store.

Here: opening (the promises above), experiments, trial writes and reads. The schema and its
migrations are in :mod:`normlab.runtime.schema`, the lease rules (owners, claiming, dead
owners) in :mod:`normlab.runtime.leases`, CSV/JSON export in :mod:`normlab.runtime.rowformat`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import quote

from . import schema
from .leases import claim_trial, is_dead_local, new_owner
from .protocol import FINISHED, TrialResult, canonical_json, experiment_id, trial_id
from .rowformat import export
from .schema import SCHEMA_VERSION

__all__ = ["Store", "StoreError", "ExperimentRecord", "SCHEMA_VERSION", "export", "new_owner", "check_name"]


class StoreError(ValueError):
    """A store that cannot be used: one line naming the path and the problem."""


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: Any, what: str = "name") -> str:
    """The one rule for the name of a study, search or retraining (every command, the search API
    and the store): 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit; parts
    may be joined by '/' (a chain's steps: 'run/search'). So '../x', '/abs' and 'a//b' are refused
    and a name is safe inside a folder. StoreError otherwise."""
    if not isinstance(name, str) or not all(_NAME.fullmatch(p) for p in name.split("/")):
        raise StoreError(f"{what}={name!r} is invalid: expected 1-100 letters, digits, '.', '_' or '-', "
                         f"starting with a letter or digit (parts may be joined by '/', as in 'run/search')")
    return name


@dataclass(frozen=True)
class ExperimentRecord:
    id: str
    name: str
    kind: str
    config: dict[str, Any]
    created: float


def _explain(path: str, exc: BaseException) -> str:
    text = str(exc)
    low = text.lower()
    if "not a database" in low:
        problem = "is not a normlab store (not an SQLite database)"
    elif "malformed" in low or "corrupt" in low:
        problem = "is corrupt (database disk image is malformed)"
    elif "readonly" in low or "read-only" in low:
        problem = "is read-only: cannot write results (check the file's and its folder's permissions)"
    elif "full" in low:
        problem = "cannot be written: the disk is full"
    elif "unable to open" in low:
        problem = "cannot be opened (missing folder, no permission, or not a file)"
    elif "locked" in low or "busy" in low:
        problem = "is locked by another process for too long"
    else:
        problem = f"failed: {text}"
    return f"store {path} {problem}"


class Store:
    """The SQLite store. ``Store("runs/normlab.sqlite")``; ``Store(path, readonly=True)`` for
    readers (works in a read-only folder); ``Store.memory()`` keeps everything in memory."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 30.0) -> None:
        self.readonly = readonly
        self._lock = threading.RLock()
        self.memory = str(path) == ":memory:"
        self.path = Path(path) if not self.memory else Path(":memory:")
        try:
            self.db = self._connect(timeout)
            self._prepare_retrying(timeout)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(_explain(str(self.path), exc)) from None

    def _prepare_retrying(self, timeout: float) -> None:
        """Two processes opening a new store at once race to switch it to WAL and create the
        schema; SQLite answers one of them 'locked' at once (no busy wait for a journal-mode
        change): try again, re-reading what the other one created, until ``timeout``."""
        deadline = time.time() + timeout
        while True:
            try:
                self._prepare()
                return
            except (sqlite3.OperationalError, StoreError) as exc:
                if "locked" not in str(exc) or time.time() > deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def in_memory(cls) -> "Store":
        """A store that leaves no file behind (searches run without ``store=``)."""
        return cls(":memory:")

    # -- opening ------------------------------------------------------------------------

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self.memory:
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        elif self.readonly:
            if not self.path.exists():
                raise StoreError(f"no store at {self.path}")
            if self.path.is_dir():
                raise StoreError(f"store {self.path} is a directory, not a file")
            db = self._connect_readonly(timeout)
        else:
            if self.path.is_dir():
                raise StoreError(f"store {self.path} is a directory, not a file")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store {self.path}: cannot create its folder "
                                 f"{self.path.parent} ({exc.strerror or exc})") from None
            db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                 check_same_thread=False)
        db.row_factory = sqlite3.Row
        return db

    def _connect_readonly(self, timeout: float) -> sqlite3.Connection:
        base = f"file:{quote(str(self.path.resolve()))}"
        db = sqlite3.connect(f"{base}?mode=ro", uri=True, timeout=timeout, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            # A WAL store in a read-only folder: its -shm file cannot be created. Nothing can
            # be writing it there, so read it as immutable.
            db.close()
            return sqlite3.connect(f"{base}?mode=ro&immutable=1", uri=True, timeout=timeout,
                                   isolation_level=None, check_same_thread=False)

    def _prepare(self) -> None:
        tables = schema.tables(self.db)        # raises 'not a database' before anything is written
        version = schema.stored_version(self.db, tables)
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {self.path} was written by a newer normlab (schema {version}; "
                             f"this version reads up to {SCHEMA_VERSION}): upgrade normlab")
        if self.readonly:
            if version < SCHEMA_VERSION and tables:
                self._migrate_in_memory(version)
            elif not tables:
                self._switch_to_memory()
            return
        if tables:
            # Before any write: a damaged file is reported and left exactly as it was.
            verdict = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise StoreError(f"store {self.path} is corrupt (integrity check: {verdict}); "
                                 f"the file was left untouched")
        if not self.memory and self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if version < SCHEMA_VERSION and tables:
            with self.transaction():
                schema.migrate(self.db, version)
        elif not schema.TABLES <= tables:
            with self.transaction():
                schema.create(self.db)
                schema.set_version(self.db)

    def _switch_to_memory(self) -> None:
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        mem.row_factory = sqlite3.Row
        self.db.close()
        self.db = mem
        schema.create(self.db)
        schema.set_version(self.db)

    def _migrate_in_memory(self, version: int) -> None:
        """Read-only opening of an old store: migrate a copy in memory, leave the file alone."""
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.db.backup(mem)
        self.db.close()
        mem.row_factory = sqlite3.Row
        self.db = mem
        self.db.execute("BEGIN")
        schema.migrate(self.db, version)
        self.db.execute("COMMIT")

    # -- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            try:
                self.db.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); SQLite errors become StoreError."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(_explain(str(self.path), exc)) from None

    def _execute(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """A read: every row fetched inside the guard, so a corrupt page is a StoreError too."""
        with self._lock:
            try:
                return self.db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(_explain(str(self.path), exc)) from None

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only")

    # -- experiments --------------------------------------------------------------------

    def experiment(self, name: str, kind: str, config: Mapping[str, Any],
                   identity: Mapping[str, Any] | None = None) -> ExperimentRecord:
        """The experiment record for (kind, name, identity), created if new. ``identity`` is the
        part of the config that changes results (default: all of it); the full config is kept,
        updated to the latest one given."""
        self._check_writable()
        check_name(name)
        exp = experiment_id(kind, name, config if identity is None else identity)
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO experiments (id, name, kind, config, created) "
                       "VALUES (?, ?, ?, ?, ?)", (exp, name, kind, canonical_json(config), now))
            db.execute("UPDATE experiments SET config=? WHERE id=?", (canonical_json(config), exp))
        found = self.get_experiment(exp)
        assert found is not None
        return found

    def get_experiment(self, experiment_id_: str) -> ExperimentRecord | None:
        rows = self._execute("SELECT * FROM experiments WHERE id=?", (experiment_id_,))
        row = rows[0] if rows else None
        return self._experiment(row) if row else None

    @staticmethod
    def _experiment(row: sqlite3.Row) -> ExperimentRecord:
        return ExperimentRecord(row["id"], row["name"], row["kind"], json.loads(row["config"]),
                                row["created"])

    def experiments(self, *, kind: str | None = None, name: str | None = None) -> list[ExperimentRecord]:
        where, args = [], []
        if kind is not None:
            where.append("kind=?")
            args.append(kind)
        if name is not None:
            where.append("name=?")
            args.append(name)
        q = "SELECT * FROM experiments" + (" WHERE " + " AND ".join(where) if where else "")
        return [self._experiment(r) for r in self._execute(q + " ORDER BY created, id", args)]

    def experiment_names(self, kind: str | None = None) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.experiments(kind=kind):
            seen.setdefault(e.name)
        return list(seen)

    # -- trials: writes (drivers only) ---------------------------------------------------

    def add_trials(self, experiment: str | ExperimentRecord,
                   descriptions: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert trials not stored yet (as 'pending'); returns every description's id, in order."""
        return self.insert_trials(experiment, descriptions)[0]

    def insert_trials(self, experiment: str | ExperimentRecord,
                      descriptions: Iterable[Mapping[str, Any]]) -> tuple[list[str], int]:
        """``add_trials`` that also says how many were new (all new: none to look up)."""
        self._check_writable()
        exp = experiment.id if isinstance(experiment, ExperimentRecord) else experiment
        now = time.time()
        ids, rows = [], []
        for d in descriptions:
            tid = trial_id(exp, d)
            ids.append(tid)
            rows.append((tid, exp, canonical_json(d), now))
        with self.transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO trials (id, experiment_id, description, status, "
                           "created) VALUES (?, ?, ?, 'pending', ?)", rows)
            inserted = db.total_changes - before
        return ids, inserted

    def claim(self, trial: str, owner: str, lease: float = 120.0) -> bool:
        """Atomically mark a trial running for ``owner`` until now + ``lease`` seconds: only a
        pending trial, or a running one whose lease ran out or whose owner is a dead process on
        this host (killed with -9: a driver waiting for its trial takes it over at once rather
        than after the lease), can be claimed."""
        self._check_writable()
        with self.transaction() as db:
            return claim_trial(db, trial, owner, lease, time.time(), ("pending",))

    def renew(self, owner: str, trials: Iterable[str], lease: float = 120.0) -> int:
        """Extend the leases ``owner`` holds on ``trials``; returns how many it still holds."""
        ids = list(trials)
        if not ids:
            return 0
        held = 0
        with self.transaction() as db:
            for chunk in _chunks(ids):
                cur = db.execute(f"UPDATE trials SET lease_expires=? WHERE owner=? AND status='running' "
                                 f"AND id IN ({','.join('?' * len(chunk))})",
                                 (time.time() + lease, owner, *chunk))
                held += cur.rowcount
        return held

    def release(self, owner: str, trials: Iterable[str]) -> None:
        """Give claimed trials back (pending) without a result: an interrupted driver's in-flight work."""
        ids = list(trials)
        if not ids:
            return
        with self.transaction() as db:
            for chunk in _chunks(ids):
                db.execute(f"UPDATE trials SET status='pending', owner=NULL, lease_expires=NULL "
                           f"WHERE owner=? AND status='running' AND id IN ({','.join('?' * len(chunk))})",
                           (owner, *chunk))

    def reap_dead_owners(self) -> int:
        """Expire the leases of drivers on this host whose process is gone (killed with -9):
        their trials become claimable at once instead of when the lease runs out."""
        owners = [r[0] for r in self._execute("SELECT DISTINCT owner FROM trials WHERE status='running' "
                                              "AND owner IS NOT NULL")]
        dead = [owner for owner in owners if is_dead_local(owner)]
        n = 0
        if dead:
            with self.transaction() as db:
                for owner in dead:
                    n += db.execute("UPDATE trials SET lease_expires=0 WHERE owner=? AND status='running'",
                                    (owner,)).rowcount
        return n

    def requeue_failed(self, trials: Iterable[str]) -> int:
        """Failed trials become pending again (a rerun retries them)."""
        ids = list(trials)
        n = 0
        with self.transaction() as db:
            for chunk in _chunks(ids):
                n += db.execute(f"UPDATE trials SET status='pending' WHERE status='failed' "
                                f"AND id IN ({','.join('?' * len(chunk))})", chunk).rowcount
        return n

    def finish(self, trial: str, result: TrialResult) -> bool:
        """Store a result. The first result wins: a trial already ok or diverged is left alone
        (returns False)."""
        self._check_writable()
        result = TrialResult.coerce(result)
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE trials SET status=?, metrics=?, history=?, error=?, finished=?, "
                "started=COALESCE(?, started), owner=NULL, lease_expires=NULL "
                f"WHERE id=? AND status NOT IN ({','.join('?' * len(FINISHED))})",
                (result.status, canonical_json(result.metrics), canonical_json(result.history),
                 result.error, result.finished or time.time(), result.started, trial, *FINISHED))
            return cur.rowcount == 1

    def write_trials(self, experiment: str | ExperimentRecord, *,
                     start: Iterable[tuple[str, str]] = (), finish: Iterable[tuple[str, TrialResult]] = (),
                     owner: str | None = None, lease: float = 120.0) -> list[bool]:
        """Several writes in one transaction (a search's group commit): store the results in
        ``finish`` (id, result) as ``finish`` does (the first result wins), and start each trial
        of ``start`` (id, canonical description JSON): insert it as running under ``owner`` when
        it is new, else claim it as ``claim`` does (a failed one too: a rerun retries it). A
        trial both started and finished here is inserted with its result directly. Returns, for
        each trial of ``start``, whether ``owner`` holds it (False: another driver's live lease)."""
        self._check_writable()
        exp = experiment.id if isinstance(experiment, ExperimentRecord) else experiment
        now = time.time()
        results = {tid: TrialResult.coerce(r) for tid, r in finish}
        held: list[bool] = []
        with self.transaction() as db:
            for tid, blob in start:
                result = results.pop(tid, None)
                if result is None:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO trials (id, experiment_id, description, status, owner, "
                        "lease_expires, attempts, created, started) VALUES (?, ?, ?, 'running', ?, ?, 1, ?, ?)",
                        (tid, exp, blob, owner, now + lease, now, now))
                else:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO trials (id, experiment_id, description, status, metrics, "
                        "history, error, attempts, created, started, finished) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                        (tid, exp, blob, result.status, canonical_json(result.metrics),
                         canonical_json(result.history), result.error, now, result.started or now,
                         result.finished or now))
                if cur.rowcount == 1:
                    held.append(True)
                    continue
                held.append(claim_trial(db, tid, owner, lease, now, ("pending", "failed")))
                if result is not None:
                    results[tid] = result
            if results:
                db.executemany(
                    "UPDATE trials SET status=?, metrics=?, history=?, error=?, finished=?, "
                    "started=COALESCE(?, started), owner=NULL, lease_expires=NULL "
                    f"WHERE id=? AND status NOT IN ({','.join('?' * len(FINISHED))})",
                    [(r.status, canonical_json(r.metrics), canonical_json(r.history), r.error,
                      r.finished or now, r.started, tid, *FINISHED) for tid, r in results.items()])
        return held

    def finished_results(self, experiment: str | ExperimentRecord) -> dict[str, tuple[str, dict[str, Any], str | None]]:
        """id -> (status, metrics, error) of the experiment's finished (ok, diverged) trials."""
        exp = experiment.id if isinstance(experiment, ExperimentRecord) else experiment
        marks = ",".join("?" * len(FINISHED))
        rows = self._execute(f"SELECT id, status, metrics, error FROM trials WHERE experiment_id=? "
                             f"AND status IN ({marks})", (exp, *FINISHED))
        return {r["id"]: (r["status"], json.loads(r["metrics"]) if r["metrics"] else {}, r["error"])
                for r in rows}

    # -- trials: reads --------------------------------------------------------------------

    def count(self, experiment: str | None = None) -> int:
        if experiment is None:
            return int(self._execute("SELECT COUNT(*) FROM trials")[0][0])
        return int(self._execute("SELECT COUNT(*) FROM trials WHERE experiment_id=?",
                                 (experiment,))[0][0])

    def status_of(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        out: dict[str, str] = {}
        for chunk in _chunks(ids):
            q = f"SELECT id, status FROM trials WHERE id IN ({','.join('?' * len(chunk))})"
            out.update({r["id"]: r["status"] for r in self._execute(q, chunk)})
        return out

    def trial(self, trial: str) -> dict[str, Any] | None:
        rows = self.rows(ids=[trial])
        return rows[0] if rows else None

    def rows(self, *, experiment: str | None = None, experiment_id: str | None = None,
             kind: str | None = None, status: str | None = None, ids: Iterable[str] | None = None,
             where: Mapping[str, Any] | None = None, order: str = "seq") -> list[dict[str, Any]]:
        """Trials as dicts (description, metrics and history decoded; 'experiment' is the
        experiment's name), filtered by equality; ``where`` filters on description fields,
        e.g. ``where={"norm": "bn", "batch_size": 2}``."""
        clauses, args = [], []
        for col, val in (("e.name", experiment), ("t.experiment_id", experiment_id),
                         ("e.kind", kind), ("t.status", status)):
            if val is not None:
                clauses.append(f"{col} = ?")
                args.append(val)
        if ids is not None:
            ids = list(ids)
            clauses.append(f"t.id IN ({','.join('?' * len(ids)) or 'NULL'})")
            args.extend(ids)
        for key, val in (where or {}).items():
            if not key.replace("_", "").replace(".", "").isalnum():
                raise StoreError(f"field {key!r} is invalid: expected letters, digits, '_' and '.'")
            clauses.append(f"json_extract(t.description, '$.{key}') = ?")
            args.append(val)
        if order not in ("seq", "finished"):
            raise ValueError(f"order={order!r} is invalid: expected seq or finished")
        q = ("SELECT t.*, e.name AS experiment, e.kind AS kind FROM trials t "
             "JOIN experiments e ON e.id = t.experiment_id"
             + (" WHERE " + " AND ".join(clauses) if clauses else "")
             + (" ORDER BY t.seq" if order == "seq" else " ORDER BY t.finished IS NULL, t.finished, t.seq"))
        out = []
        for r in self._execute(q, args):
            d = dict(r)
            d["description"] = json.loads(d["description"])
            d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
            d["history"] = json.loads(d["history"]) if d["history"] else []
            out.append(d)
        return out


def _chunks(ids: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


