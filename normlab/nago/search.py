"""The generator search: optuna's ask/tell over the generator's few parameters, every evaluation a
trial of normlab's runtime (Store + Driver + executor), multi-objective (accuracy up, params down).

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
A batch of ``executor.capacity`` proposals is asked before the batch is told (parallel BO).

Multi-fidelity (``halving_eta`` > 0): asynchronous successive halving (ASHA, Li et al. 2020) with
``halving_rungs`` fidelities; every generator is first trained ``train.steps / eta^(rungs-1)``
steps; when it is in the top floor(n / eta) of the n generators finished at its rung, it is
trained again eta times longer at the next rung, up to the full ``train``. Each rung is its own
stored trial (description ``rung``, key suffixed ``@<steps> steps``), so a low-fidelity result
is kept and never re-run on resume, and promotions are recomputed from the store. optuna is told
each generator's first-rung result (the one fidelity every generator has; multi-objective
studies cannot prune). ``budget`` counts generators; promotions come on top.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from ..runtime.driver import Driver
from ..runtime.executors import Executor, SerialExecutor
from ..runtime.protocol import RunContext, TrialResult
from ..runtime.store import Store
from ..search.history import Evaluation, SearchResult
from .generator import LEVELS, MODELS, PAPER_MODELS, PAPER_RANGES, GeneratorParams, LevelParams, randwire_params

__all__ = ["NagoConfig", "NagoError", "run_search", "evaluate_generator", "search_space", "generator_from",
           "NAGO_KIND", "OBJECTIVES", "STRATEGIES", "QUICK_RANGES", "load_config", "PRESETS", "promotions"]

NAGO_KIND = "nago"
OBJECTIVES = {"accuracy": "max", "params": "min"}
STRATEGIES = ("tpe", "gp", "random", "randwire")
MODEL_KEYS = {"ws": ("n", "k", "p"), "er": ("n", "p"), "ba": ("n", "m")}
DEFAULT_M = (1, 3)

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
class NagoConfig:
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_ratios"] = list(self.channel_ratios)
        d["ranges"] = {lv: {k: list(v) for k, v in r.items()} for lv, r in self.ranges.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NagoConfig":
        from .._settings import known_settings

        return cls(**known_settings(d, cls, "NAGO", NagoError))


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
        from .._yaml import read_yaml_mapping

        try:
            base = read_yaml_mapping(path, "config")
        except ValueError as exc:
            raise NagoError(str(exc)) from None
    elif preset is not None:
        if preset not in PRESETS:
            raise NagoError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
        base = {"name": f"nago-{preset}", **PRESETS[preset]}
    base.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(base.get("train"), dict):
        base["train"] = {**_train_default(), **base["train"]}
    return NagoConfig.from_dict(base)


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


# -- the loop -----------------------------------------------------------------------------------

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


FINISHED = ("ok", "diverged")


def run_search(cfg: NagoConfig, *, store: Store | str | Path | None = None, executor: Executor | None = None,
               context: RunContext | None = None,
               on_result: Callable[[int, int, Evaluation], None] | None = None,
               timeout: float | None = None) -> SearchResult:
    """Run (or resume) the search ``cfg`` and return its SearchResult (read back from the store).
    ``on_result(done, budget, evaluation)`` hears about every finished evaluation, those a resume
    reads back from the store included (``done`` counts generators: a successive-halving
    promotion does not add one). ``timeout`` (seconds) limits each evaluation: a pool or Ray kills
    the stuck worker and the evaluation is stored as failed (the serial executor cannot interrupt
    one; it records the time-out when the evaluation returns)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    own = not isinstance(store, Store)
    db = Store.in_memory() if store is None else (store if isinstance(store, Store) else Store(store))
    executor = executor or SerialExecutor()
    try:
        config, identity = experiment_config(cfg)
        exp = db.experiment(cfg.name, NAGO_KIND, config, identity=identity)
        try:
            driver = Driver(db, exp, evaluate_generator, executor, context=context, timeout=timeout)
        except ValueError as exc:
            raise NagoError(str(exc)) from None
        db.reap_dead_owners()
        space = search_space(cfg)
        study = optuna.create_study(directions=["maximize" if d == "max" else "minimize"
                                                for d in OBJECTIVES.values()],
                                    sampler=_sampler(cfg, 0))
        by_key: dict[str, list[float] | None] = {}
        told: list[dict[str, Any]] = []          # rows fed back so far, in proposal order (promotions)
        bo = cfg.strategy != "randwire"
        done = drawn = repeats = 0
        capacity = max(1, int(getattr(executor, "capacity", 1)))
        while True:
            promoted = promotions(cfg, told) if cfg.rungs > 1 else []
            batch: list[tuple[Any, dict[str, Any]]] = []      # (optuna trial or None, description)
            while promoted and len(batch) < capacity:        # the generators promoted a rung first
                batch.append((None, promoted.pop(0)))
            while len(batch) < capacity and done + sum(_rung(d) == 0 for _, d in batch) < cfg.budget:
                if not bo:
                    batch.append((None, _description(cfg, {"draw": drawn})))
                    drawn += 1
                    continue
                trial = study.ask(space)
                desc = _description(cfg, trial.params)
                if desc["key"] in by_key or any(d["key"] == desc["key"] for _, d in batch):
                    vals = by_key.get(desc["key"])           # proposed again: tell what is known
                    if vals is not None:
                        study.tell(trial, vals)
                    else:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    repeats += 1
                    if repeats > 200:
                        warnings.warn(f"search '{cfg.name}' stopped early: the sampler keeps proposing "
                                      f"generators already evaluated (the space looks exhausted)", stacklevel=2)
                        return SearchResult.from_store(db, exp)
                    continue
                batch.append((trial, desc))
            if not batch:
                break
            ids, new = db.insert_trials(exp, [d for _, d in batch])
            stored = {} if new == len(ids) else {r["id"]: r for r in db.rows(ids=ids)}
            results: dict[str, tuple[str, dict[str, Any], str | None]] = {}
            for tid, row in stored.items():                 # finished before (resume): read back
                if row["status"] in FINISHED:
                    results[tid] = (row["status"], row["metrics"], row["error"])
            todo = [(tid, d) for tid, (_, d) in zip(ids, batch) if tid not in results]
            failed = [tid for tid, _ in todo if stored.get(tid, {}).get("status") == "failed"]
            if failed:                                      # a rerun retries failed evaluations
                db.requeue_failed(failed)
            if todo:
                outcome = driver.dispatch(todo, poll_every=0.5)
                for c in outcome.results:
                    results[c.id] = (c.result.status, c.result.metrics, c.result.error)
            missing = [tid for tid in ids if tid not in results]
            for r in db.rows(ids=missing) if missing else ():
                results[r["id"]] = (r["status"], r["metrics"], r["error"])
            for tid, (trial, desc) in zip(ids, batch):
                state, metrics, error = results.get(tid, ("failed", {}, "not finished"))
                told.append({"description": desc, "status": state, "metrics": metrics or {}})
                vals = _values(metrics) if state == "ok" else None
                if trial is not None:
                    if vals is not None:
                        study.tell(trial, vals)
                    else:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    by_key[desc["key"]] = vals
                elif _rung(desc) == 0:
                    by_key[desc["key"]] = vals
                if _rung(desc) == 0:
                    done += 1
                if on_result is not None:
                    ev = Evaluation(done - 1, desc["key"], desc["arch"],
                                    {k: float(v) for k, v in (metrics or {}).items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool)},
                                    "ok" if vals is not None else "failed", error)
                    on_result(done, cfg.budget, ev)
        return SearchResult.from_store(db, exp)
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
