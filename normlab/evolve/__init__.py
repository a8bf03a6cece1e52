"""`normlab evolve`: evolving normalization-activation layers from primitive ops (EvoNorms, Liu et
al. 2020). The genome and its compiled layer (torch only) are imported here; the search (which
needs normlab.search and training) lives in :mod:`normlab.evolve.search`."""

from ..layers.genome import (OPS, REFERENCE, Genome, GenomeError, canonical, canonical_key, formula,
                     mutate, random_genome, reference)
from ..layers.genome_module import EvolvedLayer, InvalidLayer, check_valid

__all__ = ["OPS", "REFERENCE", "Genome", "GenomeError", "canonical", "canonical_key", "formula",
           "mutate", "random_genome", "reference", "EvolvedLayer", "InvalidLayer", "check_valid"]
