"""The Typer application the sub-command modules register on. Apart from ``app.py``, which
imports every sub-command module, so that no sub-command module imports the module that imports it."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="normlab: normalization layers, the batch-size study, and search.")


@app.callback()
def _root() -> None:
    """normlab: normalization layers, the batch-size study, and search."""
