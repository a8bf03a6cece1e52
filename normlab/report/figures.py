"""matplotlib without a display, and figures saved as PNG and SVG side by side."""

from __future__ import annotations

from pathlib import Path

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, stem: str | Path, dpi: int = 130) -> list[Path]:
    """Writes ``stem.png`` and ``stem.svg``, closes the figure, returns both paths."""
    stem = Path(stem)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=dpi)
    fig.savefig(paths[1])
    pyplot().close(fig)
    return paths
