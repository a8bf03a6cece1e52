"""NAGO's hierarchical network generator, which lives in :mod:`normlab.models.nago` (network
builders from a description belong to ``models/``, so ``create_model("nago", ...)`` needs no study);
re-exported here, where the study imports it."""

from __future__ import annotations

from ..models.nago import (LEVELS, MODELS, PAPER_MODELS, PAPER_RANGES, GeneratorError, GeneratorParams, GraphBlock,
                           LevelParams, NagoNet, Op, count_params, level_graph, randwire_params, sample, to_dag)

__all__ = ["LevelParams", "GeneratorParams", "GeneratorError", "NagoNet", "sample", "level_graph",
           "to_dag", "PAPER_RANGES", "PAPER_MODELS", "MODELS", "LEVELS", "randwire_params", "count_params",
           "Op", "GraphBlock"]
