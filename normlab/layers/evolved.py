"""The norm spec of an evolved normalization-activation layer (``normlab evolve``).

    create_norm("evolved:file=best.json", 64)
    create_norm("evolved:genome=s_bhw.0;mul.3.0;s_hw.0;add.5.6;max.4.7;div.0.8", 64)  # EvoNorm-B0

The layer, :class:`normlab.layers.genome_module.EvolvedLayer`, and its genome are plain torch and plain
Python (normlab.layers.genome and genome_module import nothing else), so ``normlab.layers`` still depends on
torch alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..layers.genome import Genome, GenomeError
from .genome_module import EvolvedLayer

__all__ = ["EvolvedNorm", "load_genome_file", "DEFAULT_GENOME"]

# a bare "evolved" spec: EvoNorm-B0 written as a genome, x / max(s_bhw(x), v1*x + s_hw(x))
DEFAULT_GENOME = "s_bhw.0;mul.3.0;s_hw.0;add.5.6;max.4.7;div.0.8"


def load_genome_file(path: str) -> Any:
    """The JSON stored in an evolved-layer file (what ``normlab evolve export`` writes, or a bare
    genome list)."""
    file = Path(path)
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no evolved-layer file at {file}") from None
    except (OSError, ValueError) as exc:                # bad JSON, not UTF-8
        raise ValueError(f"evolved-layer file {file} is not readable JSON ({exc})") from None


class EvolvedNorm(EvolvedLayer):
    """An evolved layer from a genome code (``genome=``) or a JSON file (``file=``); without either,
    EvoNorm-B0 as a genome (:data:`DEFAULT_GENOME`). The math is :class:`EvolvedLayer`'s. A file
    may carry ``groups`` too; a spec's ``groups`` wins. ``compile=True`` (spec
    ``evolved:compile=true``) runs the genome as one inductor-compiled function, built once per
    genome (a one-off cost of seconds to a minute on a CPU), same math."""

    def __init__(self, num_channels: int, *, genome: str | None = None, file: str | None = None,
                 groups: int | None = None, eps: float = 1e-5, momentum: float = 0.1,
                 apply_act: bool = True, compile: bool = False) -> None:
        if genome is not None and file is not None:
            raise ValueError("an evolved layer takes one of genome=CODE or file=PATH, not both")
        try:
            if file is not None:
                obj = load_genome_file(file)
                if isinstance(obj, dict) and groups is None and obj.get("groups") is not None:
                    groups = int(obj["groups"])
                g = Genome.from_json(obj)
            else:
                g = Genome.from_code(DEFAULT_GENOME if genome is None else genome)
        except GenomeError as exc:
            raise ValueError(str(exc)) from None
        super().__init__(num_channels, g, groups=groups, eps=eps, momentum=momentum, apply_act=apply_act,
                         compile=compile)
