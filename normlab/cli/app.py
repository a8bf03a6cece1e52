"""The ``normlab`` command: the Typer application (``cli/_app.py``) with every sub-command
module imported, each registering itself on ``app``."""

from __future__ import annotations

from ._app import app

from . import bench, dynamics, evolve, export, layers, nago, nas, nb201, runs, search  # noqa: F401  (registers the sub-commands)

__all__ = ["app"]
