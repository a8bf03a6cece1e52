"""Optuna's samplers (TPE by default) as a strategy (``OptunaStrategy``) of the one search loop
(``engine.Search``): the same store, dedup, executors and resume as random search and evolution.

The space must expose its architecture as categorical parameters: ``categorical() -> {name:
choices}`` and ``from_params(params) -> arch`` (NB201Space does: its six edges). Each proposal is
``study.ask()``; each result goes back with ``study.tell`` in proposal order (the loop feeds
results in that order), so the sequence depends on (seed, batch) only. A proposal whose key was
already evaluated is not evaluated again: its known score is told to the sampler (it learns the
duplicate's value at no cost) and it asks again; within a batch, a key still pending is told as
failed and asked again. Resume: the optuna study lives in memory only; a rerun replays the same
asks and tells from the stored history (the loop re-proposes, finds the stored results and feeds
them back), ending in the same state as an uninterrupted run. Nothing is pickled.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .engine import Search, _user_trial
from .history import Evaluation, SearchResult
from .space import SearchError
from .strategy import Candidate, Strategy

__all__ = ["tpe_search", "optuna_search", "OptunaStrategy", "SAMPLERS"]

SAMPLERS = ("tpe", "random")


def _sampler(name: str, seed: int, startup: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"sampler={name!r} is invalid: expected one of {', '.join(SAMPLERS)}")


class OptunaStrategy(Strategy):
    """An optuna sampler over the space's categorical parameters, as a strategy of the loop:
    ``propose`` asks, ``observe`` tells (in proposal order)."""

    def __init__(self, sampler: str = "tpe", startup: int = 10) -> None:
        self.sampler, self.startup = sampler, startup
        self.name = f"optuna-{sampler}"

    def settings(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "startup": self.startup}

    def start(self, search: Any) -> None:
        super().start(search)
        try:
            import optuna
        except ImportError:
            raise SearchError("the optuna strategy needs optuna: pip install 'normlab[nago]'") from None
        space = search.space
        cats = getattr(space, "categorical", None)
        if not callable(cats) or not callable(getattr(space, "from_params", None)):
            raise SearchError(f"{type(space).__name__} has no categorical()/from_params(): the optuna "
                              f"strategy needs its architecture as categorical parameters")
        if len(search.objectives) != 1:
            raise SearchError(f"the optuna strategy optimises one objective, got {', '.join(search.objectives)}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        (self.objective, direction), = search.objectives.items()
        self.dists = {k: optuna.distributions.CategoricalDistribution(list(v)) for k, v in cats().items()}
        self.study = optuna.create_study(direction="maximize" if direction == "max" else "minimize",
                                         sampler=_sampler(self.sampler, search.seed, self.startup))
        self.pending: dict[str, Any] = {}
        self.known: dict[str, float | None] = {}       # key -> score told (None: failed)
        self._fail = optuna.trial.TrialState.FAIL

    def _tell(self, trial: Any, value: float | None) -> None:
        if value is None:
            self.study.tell(trial, state=self._fail)
        else:
            self.study.tell(trial, value)

    def _ask(self) -> Candidate | None:
        search, space = self.search, self.search.space
        for _ in range(search.max_tries):
            trial = self.study.ask(self.dists)
            arch = space.from_params(trial.params)
            key = str(space.key(arch))
            if key in self.known:                          # evaluated before: tell, ask again
                self._tell(trial, self.known[key])
                continue
            if not search.is_new(key):                     # pending in the window
                self._tell(trial, None)
                continue
            if search.constraint is not None and not search.constraint(arch):
                search.infeasible += 1
                self._tell(trial, None)
                continue
            self.pending[key] = trial
            return Candidate(arch, key)
        return None

    def propose(self, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            found = self._ask()
            if found is None:
                break
            out.append(found)
        return out

    def observe(self, evaluation: Evaluation) -> None:
        trial = self.pending.pop(evaluation.key, None)
        value = evaluation.scores.get(self.objective) if evaluation.ok else None
        if value is not None and not math.isfinite(value):
            value = None
        self.known[evaluation.key] = value
        if trial is not None:
            self._tell(trial, value)


def optuna_search(space: Any, evaluate: Callable[[Any], Any], *, budget: int, seed: int = 0,
                  sampler: str = "tpe", startup: int = 10, objectives: Mapping[str, str] | None = None,
                  constraint: Callable[[Any], bool] | None = None, store: Any = None,
                  name: str | None = None, executor: Any = None, batch: int | None = None,
                  max_tries: int = 1000, progress: bool | None = None, log_every: int = 0) -> SearchResult:
    """An optuna sampler (``tpe``: TPESampler with ``startup`` random trials first; ``random``)
    over the space's categorical parameters, through the search loop. Everything else as in
    :func:`normlab.search.random_search`."""
    if sampler not in SAMPLERS:
        raise SearchError(f"sampler={sampler!r} is invalid: expected one of {', '.join(SAMPLERS)}")
    if isinstance(startup, bool) or not isinstance(startup, int) or startup < 1:
        raise SearchError(f"startup={startup!r} is invalid: expected an integer >= 1")
    return Search(OptunaStrategy(sampler, startup), space, _user_trial(space, evaluate), budget=budget,
                  seed=seed, objectives=objectives, constraint=constraint, store=store, name=name,
                  executor=executor, batch=batch, max_tries=max_tries, progress=progress,
                  log_every=log_every).run()


def tpe_search(space: Any, evaluate: Callable[[Any], Any], *, budget: int, seed: int = 0,
               startup: int = 10, **kwargs: Any) -> SearchResult:
    """Optuna's TPE (Bergstra et al. 2011) over the space's categorical parameters: see
    :func:`optuna_search`."""
    return optuna_search(space, evaluate, budget=budget, seed=seed, sampler="tpe", startup=startup, **kwargs)
