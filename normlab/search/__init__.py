"""Generic search on the runtime's engine: any space; one loop (store, dedup, executors, resume)
driving strategies that propose and observe (``Strategy``: random search, regularized evolution
with mean or Pareto selection, optuna's samplers, your own via ``optimize``); constraints; and the
rank-correlation harness every proxy is judged with.

    from normlab.search import BitString, evolution, onemax
    result = evolution(BitString(32), onemax, budget=500, seed=0)
    result.best().scores           # {'score': 32.0}
"""

from .correlation import RankCorrelation, rank_correlation, topk_hits, topk_overlap
from .engine import SEARCH_KIND, EvaluateTrial, Search, evolution, optimize, random_search
from .optuna_strategy import OptunaStrategy, optuna_search, tpe_search
from .history import Evaluation, SearchResult, pareto_mask
from .space import BitString, SearchError, SearchSpace, onemax
from .strategy import Candidate, RandomSearch, RegularizedEvolution, Strategy

__all__ = ["SearchSpace", "SearchError", "SearchResult", "Evaluation", "random_search", "evolution",
           "rank_correlation", "RankCorrelation", "topk_overlap", "topk_hits", "pareto_mask",
           "BitString", "onemax", "EvaluateTrial", "optuna_search", "tpe_search", "SEARCH_KIND", "load_search", "searches",
           "Strategy", "Candidate", "Search", "optimize", "RandomSearch", "RegularizedEvolution", "OptunaStrategy"]


def searches(store, kind=None):
    """The search experiments in a store (every kind but the batch-size study's), newest first."""
    out = [e for e in store.experiments(kind=kind) if e.kind != "bench"]
    return sorted(out, key=lambda e: -e.created)


def load_search(store, name, seed=None, decode=lambda a: a):
    """The stored SearchResults named ``name`` (one per seed/configuration), oldest first."""
    found = [e for e in store.experiments(name=name) if e.kind != "bench"]
    if seed is not None:
        found = [e for e in found if e.config.get("seed") == seed]
    if not found:
        known = ", ".join(sorted({e.name for e in searches(store)})) or "none"
        raise SearchError(f"no search named {name!r}" + (f" with seed {seed}" if seed is not None else "")
                          + f" in this store; searches: {known}")
    return [SearchResult.from_store(store, e, decode) for e in sorted(found, key=lambda e: e.created)]
