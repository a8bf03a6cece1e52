"""The norm spec of an evolved normalization-activation layer (``normlab evolve``).

    create_norm("evolved:file=best.json", 64)
    create_norm("evolved:genome=s_bhw.0;mul.3.0;s_hw.0;add.5.6;max.4.7;div.0.8", 64)  # EvoNorm-B0

The layer itself, :class:`normlab.evolve.module.EvolvedLayer`, is plain torch; it is imported
only when an evolved layer is built, so ``normlab.layers`` pays nothing for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["EvolvedNorm", "load_genome_file"]


def load_genome_file(path: str) -> Any:
    """The genome stored in a JSON file (what ``normlab evolve export`` writes, or a bare list)."""
    file = Path(path)
    try:
        obj = json.loads(file.read_text())
    except FileNotFoundError:
        raise ValueError(f"no evolved-layer file at {file}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"evolved-layer file {file} is not readable JSON ({exc})") from None
    return obj


class EvolvedNorm:
    """An evolved layer from a genome code (``genome=``) or a JSON file (``file=``); builds an
    :class:`~normlab.evolve.module.EvolvedLayer` (see there for the math). A file may carry
    ``groups`` too; a spec's ``groups`` wins."""

    replaces_activation = True

    def __new__(cls, num_channels: int, *, genome: str | None = None, file: str | None = None,
                groups: int | None = None, eps: float = 1e-5, momentum: float = 0.1,
                apply_act: bool = True) -> Any:
        from ..evolve.genome import Genome, GenomeError
        from ..evolve.module import EvolvedLayer

        if (genome is None) == (file is None):
            raise ValueError("an evolved layer needs exactly one of genome=CODE or file=PATH")
        try:
            if file is not None:
                obj = load_genome_file(file)
                if isinstance(obj, dict) and groups is None and obj.get("groups") is not None:
                    groups = int(obj["groups"])
                g = Genome.from_json(obj)
            else:
                g = Genome.from_code(genome)
        except GenomeError as exc:
            raise ValueError(str(exc)) from None
        return EvolvedLayer(num_channels, g, groups=groups, eps=eps, momentum=momentum,
                            apply_act=apply_act)

    def __init__(self, num_channels: int, *, genome: str | None = None, file: str | None = None,
                 groups: int | None = None, eps: float = 1e-5, momentum: float = 0.1,
                 apply_act: bool = True) -> None:  # pragma: no cover - __new__ returns the layer
        pass
