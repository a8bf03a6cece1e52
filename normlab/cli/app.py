"""The Typer application; each sub-command module registers itself on ``app``."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="normlab: normalization layers, the batch-size study, and search.")


@app.callback()
def _root() -> None:
    """normlab: normalization layers, the batch-size study, and search."""


from . import bench, dynamics, evolve, export, layers, nago, nas, nb201, results, search  # noqa: E402,F401  (registers the sub-commands)
