"""The layer search of EvoNorms (Liu et al. 2020) on ``normlab.search``: a genome space, a proxy
task that trains each candidate inside K anchor models, the paper's rejection rules, and
evolution (or the random-search baseline) through the engine's store and executors.

    cfg = EvolveConfig.preset("quick")
    result = run_evolve(cfg, store="runs/normlab.sqlite", name="evolve-quick")
    print(formula(result.best().arch))

Fitness is K accuracies, one per anchor (objectives ``{anchor: "max"}``); tournament selection
over them is the engine's "mean" (min-max normalised mean) or "pareto" (a random member of the
tournament's Pareto front), the paper's two options.

Rejection (section 4 of the paper), before or during training:
- validity: an output that does not depend on x, or NaN/Inf/constant on random input, or a
  non-finite gradient for x or for a parameter (v0, v1, gamma, beta at init), is never trained (the engine's ``constraint``; it does not use budget);
- quality: a layer under ``reject_acc`` validation accuracy after ``reject_steps`` steps on any
  anchor is dropped before full training (the paper: 20% after 100 steps on CIFAR-10);
- stability: the convolution weights are pushed for ``stability_steps`` steps in the direction
  that increases the gradient norm most (normalised gradient ascent on ||dL/dw||^2); a layer whose
  gradient norm grows past ``stability_factor`` times its start (or turns non-finite) is dropped.
A rejected layer is stored as finished ("diverged", with the rule in its error) so a resumed
search never trains it again, and it never joins the population.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .._settings import Settings
from ..layers.genome import BATCH_OPS, Genome, canonical_key, live_nodes, mutate, random_genome
from ..layers.genome_module import InvalidLayer, check_valid

__all__ = ["LayerSpace", "ProxyTask", "EvolveConfig", "run_evolve", "PRESET_NAMES",
           "preset_settings", "anchor_name",
           "rejection_counts", "EvolveError"]


class EvolveError(ValueError):
    """Bad evolve settings: one line naming the setting, its value and what is valid."""


def anchor_name(model: str, width: float) -> str:
    return f"{model}@{width:g}"


@dataclass(frozen=True)
class LayerSpace:
    """Genomes of ``nodes`` intermediate nodes (the search space of :mod:`.genome`).
    ``batch_independent``: no batch aggregates (the paper's S-series)."""

    nodes: int = 8
    batch_independent: bool = False
    proxy: str = ""           # the proxy task's settings (part of a stored search's identity)

    def sample(self, rng: random.Random) -> Genome:
        return random_genome(rng, self.nodes, batch_independent=self.batch_independent)

    def mutate(self, arch: Genome, rng: random.Random) -> Genome:
        return mutate(arch, rng, batch_independent=self.batch_independent)

    def key(self, arch: Genome) -> str:
        return canonical_key(arch)

    def to_json(self, arch: Genome) -> list:
        return arch.to_json()

    def from_json(self, obj: Any) -> Genome:
        return Genome.from_json(obj)

    def valid(self, arch: Genome) -> bool:
        """The validity rule: depends on x, finite on random input, with finite gradients for x and
        for every parameter of the layer."""
        if self.batch_independent and any(
                arch.nodes[i - 4][0] in BATCH_OPS for i in live_nodes(arch) if i >= 4):
            return False
        try:
            check_valid(arch)
        except InvalidLayer:
            return False
        return True


def _data(spec: str, seed: int) -> Any:
    from ..runtime.data import load_data

    return load_data(spec, seed)


@dataclass(frozen=True)
class ProxyTask:
    """Train a candidate layer inside each anchor (``(model, width)`` pairs) for ``steps`` SGD
    steps of ``batch_size`` on ``dataset`` (through ``normlab.train.fit``) and return the validation
    accuracies (eval mode). ``norm_batch_size``: the layer normalises over that many samples
    (fit's ghost batches: one forward per step). Picklable: it runs on any
    executor. Returns a TrialResult: "ok" with one accuracy per anchor, or "diverged" with the
    rejection rule (quality, stability) or the divergence in its error.

    ``compile``: the candidate's layers run the genome as one inductor-compiled function
    (``evolved:...,compile=true``, :func:`normlab.layers.genome_module.compiled_genome`), the same
    math as the interpretation (float rounding aside), so it changes speed, not results; every
    trial records it (metric ``compiled``: 1 when the candidate trained compiled, 0 when it
    trained interpreted). A compile failure falls back to the plain ops (in the layer's call, or,
    for an error raised elsewhere while training compiled, such as the backward's compilation, by
    training that anchor again interpreted from the same seed), with a warning, and the trial
    counts the anchors that fell back (``compile_fallbacks``): a candidate that trains interpreted
    never fails because of compiling. Each compiled candidate pays its genome's compilation
    (seconds per genome on a CPU), which the quick preset's tiny proxy does not earn back
    (docs/evolve.md, "Compiled candidates")."""

    dataset: str = "digits"
    anchors: tuple[tuple[str, float], ...] = (("resnet20", 0.25),)
    steps: int = 200
    batch_size: int = 32
    norm_batch_size: int | None = None
    lr: float = 0.05
    weight_decay: float = 5e-4
    groups: int | None = 4
    reject_steps: int = 50
    reject_acc: float | None = 0.2
    stability_steps: int = 0
    stability_factor: float = 1e3
    eval_limit: int | None = 500
    seed: int = 0
    threads: int = 1
    compile: bool = False

    def spec(self, genome: Genome, compile: bool | None = None) -> str:
        compile = self.compile if compile is None else compile
        return (f"evolved:genome={genome.code}" + (f",groups={self.groups}" if self.groups else "")
                + (",compile=true" if compile else ""))

    def __call__(self, genome: Genome) -> Any:
        import torch

        from ..runtime.protocol import TrialResult

        if self.threads:
            torch.set_num_threads(self.threads)
        started = time.time()
        metrics: dict[str, float] = {"compiled": 1.0 if self.compile else 0.0}
        history: list[dict[str, Any]] = []
        total = fallbacks = 0                  # training steps over all anchors; anchors retrained interpreted
        try:
            for model_name, width in self.anchors:
                name = anchor_name(model_name, width)
                if self.compile:
                    outcome = self._train_compiled(genome, model_name, width)
                    fallbacks += outcome.pop("compile_fallback", 0)
                else:
                    outcome = self._train_one(genome, model_name, width)
                history.append({"anchor": name, **{k: v for k, v in outcome.items() if k != "error"}})
                total += outcome["steps"]
                if "error" in outcome:
                    metrics.update({"rejected_" + outcome["rule"]: 1.0, "steps_trained": outcome["steps"],
                                    "steps_total": total})
                    break
                metrics[name] = outcome["acc"]
        finally:
            if self.compile:
                from ..layers.genome_module import forget_compiled

                forget_compiled(genome)        # the next candidate is another genome: free this one's code
        if self.compile:
            metrics["compile_fallbacks"] = float(fallbacks)
            if fallbacks == len(history):      # every anchor trained interpreted
                metrics["compiled"] = 0.0
        metrics["seconds"] = time.time() - started
        if "error" in outcome:
            return TrialResult("diverged", metrics=metrics, history=history,
                               error=f"rejected ({outcome['rule']}) on {name}: {outcome['error']}",
                               started=started, finished=time.time())
        metrics["steps_total"] = total
        return TrialResult("ok", metrics=metrics, history=history, started=started, finished=time.time())

    # -- one anchor -------------------------------------------------------------------------

    def build(self, genome: Genome, model_name: str, width: float, compile: bool | None = None) -> Any:
        import torch

        from ..models import create_model

        data = _data(self.dataset, self.seed)
        torch.manual_seed(self.seed)
        return create_model(model_name, norm=self.spec(genome, compile), in_channels=data.in_channels,
                            num_classes=data.num_classes, width=width), data

    def fit_config(self) -> Any:
        """The proxy training as ``normlab.train`` settings: SGD with Nesterov momentum 0.9 at
        ``lr`` (no batch-size scaling), cosine to 0 over ``steps``, gradients clipped at norm 5,
        no augmentation, evaluated by the task itself; ``norm_batch_size`` becomes fit's (ghost
        batches). Weight decay is on every parameter, the evolved layers' included: the proxy
        always trained so (its old exemption looked for modules named ``EvolvedLayer``, and the
        anchors hold ``EvolvedNorm``, so it never matched); kept, so searches score as before."""
        from ..train import TrainConfig

        return TrainConfig(steps=self.steps, batch_size=self.batch_size, norm_batch_size=self.norm_batch_size,
                           lr=self.lr, base_batch_size=None, momentum=0.9, nesterov=True,
                           weight_decay=self.weight_decay, norm_weight_decay=self.weight_decay, schedule="cosine",
                           grad_clip=5.0, augment=False, seed=self.seed, device="cpu", eval_every=0,
                           final_eval=False, progress=False)

    def _train_compiled(self, genome: Genome, model_name: str, width: float) -> dict[str, Any]:
        """:meth:`_train_one` with the genome compiled. A compile failure inside the layer's call
        already falls back to the plain ops there (same math, the layer warns): the outcome stands
        and carries ``compile_fallback``. Any other error while training compiled (a failure to
        compile the backward, raised from ``backward()``) trains the anchor again interpreted, from
        the same seed, so the candidate scores what it scores interpreted."""
        import warnings

        from ..layers.genome_module import compile_failed

        try:
            outcome = self._train_one(genome, model_name, width, compile=True)
        except Exception as exc:  # noqa: BLE001 - a compiler error must not fail the candidate
            first = str(exc).splitlines()[0] if str(exc) else ""
            warnings.warn(f"evolve: training {genome.code} compiled failed on {anchor_name(model_name, width)} "
                          f"({type(exc).__name__}: {first}); training it interpreted", stacklevel=2)
            return {**self._train_one(genome, model_name, width, compile=False), "compile_fallback": 1}
        return {**outcome, "compile_fallback": 1} if compile_failed(genome) else outcome

    def _train_one(self, genome: Genome, model_name: str, width: float,
                   compile: bool | None = None) -> dict[str, Any]:
        """Train one anchor through ``normlab.train.fit``, with the stability test and the quality
        rule as callbacks that stop the run with their rule; the accuracy after the last step."""
        from ..train import EarlyRejection, StabilityCheck, evaluate, fit

        model, data = self.build(genome, model_name, width, compile)
        callbacks: list[Any] = []
        if self.stability_steps:
            callbacks.append(StabilityCheck(data, self.stability_steps, self.batch_size, self.seed,
                                            self.stability_factor))
        if self.reject_acc is not None:
            callbacks.append(EarlyRejection(self.reject_steps, self.reject_acc,
                                            lambda m: self._accuracy(m, data, evaluate)))
        out = fit(model, data, self.fit_config(), callbacks)
        steps = int(out.metrics["steps"])
        if out.status != "ok":
            rule = out.stopped_by
            found = {"error": out.message, "rule": rule, "steps": steps}
            if rule == "quality":
                found["acc"] = callbacks[-1].score
            return found
        return {"acc": self._accuracy(model, data, evaluate), "steps": steps}

    def _accuracy(self, model: Any, data: Any, evaluate: Any) -> float:
        import torch

        with torch.no_grad():
            out = evaluate(model, data, "test", limit=self.eval_limit)
        acc = out["test_acc"]
        return acc if math.isfinite(out["test_loss"]) else 0.0


def stability_ratio(*args: Any, **kwargs: Any) -> float:
    """:func:`normlab.train.callbacks.stability_ratio` (the stability rule's measurement)."""
    from ..train.callbacks import stability_ratio as ratio

    return ratio(*args, **kwargs)


# -- the run --------------------------------------------------------------------------------

def _anchors(value: Any) -> tuple[tuple[str, float], ...]:
    """'resnet20@0.25,mobilenetv2@0.125' or [[model, width], ...] -> ((model, width), ...)."""
    from ..models import available_models

    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if isinstance(item, str):
            model, _, width = item.strip().partition("@")
            try:
                pair = (model, float(width) if width else 1.0)
            except ValueError:
                raise EvolveError(f"anchor {item!r} is invalid: expected MODEL@WIDTH, e.g. resnet20@0.25") from None
        else:
            pair = (str(item[0]), float(item[1]))
        if pair[0] not in available_models():
            raise EvolveError(f"anchor model {pair[0]!r} is unknown; known models: {', '.join(available_models())}")
        if not 0 < pair[1] <= 16:
            raise EvolveError(f"anchor width {pair[1]!r} is invalid: expected a number in (0, 16]")
        out.append(pair)
    if not out:
        raise EvolveError("anchors is empty: expected at least one MODEL@WIDTH")
    return tuple(out)


@dataclass(frozen=True)
class EvolveConfig(Settings):
    """Everything a layer search needs; ``task`` and ``space`` are built from it. Presets: the
    YAML files normlab/configs/evolve-quick.yaml and evolve-paper.yaml."""

    settings_error = EvolveError
    settings_label = "evolve"
    presets = {"quick": "evolve-quick.yaml", "paper": "evolve-paper.yaml"}

    dataset: str = "digits"
    anchors: tuple[tuple[str, float], ...] = (("resnet20", 0.25),)
    steps: int = 200
    batch_size: int = 32
    norm_batch_size: int | None = None
    lr: float = 0.05
    groups: int | None = 4
    reject_steps: int = 50
    reject_acc: float | None = 0.2
    stability_steps: int = 0
    stability_factor: float = 1e3
    eval_limit: int | None = 500
    nodes: int = 8
    batch_independent: bool = False
    strategy: str = "evolution"
    budget: int = 60
    population: int = 12
    sample_size: int = 4
    selection: str = "mean"
    seed: int = 0
    data_seed: int = 0
    compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchors", _anchors(self.anchors))
        ints = {"steps": 1, "batch_size": 1, "reject_steps": 1, "stability_steps": 0, "nodes": 1,
                "budget": 1, "population": 2, "sample_size": 1, "seed": 0, "data_seed": 0}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise EvolveError(f"{name}={v!r} is invalid: expected an integer >= {low}")
        for name in ("norm_batch_size", "groups", "eval_limit"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise EvolveError(f"{name}={v!r} is invalid: expected a positive integer or none")
        if self.norm_batch_size is not None and self.norm_batch_size > self.batch_size:
            raise EvolveError(f"norm_batch_size={self.norm_batch_size} is larger than batch_size="
                              f"{self.batch_size}: expected norm_batch_size <= batch_size")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise EvolveError(f"lr={self.lr!r} is invalid: expected a positive number")
        if self.reject_acc is not None and not 0 <= self.reject_acc <= 1:
            raise EvolveError(f"reject_acc={self.reject_acc!r} is invalid: expected a fraction in [0, 1] or none")
        if not isinstance(self.compile, bool):
            raise EvolveError(f"compile={self.compile!r} is invalid: expected true or false")
        if self.strategy not in ("evolution", "random"):
            raise EvolveError(f"strategy={self.strategy!r} is invalid: expected 'evolution' or 'random'")
        if self.selection not in ("mean", "pareto"):
            raise EvolveError(f"selection={self.selection!r} is invalid: expected 'mean' or 'pareto'")
        if self.sample_size > self.population:
            raise EvolveError(f"sample_size={self.sample_size} is larger than population="
                              f"{self.population}: expected sample_size <= population")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["anchors"] = [anchor_name(m, w) for m, w in self.anchors]
        return d

    @property
    def space(self) -> LayerSpace:
        import json

        # compile changes how fast candidates train, not what they score: not part of the identity,
        # so a search resumes with it switched (each trial records it, metric "compiled")
        task = {k: v for k, v in self.to_dict().items()
                if k in {f.name for f in fields(ProxyTask)} - {"seed", "compile"}}
        task["data_seed"] = self.data_seed
        return LayerSpace(self.nodes, self.batch_independent, json.dumps(task, sort_keys=True))

    @property
    def task(self) -> ProxyTask:
        # the proxy task's settings are this config's fields of the same name (the task's seed is
        # the data seed; the search seed only drives the strategy)
        shared = {f.name: getattr(self, f.name) for f in fields(ProxyTask)
                  if f.name not in ("seed", "weight_decay", "threads")}
        return ProxyTask(**shared, weight_decay=5e-4, seed=self.data_seed)

    @property
    def objectives(self) -> dict[str, str]:
        return {anchor_name(m, w): "max" for m, w in self.anchors}


PRESET_NAMES = ("quick", "paper")


def preset_settings(name: str) -> dict[str, Any]:
    """A preset's settings, read from its YAML file normlab/configs/evolve-NAME.yaml (read when
    asked for, so that importing this module needs no YAML reader)."""
    return EvolveConfig.preset_settings(name)


def __getattr__(name: str) -> Any:
    if name == "PRESETS":                       # every preset's settings, by name
        return {n: preset_settings(n) for n in PRESET_NAMES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_evolve(config: EvolveConfig, *, store: Any = None, name: str | None = None,
               executor: Any = None, progress: bool | None = None, batch: int | None = None,
               timeout: float | None = None) -> Any:
    """Run the layer search through ``normlab.search`` (evolution or random search) and return
    its SearchResult; ``result.invalid`` (the engine's ``infeasible``, kept in the store) counts
    candidates the validity rule never trained."""
    from ..search import evolution, random_search

    space, task = config.space, config.task
    common = dict(objectives=config.objectives, constraint=space.valid, store=store,
                  name=name or f"evolve-{config.strategy}", executor=executor, seed=config.seed,
                  budget=config.budget, progress=progress, batch=batch, timeout=timeout)
    if config.strategy == "random":
        result = random_search(space, task, **common)
    else:
        result = evolution(space, task, population=config.population,
                           sample_size=config.sample_size, selection=config.selection, **common)
    result.invalid = result.infeasible
    return result


def rejection_counts(result: Any) -> dict[str, int]:
    """How many evaluations each rule rejected (quality, stability, diverged), and how many passed."""
    out = {"passed": 0, "quality": 0, "stability": 0, "diverged": 0, "failed": 0}
    for e in result.history:
        if e.ok:
            out["passed"] += 1
            continue
        err = e.error or ""
        for rule in ("quality", "stability", "diverged"):
            if f"rejected ({rule})" in err:
                out[rule] += 1
                break
        else:
            out["failed"] += 1
    return out


def mean_fitness(scores: Mapping[str, float], objectives: Mapping[str, str]) -> float:
    return sum(scores[k] for k in objectives) / len(objectives)
