"""Optuna's samplers (TPE by default) as a strategy of the one search loop (engine._Loop): the
same store, dedup, executors and resume as random search and evolution.

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

from .engine import _Loop
from .history import Evaluation, SearchResult
from .space import SearchError

__all__ = ["tpe_search", "optuna_search", "SAMPLERS"]

SAMPLERS = ("tpe", "random")


def _sampler(name: str, seed: int, startup: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"sampler={name!r} is invalid: expected one of {', '.join(SAMPLERS)}")


class _Optuna(_Loop):
    def __init__(self, *args: Any, sampler: str, startup: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            import optuna
        except ImportError:
            raise SearchError("the optuna strategy needs optuna: pip install 'normlab[nago]'") from None
        cats = getattr(self.space, "categorical", None)
        if not callable(cats) or not callable(getattr(self.space, "from_params", None)):
            raise SearchError(f"{type(self.space).__name__} has no categorical()/from_params(): the optuna "
                              f"strategy needs its architecture as categorical parameters")
        if len(self.objectives) != 1:
            raise SearchError(f"the optuna strategy optimises one objective, got {', '.join(self.objectives)}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        (self.objective, direction), = self.objectives.items()
        self.direction = direction
        self.dists = {k: optuna.distributions.CategoricalDistribution(list(v)) for k, v in cats().items()}
        self.study = optuna.create_study(direction="maximize" if direction == "max" else "minimize",
                                         sampler=_sampler(sampler, self.seed, startup))
        self.pending: dict[str, Any] = {}
        self.known: dict[str, float | None] = {}       # key -> score told (None: failed)
        self._fail = optuna.trial.TrialState.FAIL

    def candidate(self, taken: set[str], pending: int) -> tuple[Any, str] | None:
        for _ in range(self.max_tries):
            trial = self.study.ask(self.dists)
            arch = self.space.from_params(trial.params)
            key = str(self.space.key(arch))
            if key in self.known:                          # evaluated before: tell, ask again
                value = self.known[key]
                if value is None:
                    self.study.tell(trial, state=self._fail)
                else:
                    self.study.tell(trial, value)
                continue
            if key in taken or key in self.seen:           # pending in this batch
                self.study.tell(trial, state=self._fail)
                continue
            if self.constraint is not None and not self.constraint(arch):
                self.infeasible += 1
                self.study.tell(trial, state=self._fail)
                continue
            self.pending[key] = trial
            return arch, key
        return None

    def tell(self, evaluation: Evaluation) -> None:
        trial = self.pending.pop(evaluation.key, None)
        value = evaluation.scores.get(self.objective) if evaluation.ok else None
        if value is not None and not math.isfinite(value):
            value = None
        self.known[evaluation.key] = value
        if trial is None:
            return
        if value is None:
            self.study.tell(trial, state=self._fail)
        else:
            self.study.tell(trial, value)


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
    return _Optuna(f"optuna-{sampler}", space, evaluate, budget=budget, seed=seed, objectives=objectives,
                   constraint=constraint, store=store, name=name, executor=executor, batch=batch,
                   max_tries=max_tries, progress=progress, settings={"sampler": sampler, "startup": startup},
                   log_every=log_every, sampler=sampler, startup=startup).run()


def tpe_search(space: Any, evaluate: Callable[[Any], Any], *, budget: int, seed: int = 0,
               startup: int = 10, **kwargs: Any) -> SearchResult:
    """Optuna's TPE (Bergstra et al. 2011) over the space's categorical parameters: see
    :func:`optuna_search`."""
    return optuna_search(space, evaluate, budget=budget, seed=seed, sampler="tpe", startup=startup, **kwargs)
