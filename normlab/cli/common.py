"""What every sub-command shares: the consoles, one-line failures, output checks, signals."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console

__all__ = ["console", "err", "fail", "check_out_dir", "check_out_file", "DEFAULT_STORE",
           "interruptible", "open_store", "check_run", "open_executor"]

console = Console()
err = Console(stderr=True, soft_wrap=True)
DEFAULT_STORE = "runs/normlab.sqlite"


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr and a non-zero exit: how every user error ends."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def check_out_dir(path: str | Path, flag: str) -> Path:
    """Create the folder and prove it is writable, before any training starts."""
    folder = Path(path)
    try:
        if folder.exists() and not folder.is_dir():
            raise fail(f"{flag} {folder} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".normlab-write-test-"):
            pass
    except OSError as exc:
        raise fail(f"{flag} {folder} is not writable ({exc.strerror or exc})") from None
    return folder


def check_out_file(path: str | Path, flag: str) -> Path:
    """A file we will write later: its folder must exist (or be creatable) and be writable."""
    file = Path(path)
    if file.is_dir():
        raise fail(f"{flag} {file} is a folder: expected a file name")
    check_out_dir(file.parent if str(file.parent) else ".", flag)
    if file.exists() and not os.access(file, os.W_OK):
        raise fail(f"{flag} {file} is not writable")
    return file


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop dispatching, keep what is finished."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM raises like SIGINT inside the block (so in-flight work is given back cleanly)."""
    def on_term(signum, frame):  # noqa: ARG001
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C too, even when started from a script's background job (which ignores SIGINT)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def check_run(*, name: object = None, backend: object = "serial", workers: object = 1,
              address: str | None = None) -> None:
    """What every command that runs work checks first, before it creates a store, a folder or a
    pool (and in its dry run too): the name (``runtime.check_name``), the backend and the worker
    count (``runtime.check_executor``). One line and exit 2 otherwise."""
    from ..runtime import check_executor, check_name

    try:
        if name is not None:
            check_name(name)
        check_executor(backend, workers, address)
    except ValueError as exc:
        raise fail(str(exc).replace("backend=", "--backend ").replace("workers=", "--workers ")) from None


def load_stored_search(path: str, name: str, *, seed: int | None = None, decode=lambda a: a):
    """The stored searches named ``name`` (read-only), or one line and exit 2 when there is none."""
    from ..search import SearchError, load_search

    store = open_store(path, readonly=True)
    try:
        return load_search(store, name, seed=seed, decode=decode)
    except SearchError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()


@contextlib.contextmanager
def guarded(interrupted: str) -> Iterator[None]:
    """How a long command ends: inside :func:`interruptible`, Ctrl-C or SIGTERM prints
    ``interrupted: <interrupted>`` and exits 130 (what finished is kept); a ValueError from the
    library (bad settings it found) is one line and exit 2."""
    try:
        with interruptible():
            yield
    except KeyboardInterrupt:
        console.print(f"interrupted: {interrupted}", highlight=False)
        raise typer.Exit(130) from None
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None


def open_store(path: str, *, readonly: bool):
    """The store, or one line naming the path and the problem."""
    from ..runtime import Store, StoreError

    if readonly and not Path(path).exists():
        raise fail(f"no store at {path}; run a study first (e.g. 'normlab bench') or pass --store")
    try:
        return Store(path, readonly=readonly)
    except StoreError as exc:
        raise fail(str(exc)) from None


def open_executor(backend: str, workers: int, *, address: str | None = None, threads: int | None = None,
                  **options):
    """The runtime's executor for ``--backend``/``--workers`` (a serial run of one worker pins
    ``threads``), or one line and exit 2 when it cannot be made."""
    from ..runtime import SerialExecutor, make_executor

    try:
        if backend == "serial" and workers == 1 and threads is not None:
            return SerialExecutor(threads=threads)
        return make_executor(backend, workers, address=address, **options)
    except ValueError as exc:                     # ExecutorError is a ValueError
        raise fail(str(exc)) from None
