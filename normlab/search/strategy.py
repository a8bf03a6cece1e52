"""What a search strategy is: it proposes candidates and observes their results; the loop
(``normlab.search.engine``) does everything else (store, dedup, executors, resume, time-outs,
fail-fast, progress). Random search and regularized evolution are written here as strategies;
optuna's samplers are in ``optuna_strategy.py``; NAGO's generator search in ``normlab.nago``.

The split follows optuna's sampler/study: a strategy is the sampler (its state: a population, a
model, a random generator), the loop is the study (the record of what was evaluated). A strategy
draws its randomness from ``search.rng`` only and updates its state in ``observe`` only, so what
it proposes depends on the results fed back before, never on timing, and a rerun rebuilds it by
replay: the loop proposes again from the start, reads the stored results back instead of
evaluating, and feeds them to ``observe`` in the same order. Nothing is pickled.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Mapping

import numpy as np

from .history import Evaluation

__all__ = ["Strategy", "Candidate", "RandomSearch", "RegularizedEvolution"]


class Candidate:
    """A proposal: the architecture, its key (equal keys = the same architecture, evaluated once
    per search), and optionally the trial ``description`` to store and run (default ``{"key":
    key, "arch": <the space's JSON of arch>}``, which the loop's trial function decodes and hands
    to ``evaluate``) and whether it ``counts`` towards the budget (a successive-halving promotion
    does not)."""

    __slots__ = ("arch", "key", "description", "counts")

    def __init__(self, arch: Any, key: str, description: Mapping[str, Any] | None = None,
                 counts: bool = True) -> None:
        self.arch, self.key, self.description, self.counts = arch, key, description, counts

    def __repr__(self) -> str:
        return f"Candidate({self.key!r}{'' if self.counts else ', counts=False'})"


class Strategy:
    """The base class of a search strategy; subclass it and run it with
    :func:`normlab.search.optimize` (or pass it to the loop as the built-in searches do).

    - ``name``: stored as the search's strategy (part of the experiment's identity).
    - ``settings()``: the settings that change the sequence of proposals (also part of the
      identity: a search with other settings is another experiment, never mixed with this one).
    - ``start(search)``: called once before the first proposal; ``search`` (the loop) gives
      ``space``, ``rng`` (the one ``random.Random(seed)`` every draw must come from), ``seed``,
      ``objectives``, ``history`` (the evaluations fed back so far, in proposal order),
      ``pending`` (how many proposals are out) and ``fresh(make)``.
    - ``propose(n)``: up to ``n`` new candidates (architectures, or :class:`Candidate`); fewer
      (or none) when no new one is found, and the loop waits for the outstanding results before
      asking again (nothing outstanding and nothing new: the space is exhausted, the search stops
      with a warning). ``search.fresh(make)`` calls ``make()`` until it gives an architecture
      whose key was never proposed and which meets the constraint (None after ``max_tries``).
    - ``observe(evaluation)``: one result, in proposal order (replayed results too, on resume).
    - ``extra(n)``: candidates beyond the budget (default none), asked once the budget's
      proposals are all out: e.g. the successive-halving promotions of NAGO's search.
    """

    name = "custom"

    def settings(self) -> dict[str, Any]:
        return {}

    def start(self, search: Any) -> None:
        self.search = search

    def propose(self, n: int) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__}.propose(n) is missing: a strategy must propose")

    def observe(self, evaluation: Evaluation) -> None:
        pass

    def extra(self, n: int) -> list[Any]:
        return []


class RandomSearch(Strategy):
    """Distinct feasible samples of the space, one ``space.sample(rng)`` after another."""

    name = "random"

    def propose(self, n: int) -> list[Any]:
        search = self.search
        sample, rng = search.space.sample, search.rng
        out = []
        for _ in range(n):
            found = search.fresh(lambda: sample(rng))
            if found is None:
                break
            out.append(found)
        return out


class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution, Real et al. 2019 (see :func:`normlab.search.evolution`):
    random samples until ``population`` evaluations are proposed, then mutations of tournament
    winners; the oldest member dies (``regularized=False``: the worst)."""

    name = "evolution"

    def __init__(self, population: int = 50, sample_size: int = 10, selection: str = "mean",
                 regularized: bool = True, crossover: float = 0.0) -> None:
        self.population_size = population
        self.sample_size = sample_size
        self.selection = selection
        self.regularized = bool(regularized)
        self.crossover = float(crossover)
        self.population: deque[Evaluation] = deque()

    def settings(self) -> dict[str, Any]:
        return {"population": self.population_size, "sample_size": self.sample_size,
                "selection": self.selection, "regularized": self.regularized, "crossover": self.crossover}

    def start(self, search: Any) -> None:
        super().start(search)
        self.population.clear()
        self.objectives = search.objectives

    def _fitness(self, members: list[Evaluation]) -> list[float]:
        """Each objective min-max normalised over ``members`` (so that 1 is best), averaged; with
        one objective, the signed score itself (same order, no normalising needed)."""
        if len(self.objectives) == 1:
            (name, d), = self.objectives.items()
            return [m.scores[name] if d == "max" else -m.scores[name] for m in members]
        total = [0.0] * len(members)
        for name, d in self.objectives.items():
            vals = [m.scores[name] if d == "max" else -m.scores[name] for m in members]
            lo, hi = min(vals), max(vals)
            if hi > lo:
                for i, v in enumerate(vals):
                    total[i] += (v - lo) / (hi - lo)
        return [t / len(self.objectives) for t in total]

    def _winner(self) -> Evaluation:
        rng = self.search.rng
        k = min(self.sample_size, len(self.population))
        pop = self.population                  # indices drawn as rng.sample(pop, k) draws them, without
        contenders = [pop[i] for i in rng.sample(range(len(pop)), k)]    # its per-call check of a deque
        if self.selection == "pareto" and len(self.objectives) > 1:
            from .history import pareto_mask

            pts = np.array([[m.scores[o] for o in self.objectives] for m in contenders])
            front = [m for m, keep in zip(contenders, pareto_mask(pts, self.objectives)) if keep]
            return front[rng.randrange(len(front))]
        fit = self._fitness(contenders)
        return contenders[fit.index(max(fit))]

    def _child(self) -> Any:
        space, rng = self.search.space, self.search.rng
        parent = self._winner()
        cross = getattr(space, "crossover", None)
        if self.crossover > 0 and callable(cross) and rng.random() < self.crossover:
            other = self._winner()
            return space.mutate(cross(parent.arch, other.arch, rng), rng)
        return space.mutate(parent.arch, rng)

    def propose(self, n: int) -> list[Any]:
        search = self.search
        space, rng = search.space, search.rng
        out: list[Any] = []
        for _ in range(n):
            warming = (len(search.history) + search.pending + len(out) < self.population_size
                       or not self.population)
            found = search.fresh((lambda: space.sample(rng)) if warming else self._child)
            if found is None and not warming:            # mutations exhausted: try fresh samples
                found = search.fresh(lambda: space.sample(rng))
            if found is None:
                break
            out.append(found)
        return out

    def observe(self, evaluation: Evaluation) -> None:
        if not evaluation.ok:
            return
        self.population.append(evaluation)
        if len(self.population) > self.population_size:
            if self.regularized:
                self.population.popleft()                 # aging: the oldest dies
            else:
                fit = self._fitness(list(self.population))
                del self.population[fit.index(min(fit))]


def check_strategy(strategy: Any, error: Callable[[str], Exception]) -> Strategy:
    if not isinstance(strategy, Strategy):
        raise error(f"strategy={strategy!r} is not a normlab.search.Strategy: subclass it with "
                    f"propose(n) and observe(evaluation)")
    return strategy
