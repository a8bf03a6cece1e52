"""The generator search: optuna's ask/tell over the generator's few parameters as a strategy
(``NagoStrategy``) of normlab's one search loop (``normlab.search.engine.Search``: the store,
dedup, executors, sliding window, time-outs, fail-fast and resume are the loop's), every
evaluation a trial of normlab's runtime, multi-objective (accuracy up, params down).

    cfg = NagoConfig(name="nago-quick", dataset="mnist5k", budget=20, strategy="tpe")
    result = run_search(cfg, store="runs/normlab.sqlite")     # a SearchResult
    result.pareto_front()

One store of truth, and resume that replays: optuna's study lives in memory only. Every start
replays the search from its beginning with the same sampler seed: the sampler proposes (asks)
in the same order, and each proposal already finished in the store is told its stored result
instead of being evaluated again. The sampler thus sees the same history in the same order and
its random state advances the same way, so a search killed at any point (kill -9 included)
resumes into exactly the uninterrupted run: the same proposals, finished evaluations never run
again, and the ones left pending or running by the killed process (a dead owner's lease is
reaped) run at their place in the sequence. Successive-halving promotions are computed from the
results fed back so far, in proposal order, not from whatever the store holds.

Evaluation (``evaluate_generator``, the trial function): ``samples`` networks drawn from the
generator with seeds seed, seed+1, ... are each trained briefly (``normlab.train.fit``) and
tested; the generator's fitness is their mean test accuracy, with the spread (std, min, max)
and each sample's accuracy kept (the generator is stochastic, as the paper stresses). Its size
is the mean parameter count (and FLOPs) of those networks.

Strategies (``strategy``): ``tpe`` (optuna's multi-objective TPE, the default), ``gp`` (optuna's
Gaussian-process BO), ``random`` (optuna's RandomSampler: the baseline at equal budget) and
``randwire``: RandWire's fixed generator (WS(randwire_n, 4, 0.75) per stage, Xie et al. 2019),
every evaluation drawing new networks from it (draw i trains the seeds seed + i * samples, ...),
stored like the others, so that the three are compared at the same budget by one command each.
In parallel, proposals go out in the loop's sliding window (``batch``, default twice the
executor's capacity): proposal i is asked right after result i - batch is told, so a slow
evaluation holds back only the proposals that must see its result, never the other workers, and
the sequence depends on (seed, batch) only. With one worker (batch 1) it is the sequential search.

Multi-fidelity (``halving_eta`` > 0): asynchronous successive halving (ASHA, Li et al. 2020) with
``halving_rungs`` fidelities; every generator is first trained ``train.steps / eta^(rungs-1)``
steps; when it is in the top floor(n / eta) of the n generators finished at its rung, it is
trained again eta times longer at the next rung, up to the full ``train``. Each rung is its own
stored trial (description ``rung``, key suffixed ``@<steps> steps``), so a low-fidelity result
is kept and never re-run on resume, and promotions are recomputed as the results are fed back
(a promotion beyond the budget is the strategy's ``extra`` proposal). optuna is told
each generator's first-rung result (the one fidelity every generator has; multi-objective
studies cannot prune). ``budget`` counts generators; promotions come on top.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from .._settings import Settings
from ..runtime.executors import Executor
from ..runtime.protocol import FINISHED, RunContext, TrialResult
from ..runtime.store import Store
from ..search.engine import FAIL_FAST, Search
from ..search.history import Evaluation, SearchResult
from ..search.space import SearchError
from ..search.strategy import Candidate, Strategy
from .generator import LEVELS, MODELS, PAPER_MODELS, PAPER_RANGES, GeneratorParams, LevelParams, randwire_params

__all__ = ["NagoConfig", "NagoError", "run_search", "evaluate_generator", "search_space", "generator_from",
           "NAGO_KIND", "OBJECTIVES", "STRATEGIES", "QUICK_RANGES", "load_config", "PRESETS", "promotions",
           "NagoStrategy"]

NAGO_KIND = "nago"
OBJECTIVES = {"accuracy": "max", "params": "min"}
STRATEGIES = ("tpe", "gp", "random", "randwire")
MODEL_KEYS = {"ws": ("n", "k", "p"), "er": ("n", "p"), "ba": ("n", "m")}
DEFAULT_M = (1, 3)
MAX_REPEATS = 200                  # asks in a row that only find generators already proposed: exhausted

#: Narrower ranges for a CPU: networks of tens of operations that train in seconds.
#: At most 3 x 2 x 4 = 24 operations per stage (mean 2 x 1.5 x 3 = 9).
QUICK_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "top": {"n": (1, 3), "k": (2, 3), "p": (0.1, 1.0), "m": (1, 2)},
    "mid": {"n": (1, 2), "k": (2, 3), "p": (0.1, 1.0), "m": (1, 2)},
    "bottom": {"n": (2, 4), "k": (2, 4), "p": (0.1, 1.0), "m": (1, 3)},
}


class NagoError(ValueError):
    """A bad NAGO setting: one line saying what was wrong and what was expected."""


def _train_default() -> dict[str, Any]:
    return {"steps": 100, "batch_size": 64, "lr": 0.4, "optimizer": "sgd", "weight_decay": 5e-4,
            "augment": False, "eval_every": 0, "schedule": "cosine"}


@dataclass(frozen=True)
class NagoConfig(Settings):
    """A generator search. ``ranges[level][param] = (low, high)`` and ``models[level]`` (ws | er |
    ba) define the space; ``train`` is a TrainConfig mapping for each sampled network."""

    name: str = "nago"
    dataset: str = "mnist5k"
    norm: str = "bn"
    budget: int = 12
    seed: int = 0
    strategy: str = "tpe"
    samples: int = 3
    startup: int = 5                       # random proposals before the model takes over
    models: dict[str, str] = field(default_factory=lambda: dict(PAPER_MODELS))
    ranges: dict[str, dict[str, tuple[float, float]]] = field(
        default_factory=lambda: {lv: dict(r) for lv, r in QUICK_RANGES.items()})
    stages: int = 3
    width: int = 8
    channel_ratios: tuple[float, ...] = (1.0, 2.0, 4.0)
    train: dict[str, Any] = field(default_factory=_train_default)
    data_seed: int = 0
    randwire_n: int = 32                   # strategy randwire: WS(n, 4, 0.75) operations per stage
    halving_eta: int = 0                   # successive halving: 0 off, else the reduction factor (3)
    halving_rungs: int = 2                 # fidelities: steps / eta^(rungs-1), ..., steps / eta, steps

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise NagoError(f"name={self.name!r} is invalid: expected a non-empty string")
        for key, low in (("budget", 1), ("seed", 0), ("samples", 1), ("startup", 0), ("data_seed", 0),
                         ("randwire_n", 1), ("halving_eta", 0), ("halving_rungs", 1)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise NagoError(f"{key}={v!r} is invalid: expected an integer >= {low}")
        if self.strategy not in STRATEGIES:
            raise NagoError(f"strategy={self.strategy!r} is invalid: expected one of {', '.join(STRATEGIES)}")
        from ..layers import NormSpecError, canonical_spec

        try:
            object.__setattr__(self, "norm", canonical_spec(self.norm))
        except NormSpecError as exc:
            raise NagoError(str(exc)) from None
        models = dict(self.models)
        if set(models) != set(LEVELS) or any(m not in MODELS for m in models.values()):
            raise NagoError(f"models={models!r} is invalid: expected top, mid and bottom, each one of "
                            f"{', '.join(MODELS)}")
        object.__setattr__(self, "models", models)
        ranges: dict[str, dict[str, tuple[float, float]]] = {}
        for lv in LEVELS:
            given = {**QUICK_RANGES[lv], **dict((self.ranges or {}).get(lv) or {})}   # defaults: quick
            out = {}
            for key in MODEL_KEYS[models[lv]]:
                r = given.get(key, DEFAULT_M if key == "m" else None)
                if r is None:
                    raise NagoError(f"ranges.{lv}.{key} is missing: the {models[lv]} model needs "
                                    f"{', '.join(MODEL_KEYS[models[lv]])}")
                if (not isinstance(r, (list, tuple)) or len(r) != 2
                        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r)
                        or r[0] > r[1]):
                    raise NagoError(f"ranges.{lv}.{key}={list(r) if isinstance(r, (list, tuple)) else r!r} is invalid: "
                                    f"expected [low, high] with low <= high")
                lo, hi = r
                if key == "p" and not 0 <= lo <= hi <= 1:
                    raise NagoError(f"ranges.{lv}.p={list(r)} is invalid: expected probabilities in [0, 1]")
                if key != "p":
                    if int(lo) != lo or int(hi) != hi or lo < (1 if key in ("n", "m") else 0):
                        raise NagoError(f"ranges.{lv}.{key}={list(r)} is invalid: expected integers >= "
                                        f"{1 if key in ('n', 'm') else 0}")
                    lo, hi = int(lo), int(hi)
                else:
                    lo, hi = float(lo), float(hi)
                out[key] = (lo, hi)
            ranges[lv] = out
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "channel_ratios", tuple(float(r) for r in self.channel_ratios))
        try:
            GeneratorParams(stages=self.stages, width=self.width, channel_ratios=self.channel_ratios)
        except ValueError as exc:
            raise NagoError(str(exc)) from None
        from ..train import TrainConfig
        from ..train.config import ConfigError

        train = {**_train_default(), **dict(self.train or {})}
        for key in ("seed", "progress", "checkpoint", "resume"):
            if key in train:
                raise NagoError(f"train.{key} is set by the search itself: remove it")
        try:
            TrainConfig.from_dict({**train, "progress": False})
        except (ConfigError, TypeError) as exc:
            raise NagoError(f"train: {exc}") from None
        object.__setattr__(self, "train", train)
        if self.halving_eta == 1:
            raise NagoError("halving_eta=1 is invalid: expected 0 (no successive halving) or an integer >= 2")
        if self.halving_eta and self.strategy == "randwire":
            raise NagoError("halving_eta is set with strategy randwire: successive halving needs a generator "
                            "search (tpe, gp or random)")

    @property
    def rungs(self) -> int:
        """How many fidelities: 1 without successive halving."""
        return self.halving_rungs if self.halving_eta else 1

    def rung_train(self, rung: int) -> dict[str, Any]:
        """The training of rung ``rung`` (0 = shortest): the full ``train`` at the top rung, divided
        by eta for each rung below (steps rounded, at least one; epochs as a fraction)."""
        train = dict(self.train)
        below = self.rungs - 1 - rung
        if below <= 0:
            return train
        factor = self.halving_eta ** below
        if train.get("steps"):
            train["steps"] = max(1, int(round(int(train["steps"]) / factor)))
        else:
            train["epochs"] = float(train.get("epochs", 1.0)) / factor
        return train

    def identity(self) -> dict[str, Any]:
        """Everything that changes results (the budget does not: a larger budget continues)."""
        d = self.to_dict()
        for key in ("name", "budget"):
            d.pop(key)
        return d

    settings_error = NagoError
    settings_label = "NAGO"


# -- presets and configs ------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # <= 30 min on 2 CPU cores on shipped data
    "quick": {"dataset": "mnist5k", "budget": 12, "samples": 2, "startup": 4, "randwire_n": 8,
              "train": {"steps": 80}},
    # the paper's space and ranges, for GPUs (Ray): CIFAR-10, larger networks, longer training
    "paper": {"dataset": "cifar10", "budget": 60, "samples": 3, "startup": 10, "width": 32,
              "ranges": {lv: {k: list(v) for k, v in r.items()} for lv, r in PAPER_RANGES.items()},
              "train": {"epochs": 30, "batch_size": 96, "lr": 0.1, "augment": True, "eval_every": 0}},
}


def load_config(path: str | Path | None = None, *, preset: str | None = None,
                **overrides: Any) -> NagoConfig:
    """A config from a YAML file or a preset, then the non-None ``overrides``."""
    if path is not None and preset is not None:
        raise NagoError(f"preset {preset!r} and the config file {path} were both given: use one")
    base: dict[str, Any] = {}
    if path is not None:
        base = NagoConfig.read_yaml(path, "config")
    elif preset is not None:
        base = {"name": f"nago-{preset}", **NagoConfig.preset_settings(preset)}
    base.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(base.get("train"), dict):
        base["train"] = {**_train_default(), **base["train"]}
    return NagoConfig.from_dict(base)


NagoConfig.presets = PRESETS


# -- the space ----------------------------------------------------------------------------------

def search_space(cfg: NagoConfig) -> dict[str, Any]:
    """optuna distributions, one per searched parameter, named 'level.param' (e.g. 'top.k')."""
    from optuna.distributions import FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    for lv in LEVELS:
        for key, (lo, hi) in cfg.ranges[lv].items():
            space[f"{lv}.{key}"] = (FloatDistribution(lo, hi) if key == "p" else IntDistribution(lo, hi))
    return space


def generator_from(cfg: NagoConfig, params: Mapping[str, Any]) -> GeneratorParams:
    """The generator a point of the space stands for."""
    levels = {}
    for lv in LEVELS:
        values = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(lv + ".")}
        levels[lv] = LevelParams(cfg.models[lv], **values)
    return GeneratorParams(**levels, stages=cfg.stages, width=cfg.width, channel_ratios=cfg.channel_ratios)


# -- the trial function -------------------------------------------------------------------------

def _dataset(spec: str, root: str | None, seed: int, download: bool = False):
    """The dataset from the per-process cache every study shares (``normlab.runtime.data``)."""
    from ..runtime.data import load_data

    return load_data(spec, seed, RunContext(data_root=root, download=download))


def evaluate_generator(description: Mapping[str, Any], context: RunContext | None = None) -> TrialResult:
    """Train ``samples`` networks of the generator ``description['arch']`` and test them."""
    from ..models import profile
    from ..train import TrainConfig, fit
    from .generator import sample

    started = time.time()
    ev = description["eval"]
    context = context or RunContext()
    data = _dataset(ev["dataset"], context.data_root, int(ev.get("data_seed", 0)), context.download)
    params = GeneratorParams.from_dict(description["arch"])
    accs, sizes, flops, per = [], [], [], []
    h, w = data.image_size
    for i in range(int(ev["samples"])):
        seed = int(ev["seed"]) + i
        net = sample(params, seed, norm=ev["norm"], in_channels=data.in_channels, num_classes=data.num_classes)
        prof = profile(net, (1, data.in_channels, h, w))
        cfg = TrainConfig.from_dict({**ev["train"], "seed": seed, "progress": False})
        out = fit(net, data, cfg)
        acc = float(out.metrics.get("test_acc", 1.0 / data.num_classes)) if out.status == "ok" \
            else 1.0 / data.num_classes                 # a diverged network scores chance
        accs.append(acc)
        sizes.append(prof.params)
        flops.append(prof.flops)
        per.append({"sample": float(i), "seed": float(seed), "accuracy": acc, "params": float(prof.params),
                    "flops": float(prof.flops), "diverged": float(out.status != "ok"),
                    "seconds": float(out.metrics.get("seconds", 0.0))})
    n = len(accs)
    mean = sum(accs) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1)) if n > 1 else 0.0
    metrics = {"accuracy": mean, "rung": float(description.get("rung", 0)),
               "train_steps": float(ev["train"].get("steps") or 0), "accuracy_std": std,
               "accuracy_min": min(accs), "accuracy_max": max(accs),
               "params": sum(sizes) / n, "flops": sum(flops) / n, "samples": float(n),
               "diverged": float(sum(p["diverged"] for p in per))}
    return TrialResult("ok", metrics=metrics, history=per, started=started, finished=time.time())


# -- the strategy (the loop is normlab.search's) -----------------------------------------------------------------------------------

def _sampler(cfg: NagoConfig, told: int):
    import optuna

    seed = cfg.seed * 1_000_003 + told           # told=0: a resume replays the same draws
    if cfg.strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # ExperimentalWarning for multivariate/GP
        if cfg.strategy == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.startup)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup, multivariate=True)


def _values(metrics: Mapping[str, Any]) -> list[float] | None:
    try:
        vals = [float(metrics[k]) for k in OBJECTIVES]
    except (KeyError, TypeError, ValueError):
        return None
    return vals if all(math.isfinite(v) for v in vals) else None


def _generator(cfg: NagoConfig, params: Mapping[str, Any]) -> GeneratorParams:
    if cfg.strategy == "randwire":
        return randwire_params(cfg.randwire_n, cfg.stages, cfg.width, cfg.channel_ratios)
    return generator_from(cfg, params)


def _description(cfg: NagoConfig, params: Mapping[str, Any], rung: int = 0) -> dict[str, Any]:
    """A stored evaluation. RandWire's evaluations differ only by their draw (``params['draw']``),
    which moves the networks' seeds: draw i trains seeds seed + i * samples, ...; a rung above 0
    (successive halving) trains the same networks longer."""
    gen = _generator(cfg, params)
    key, seed = gen.key(), cfg.seed
    if cfg.strategy == "randwire":
        draw = int(params["draw"])
        key, seed = f"randwire {key} #{draw}", cfg.seed + draw * cfg.samples
    desc = {"key": key, "gen": key, "arch": gen.to_dict(), "params": dict(params),
            "eval": {"dataset": cfg.dataset, "norm": cfg.norm, "samples": cfg.samples, "seed": seed,
                     "train": cfg.rung_train(rung), "data_seed": cfg.data_seed}}
    if cfg.rungs > 1:
        steps = desc["eval"]["train"].get("steps")
        desc["key"] = f"{key} @{steps if steps else desc['eval']['train']['epochs']}{' steps' if steps else ' ep'}"
        desc["rung"] = rung
    return desc


def _rung(description: Mapping[str, Any]) -> int:
    return int(description.get("rung", 0))


def promotions(cfg: NagoConfig, rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Asynchronous successive halving (Li et al., "A System for Massively Parallel Hyperparameter
    Tuning", MLSys 2020): a generator finished at rung r is promoted to rung r + 1 when it is
    among the top floor(n_r / eta) accuracies of the n_r generators finished at rung r and has not
    been promoted yet. Returns the descriptions to run (none already stored)."""
    if cfg.rungs <= 1:
        return []
    stored = {(_rung(r["description"]), r["description"].get("gen", r["description"]["key"])) for r in rows}
    out: list[dict[str, Any]] = []
    for rung in range(cfg.rungs - 1):
        done = [(float(r["metrics"]["accuracy"]), i, r["description"]) for i, r in enumerate(rows)
                if _rung(r["description"]) == rung and r["status"] == "ok" and "accuracy" in (r["metrics"] or {})]
        done.sort(key=lambda t: (-t[0], t[1]))
        for _, _, d in done[:len(done) // cfg.halving_eta]:
            if (rung + 1, d.get("gen", d["key"])) not in stored:
                out.append(_description(cfg, d["params"], rung + 1))
                stored.add((rung + 1, d.get("gen", d["key"])))
    return out


def experiment_config(cfg: NagoConfig) -> tuple[dict, dict]:
    """(config, identity) as stored; the config carries 'strategy' and 'objectives' so that
    ``normlab search runs/show/export/plot`` read a NAGO search like any other."""
    identity = {**cfg.identity(), "objectives": OBJECTIVES}
    config = {**identity, "name": cfg.name, "budget": cfg.budget}
    return config, identity


class NagoStrategy(Strategy):
    """NAGO's generator search as a strategy of the search loop: ``propose`` asks optuna (or, for
    ``randwire``, draws again), successive-halving promotions first; ``observe`` tells optuna each
    generator's first-rung result, in proposal order."""

    def __init__(self, cfg: NagoConfig, on_result: Callable[[int, int, Evaluation], None] | None = None) -> None:
        self.cfg, self.on_result = cfg, on_result
        self.name = cfg.strategy

    def start(self, search: Any) -> None:
        import optuna

        super().start(search)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.bo = self.cfg.strategy != "randwire"
        self.space = search_space(self.cfg)
        self.study = optuna.create_study(directions=["maximize" if d == "max" else "minimize"
                                                     for d in OBJECTIVES.values()],
                                         sampler=_sampler(self.cfg, 0))
        self._fail = optuna.trial.TrialState.FAIL
        self.by_key: dict[str, list[float] | None] = {}   # generators told (None: failed)
        self.trials: dict[str, Any] = {}                   # key -> optuna trial, proposed not told
        self.proposed: dict[str, dict[str, Any]] = {}      # key -> description, proposed not told
        self.told: list[dict[str, Any]] = []               # rows fed back, in proposal order
        self.done = self.drawn = 0

    def _tell(self, trial: Any, vals: list[float] | None) -> None:
        if vals is None:
            self.study.tell(trial, state=self._fail)
        else:
            self.study.tell(trial, vals)

    def _candidate(self, desc: dict[str, Any], counts: bool = True) -> Candidate:
        self.proposed[desc["key"]] = desc
        return Candidate(desc["arch"], desc["key"], desc, counts=counts)

    def _promotions(self, n: int) -> list[Candidate]:
        """Up to ``n`` successive-halving promotions earned by the results fed back so far."""
        if self.cfg.rungs <= 1:
            return []
        due = [d for d in promotions(self.cfg, self.told) if self.search.is_new(d["key"])]
        return [self._candidate(d, counts=False) for d in due[:n]]

    def _new(self) -> Candidate | None:
        """A generator never proposed: optuna's next ask (one already known is told its result
        and asked again), or RandWire's next draw."""
        if not self.bo:
            self.drawn += 1
            return self._candidate(_description(self.cfg, {"draw": self.drawn - 1}))
        for _ in range(self.search.max_tries):
            trial = self.study.ask(self.space)
            desc = _description(self.cfg, trial.params)
            if desc["key"] in self.by_key or not self.search.is_new(desc["key"]):
                self._tell(trial, self.by_key.get(desc["key"]))    # proposed again: tell what is known
                continue
            self.trials[desc["key"]] = trial
            return self._candidate(desc)
        return None

    def propose(self, n: int) -> list[Candidate]:
        out = self._promotions(n)
        while len(out) < n:
            found = self._new()
            if found is None:
                break
            out.append(found)
        return out

    def extra(self, n: int) -> list[Candidate]:
        return self._promotions(n)                       # the budget's generators are all out

    def observe(self, evaluation: Evaluation) -> None:
        desc = self.proposed.pop(evaluation.key)
        vals = [evaluation.scores[k] for k in OBJECTIVES] if evaluation.ok else None
        self.told.append({"description": desc, "status": "ok" if evaluation.ok else "failed",
                          "metrics": evaluation.scores})
        trial = self.trials.pop(evaluation.key, None)
        if trial is not None:
            self._tell(trial, vals)
        if _rung(desc) == 0:
            self.by_key[evaluation.key] = vals
            self.done += 1
        if self.on_result is not None:
            self.on_result(self.done, self.cfg.budget,
                           Evaluation(self.done - 1, evaluation.key, desc["arch"], evaluation.scores,
                                      evaluation.status, evaluation.error))


def run_search(cfg: NagoConfig, *, store: Store | str | Path | None = None, executor: Executor | None = None,
               context: RunContext | None = None,
               on_result: Callable[[int, int, Evaluation], None] | None = None,
               timeout: float | None = None, batch: int | None = None,
               fail_fast: int = FAIL_FAST) -> SearchResult:
    """Run (or resume) the search ``cfg`` on the search loop (``normlab.search.engine.Search``,
    strategy :class:`NagoStrategy`) and return its SearchResult (read back from the store).
    ``on_result(done, budget, evaluation)`` hears about every finished evaluation, those a resume
    reads back from the store included (``done`` counts generators: a successive-halving
    promotion does not add one). ``timeout`` (seconds) limits each evaluation: a pool or Ray kills
    the stuck worker and the evaluation is stored as failed (the serial executor cannot interrupt
    one; it records the time-out when the evaluation returns). ``batch``: the loop's sliding
    window (default twice the executor's capacity, 1 serial); ``fail_fast``: stop with one error
    when the first that many evaluations fail alike (0: never)."""
    own = not isinstance(store, Store)
    db = Store.in_memory() if store is None else (store if isinstance(store, Store) else Store(store))
    try:
        config, identity = experiment_config(cfg)
        search = Search(NagoStrategy(cfg, on_result), None, evaluate_generator, budget=cfg.budget, seed=cfg.seed,
                        objectives=OBJECTIVES, store=db, name=cfg.name, executor=executor, batch=batch,
                        max_tries=MAX_REPEATS, progress=False, timeout=timeout, fail_fast=fail_fast,
                        kind=NAGO_KIND, identity=identity, config=config, context=context)
        search.run()
        return SearchResult.from_store(db, search.experiment)
    except SearchError as exc:
        raise NagoError(str(exc)) from None
    finally:
        if own:
            db.close()


def study_from_store(cfg: NagoConfig, store: Store):
    """The optuna study as the search would rebuild it from ``store`` (for inspection and tests)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config, identity = experiment_config(cfg)
    exp = store.experiment(cfg.name, NAGO_KIND, config, identity=identity)
    space = search_space(cfg)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=_sampler(cfg, 0))
    if cfg.strategy == "randwire":
        return study
    for r in store.rows(experiment_id=exp.id):
        if r["status"] in FINISHED and _rung(r["description"]) == 0:
            params = dict(r["description"]["params"])
            vals = _values(r["metrics"])
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: space[k] for k in params}, values=vals,
                state=optuna.trial.TrialState.COMPLETE if vals else optuna.trial.TrialState.FAIL))
    return study


def with_overrides(cfg: NagoConfig, **changes: Any) -> NagoConfig:
    return replace(cfg, **changes)
