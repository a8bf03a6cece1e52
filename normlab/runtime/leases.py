"""Leases: who holds a running trial (a driver's owner identity) and until when. A trial is
claimed with one UPDATE inside the store's transaction; an owner that is a dead process of this
host (killed with -9) loses its trials at once rather than when the lease runs out."""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid

__all__ = ["new_owner", "claim_trial", "is_dead_local"]


def new_owner() -> str:
    """A driver's identity in leases: host, process and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_trial(db: sqlite3.Connection, trial: str, owner: str | None, lease: float, now: float,
                claimable: tuple[str, ...]) -> bool:
    """Inside a transaction: mark ``trial`` running for ``owner`` if its status is one of
    ``claimable``, or it is running under a lease that ran out or whose owner is a dead process
    of this host (killed with -9: a driver waiting for its trial takes it over at once rather
    than after the lease). Whether ``owner`` now holds it."""
    marks = ",".join("?" * len(claimable))
    cur = db.execute(
        "UPDATE trials SET status='running', owner=?, lease_expires=?, started=?, "
        f"attempts=attempts+1 WHERE id=? AND (status IN ({marks}) OR "
        "(status='running' AND (lease_expires IS NULL OR lease_expires < ?)))",
        (owner, now + lease, now, trial, *claimable, now))
    if cur.rowcount == 1:
        return True
    held = db.execute("SELECT owner FROM trials WHERE id=? AND status='running'", (trial,)).fetchone()
    if held is None or not held[0] or not is_dead_local(held[0]):
        return False
    cur = db.execute("UPDATE trials SET owner=?, lease_expires=?, started=?, attempts=attempts+1 "
                     "WHERE id=? AND status='running' AND owner=?", (owner, now + lease, now, trial, held[0]))
    return cur.rowcount == 1


def is_dead_local(owner: str) -> bool:
    """Whether a lease's owner (``new_owner``'s host:pid:tag) is a process of this host that is gone."""
    parts = owner.split(":")
    return len(parts) == 3 and parts[0] == socket.gethostname() and parts[1].isdigit() \
        and not _alive(int(parts[1]))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
