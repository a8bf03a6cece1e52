"""`normlab nago`: network-generator search (NAGO, Ru, Esperança, Carlucci, NeurIPS 2020).

    from normlab.nago import GeneratorParams, sample
    net = sample(GeneratorParams(), seed=0, norm="bgn:groups=4")      # one network of a generator

networkx and optuna are imported only when a graph is drawn or a search runs (extra ``nago``).
"""

from .generator import (LEVELS, MODELS, PAPER_RANGES, GeneratorError, GeneratorParams, LevelParams, NagoNet,
                        count_params, level_graph, randwire_params, sample, to_dag)

__all__ = ["GeneratorParams", "LevelParams", "GeneratorError", "NagoNet", "sample", "level_graph", "to_dag",
           "PAPER_RANGES", "MODELS", "LEVELS", "randwire_params", "count_params"]
