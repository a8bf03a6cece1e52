"""The Typer application; each sub-command module registers itself on ``app``."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="normlab: normalization layers, the batch-size study, and search.")


@app.callback()
def _root() -> None:
    """normlab: normalization layers, the batch-size study, and search."""


from . import bench, dynamics, layers, results  # noqa: E402,F401  (registers the sub-commands)

try:                                               # the search engine's own sub-commands
    from ..search.cli import app as _search_app     # noqa: E402
except ImportError:  # pragma: no cover - before normlab.search exists
    _search_app = None
if _search_app is not None:
    app.add_typer(_search_app, name="search", help="List, inspect, export and plot stored searches.")
