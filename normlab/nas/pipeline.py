"""The whole one-shot NAS chain from one config: (ABS shrinking) -> supernet -> search -> retrain.

A chain config is a YAML mapping (``normlab/configs/nas-quick.yaml`` and ``nas-paper.yaml`` are
the presets)::

    dataset: digits            # any normlab dataset
    space: small               # a space preset (small, imagenet), a YAML file, or a mapping of SpaceConfig fields
    norm: bn                   # the norm in every op (a normlab spec, e.g. bgn:groups=4); optional
    scorer: bn                 # bn (BN-NAS) | rebn (SPOS) | angle (ABS)
    seed: 0
    supernet: {epochs: 2, lr: 0.5, batch_size: 64}      # TrainConfig fields; mode follows the scorer
    shrink: {first_epochs: 3, stage_epochs: 1, drop: 4, target: 1000, children: 10}   # ABS, optional
    search: {budget: 300, population: 30, sample_size: 5, max_flops: 5.0e6}
    retrain: {top: 3, epochs: 4, lr: 0.05}

Every step resumes: supernets and the ABS stages are epoch checkpoints in ``out_dir`` (their file
names carry a digest of the settings that shaped them, so changed settings never reuse a stale
one), the search's scored paths and the retrained paths are trials in the store.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from .._settings import Settings
from .supernet import PRESETS as SPACE_PRESETS
from .supernet import NasError, SpaceConfig, check_positive
from .train import TrainConfig, train_supernet

__all__ = ["ChainConfig", "SearchSettings", "ShrinkSettings", "RetrainSettings", "CHAIN_PRESETS",
           "load_chain_config", "resolve_space", "chain_plan", "run_chain"]

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SCORERS = ("bn", "rebn", "angle")


@dataclass(frozen=True)
class SearchSettings(Settings):
    """SPOS's evolutionary search over paths (``normlab.nas.search.search_paths``)."""

    settings_error = NasError
    settings_label = "search"

    budget: int = 300
    population: int = 30
    sample_size: int = 5
    crossover: float = 0.0
    rate: float = 0.1
    max_flops: float | None = None
    max_params: float | None = None
    fixed_depth: bool = False

    def __post_init__(self) -> None:
        check_positive(self, ("budget", "population", "sample_size"), "search.")
        if not 0 <= self.crossover <= 1 or not 0 < self.rate <= 1:
            raise NasError(f"search.crossover={self.crossover!r} / search.rate={self.rate!r}: expected "
                           f"crossover in [0, 1] and rate in (0, 1]")


@dataclass(frozen=True)
class ShrinkSettings(Settings):
    """ABS: a long first stage, then short stages dropping ``drop`` operators each, to ``target`` paths."""

    settings_error = NasError
    settings_label = "shrink"

    first_epochs: int = 3
    stage_epochs: int = 1
    drop: int = 4
    target: int = 1000
    children: int = 10
    max_stages: int = 10

    def __post_init__(self) -> None:
        check_positive(self, ("first_epochs", "stage_epochs", "drop", "target", "children", "max_stages"), "shrink.")


@dataclass(frozen=True)
class RetrainSettings(Settings):
    """The top paths trained from scratch (test accuracy on the held-out test set)."""

    settings_error = NasError
    settings_label = "retrain"

    top: int = 3
    epochs: int = 4
    lr: float = 0.05
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_positive(self, ("top", "epochs", "batch_size"), "retrain.")
        if not self.lr > 0:
            raise NasError(f"retrain.lr={self.lr!r} is invalid: expected a positive number")


@dataclass(frozen=True)
class ChainConfig(Settings):
    """One NAS run: which data, space, scorer, and the settings of every step."""

    settings_error = NasError
    presets = {"quick": "nas-quick.yaml", "paper": "nas-paper.yaml"}

    dataset: str = "digits"
    space: Any = "small"
    norm: str | None = None
    scorer: str = "bn"
    seed: int = 0
    supernet: TrainConfig = field(default_factory=lambda: TrainConfig(dataset="digits", mode="bn", epochs=2, lr=0.5))
    shrink: ShrinkSettings | None = None
    search: SearchSettings = field(default_factory=SearchSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    # keep the first op of every layer that changes shape (stride 2 or new width: no identity, no
    # residual) in the supernet and the search: a BN-only supernet cannot learn through a layer
    # whose every op is a different frozen random map (docs/nas.md, "Why a BN-only supernet stays
    # at chance")
    fix_reductions: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.fix_reductions, bool):
            raise NasError(f"fix_reductions={self.fix_reductions!r} is invalid: expected true or false")
        if self.fix_reductions and self.shrink is not None:
            raise NasError("fix_reductions and shrink were both set: use one (ABS shrinks the whole space)")
        if self.scorer not in SCORERS:
            raise NasError(f"scorer={self.scorer!r} is invalid: expected one of {', '.join(SCORERS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise NasError(f"seed={self.seed!r} is invalid: expected an integer")
        if not isinstance(self.space, (str, Mapping)):
            raise NasError(f"space={self.space!r} is invalid: expected a preset name, a YAML file or a mapping")
        # the supernet is trained on the chain's data and seed, in the mode its scorer needs
        mode = "bn" if self.scorer == "bn" else "full"
        object.__setattr__(self, "supernet", replace(self.supernet, dataset=self.dataset, seed=self.seed, mode=mode))

    @classmethod
    def from_settings(cls, d: dict[str, Any]) -> "ChainConfig":
        sup = d.get("supernet") or {}
        if not isinstance(sup, Mapping):
            raise NasError(f"supernet settings should be a mapping, got {type(sup).__name__}")
        for banned in ("dataset", "seed", "mode"):
            if banned in sup:
                raise NasError(f"supernet.{banned} is set by the chain (top-level dataset/seed; mode follows "
                               f"the scorer): remove it")
        d["supernet"] = TrainConfig.from_dict({"dataset": d.get("dataset", "digits"), **sup})
        d["shrink"] = ShrinkSettings.from_dict(d["shrink"]) if d.get("shrink") else None
        for key, settings in (("search", SearchSettings), ("retrain", RetrainSettings)):
            d[key] = settings() if d.get(key) is None else settings.from_dict(d[key])
        try:
            return cls(**d)
        except TypeError as exc:
            raise NasError(f"invalid setting: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["space"] = self.space if isinstance(self.space, str) else dict(self.space)
        for k in ("dataset", "seed", "mode"):
            out["supernet"].pop(k, None)
        return out

    def standalone(self) -> TrainConfig:
        """How the top paths are retrained."""
        r = self.retrain
        return TrainConfig(dataset=self.dataset, epochs=r.epochs, lr=r.lr, batch_size=r.batch_size, seed=self.seed,
                           train_limit=self.supernet.train_limit, val_fraction=self.supernet.val_fraction,
                           val_limit=self.supernet.val_limit)


CHAIN_PRESETS = tuple(ChainConfig.presets)


def load_chain_config(path: str | Path | None = None, *, preset: str | None = None,
                      **overrides: Any) -> ChainConfig:
    """A chain config from a YAML file or a preset (``quick``, ``paper``), then the non-None
    top-level ``overrides`` (``budget``/``top`` go into search/retrain)."""
    if path is not None and preset is not None:
        raise NasError(f"--preset {preset} and the config file {path} were both given: use one")
    if path is None:
        preset = preset or "quick"
        if preset not in CHAIN_PRESETS:
            raise NasError(f"--preset {preset!r} is invalid: expected one of {', '.join(CHAIN_PRESETS)}")
        path = CONFIGS / ChainConfig.presets[preset]
    base = ChainConfig.read_yaml(path, "nas config")
    for key, section in (("budget", "search"), ("top", "retrain")):
        v = overrides.pop(key, None)
        if v is not None:
            if not isinstance(base.get(section) or {}, Mapping):
                raise NasError(f"{section} should be a mapping of settings")
            base[section] = {**(base.get(section) or {}), key: v}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ChainConfig.from_dict(base)


def dataset_info(dataset: str, *, download: bool = False, missing_ok: bool = False) -> Any:
    """``check_dataset``; with ``missing_ok``, a downloadable set that is not on disk yet is
    described from its known facts (a dry run plans without the data)."""
    from ..data import DataError, check_dataset

    try:
        return check_dataset(dataset, download=download)
    except DataError:
        from ..data.downloads import FACTS, known_info

        if not missing_ok or dataset not in FACTS:
            raise
        return known_info(dataset)


def resolve_space(space: Any, dataset: str, norm: str | None = None, *, missing_ok: bool = False,
                  info: Any = None) -> SpaceConfig:
    """The search space (a preset name, a YAML file or a mapping) fitted to the dataset's shape
    (``info``: the dataset's ``dataset_info``, when the caller has it already)."""
    info = info or dataset_info(dataset, missing_ok=missing_ok)
    if isinstance(space, Mapping):
        base = dict(space)
    elif space in SPACE_PRESETS:
        base = dict(SPACE_PRESETS[space])
    else:
        path = Path(space)
        if not path.is_file():
            raise NasError(f"space {space} is neither a preset ({', '.join(SPACE_PRESETS)}) nor a YAML file")
        from .._yaml import read_yaml_mapping

        base = read_yaml_mapping(path, "space file")
    base.update(in_channels=info.in_channels, num_classes=info.num_classes, image_size=info.image_size[0])
    if norm is not None:
        base["norm"] = norm
    if info.image_size[0] <= 12:                    # digits (8x8): no stem downsampling
        base.setdefault("stem_stride", 1)
    return SpaceConfig.from_dict(base)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


# -- the plan and its cost -----------------------------------------------------------------------

def _step_seconds(space: SpaceConfig, batch_size: int, rounds: int = 3) -> float:
    """Seconds of one supernet training step (forward + backward of a random path) on this
    machine, measured on random inputs of the real shape: no data is read."""
    import random

    import torch
    import torch.nn.functional as F

    from ..train import timed_calls
    from .supernet import Supernet

    torch.manual_seed(0)
    net = Supernet(space)
    rng = random.Random(0)
    x = torch.randn(batch_size, space.in_channels, space.image_size, space.image_size)
    y = torch.randint(0, space.num_classes, (batch_size,))
    def step() -> None:
        path = [rng.randrange(n) for n in net.num_ops]
        F.cross_entropy(net(x, path), y).backward()

    times = sorted(timed_calls(step, rounds))
    return times[len(times) // 2]


def chain_plan(cfg: ChainConfig, space: SpaceConfig | None = None, *, measure: bool = True,
               info: Any = None) -> dict[str, Any]:
    """What a run does and an estimate of its cost on this machine (seconds per step measured
    on random inputs, times the steps each stage takes): a list of (stage, description, seconds)."""
    info = info or dataset_info(cfg.dataset, missing_ok=True)
    space = space or resolve_space(cfg.space, cfg.dataset, cfg.norm, info=info)
    n_train = info.n_train or 50_000
    n_fit = n_train - max(1, round(n_train * cfg.supernet.val_fraction))
    if cfg.supernet.train_limit is not None:
        n_fit = min(n_fit, cfg.supernet.train_limit)
    step = _step_seconds(space, cfg.supernet.batch_size) if measure else float("nan")
    steps = max(1, n_fit // cfg.supernet.batch_size)
    rows = []
    if cfg.shrink:
        s = cfg.shrink
        epochs = s.first_epochs + s.stage_epochs * s.max_stages
        rows.append(("shrink", f"ABS: {s.first_epochs} epochs over the whole space, then stages of "
                               f"{s.stage_epochs} epoch(s) dropping {s.drop} operators each, to <= {s.target:,} paths "
                               f"(at most {s.max_stages} stages)", epochs * steps * step))
    if cfg.scorer == "bn":
        rows.append(("supernet", f"BN-only supernet (BN-NAS), {cfg.supernet.epochs} epochs at lr {cfg.supernet.lr}",
                     cfg.supernet.epochs * steps * step))
    elif not cfg.shrink:
        rows.append(("supernet", f"SPOS supernet, {cfg.supernet.epochs} epochs at lr {cfg.supernet.lr}",
                     cfg.supernet.epochs * steps * step))
    per_path = {"bn": 1e-5, "angle": 5e-4,
                # ReBN: forward passes over the calibration set and the validation split (~1/3 of a step each)
                "rebn": (256 + n_train * cfg.supernet.val_fraction) / cfg.supernet.batch_size * step / 3}[cfg.scorer]
    s = cfg.search
    rows.append(("search", f"evolution over paths scored by {cfg.scorer} ({s.budget} paths, population "
                           f"{s.population})" + (f", FLOPs <= {s.max_flops:.3g}" if s.max_flops else "")
                 + (f", params <= {s.max_params:.3g}" if s.max_params else ""), s.budget * per_path))
    r = cfg.retrain
    r_steps = max(1, n_fit // r.batch_size)
    rows.append(("retrain", f"the top {r.top} paths from scratch, {r.epochs} epochs each",
                 r.top * r.epochs * r_steps * step * r.batch_size / cfg.supernet.batch_size))
    paths = math.prod(len(a) for a in reduction_fixed(space)) if cfg.fix_reductions else space.num_paths()
    return {"space_paths": paths, "steps": rows, "seconds": sum(x[2] for x in rows),
            "step_seconds": step}


# -- the run ---------------------------------------------------------------------------------------

def run_chain(cfg: ChainConfig, *, out_dir: str | Path, store: Any = None, name: str = "nas-run",
              executor: Any = None, log: Callable[[str], None] | None = None,
              progress: bool | None = None, space: SpaceConfig | None = None) -> dict[str, Any]:
    """Run the chain; every step resumes from what is in ``out_dir`` and the store. Returns the
    shrink result (or None), the supernet checkpoint, the search result and the retrained rows.
    ``space``: the config's space already resolved (``resolve_space``), else resolved here."""
    from .search import abs_shrink, retrain, search_paths, top_paths

    say = log or (lambda m: None)
    space = space or resolve_space(cfg.space, cfg.dataset, cfg.norm)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    allowed = reduction_fixed(space) if cfg.fix_reductions else None
    shrink = None
    checkpoint: Path | None = None

    def epoch_line(what: str) -> Callable[[int, dict], None]:
        return lambda e, row: say(f"{what} epoch {e}: loss {row['loss']:.3f}, train acc "
                                  f"{100 * row['train_acc']:.1f}% ({row['seconds']:.1f} s)")

    if cfg.shrink:
        s = cfg.shrink
        abs_cfg = replace(cfg.supernet, mode="full", epochs=s.first_epochs)
        checkpoint = folder / f"{name}-abs-{_digest(space.to_dict(), abs_cfg.to_dict(), asdict(s))}.pt"
        say(f"ABS shrinking ({space.num_paths():,} paths) -> {checkpoint}")
        shrink = abs_shrink(space, abs_cfg, first_epochs=s.first_epochs, stage_epochs=s.stage_epochs, drop=s.drop,
                            target=s.target, children=s.children, max_stages=s.max_stages, checkpoint=checkpoint,
                            seed=cfg.seed, on_epoch=epoch_line("ABS"))
        allowed = shrink["allowed"]
        for st in shrink["stages"]:
            say(f"ABS stage {st['stage']} (after epoch {st['epoch']}): {st['size']:,} paths")
        (folder / f"{name}-shrunk.json").write_text(json.dumps(
            {"allowed": allowed, "stages": shrink["stages"]}, indent=1))
    if cfg.scorer == "bn" or not cfg.shrink:
        kind = "bn" if cfg.scorer == "bn" else "spos"
        checkpoint = folder / f"{name}-{kind}-{_digest(space.to_dict(), cfg.supernet.to_dict(), allowed)}.pt"
        say(f"{'BN-only' if kind == 'bn' else 'SPOS'} supernet, {cfg.supernet.epochs} epochs -> {checkpoint}")
        train_supernet(space, cfg.supernet, checkpoint=checkpoint, allowed=allowed, on_epoch=epoch_line("supernet"))
    assert checkpoint is not None
    check = supernet_check(checkpoint, cfg.supernet, allowed=allowed, seed=cfg.seed)
    say(f"supernet check: {check['paths']} random paths, validation accuracy {check['text']}")
    if not check["above_chance"]:
        say(f"WARNING: the supernet is within noise of chance, so its {cfg.scorer} scores carry no signal about "
            f"the paths: the search below ranks noise (train longer, or see docs/nas.md, 'BN-only supernet')")
    say(f"search: {cfg.search.budget} paths scored by {cfg.scorer}")
    s = cfg.search
    result = search_paths(checkpoint, scorer=cfg.scorer, budget=s.budget, population=s.population,
                          sample_size=s.sample_size, crossover=s.crossover, rate=s.rate, seed=cfg.seed,
                          allowed=allowed, max_flops=s.max_flops, max_params=s.max_params,
                          fixed_depth=s.fixed_depth, store=store, name=f"{name}/search", executor=executor,
                          progress=progress)
    say(f"retrain: the top {cfg.retrain.top} paths, {cfg.retrain.epochs} epochs each")
    rows = retrain(space, top_paths(result, cfg.retrain.top), cfg.standalone(), store=store,
                   name=f"{name}/retrain", executor=executor)
    out = {"space": space, "shrink": None if shrink is None else {k: shrink[k] for k in ("allowed", "stages", "size")},
           "checkpoint": str(checkpoint), "supernet_check": check, "search": result, "retrain": rows}
    report = {"name": name, "config": cfg.to_dict(), "checkpoint": str(checkpoint), "supernet_check": check,
              "retrain": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for r in rows]}
    (folder / f"{name}-report.json").write_text(json.dumps(report, indent=1, default=float))
    return out


def reduction_fixed(space: SpaceConfig) -> list[list[int]]:
    """Per layer the allowed ops: only the first where the layer changes shape, all elsewhere."""
    return [[0] if (layer["cin"] != layer["cout"] or layer["stride"] != 1) else list(range(len(layer["ops"])))
            for layer in space.layers()]


def supernet_check(checkpoint: str | Path, cfg: TrainConfig, *, allowed: Any = None, seed: int = 0,
                   paths: int = 8) -> dict[str, Any]:
    """:func:`normlab.nas.train.supernet_accuracy` of a trained checkpoint on its validation split:
    is the supernet above chance (exact binomial test, alpha 0.01)?"""
    from .train import load_split, load_supernet, read_checkpoint, supernet_accuracy

    net = load_supernet(read_checkpoint(checkpoint))
    split = load_split(cfg.dataset, cfg.seed, cfg.val_fraction, cfg.train_limit, cfg.val_limit)
    return supernet_accuracy(net, split.val_x, split.val_y, paths=paths, seed=seed, batch_size=cfg.batch_size,
                             allowed=allowed)


def fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    if s < 90:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"
