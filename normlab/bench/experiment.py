"""The experiment description: validated up front, so a bad value fails before any training."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._settings import Settings

__all__ = ["Experiment", "ExperimentError", "Tune", "TUNED", "load_experiment", "preset_path", "available_presets",
           "plan", "check_plan", "safe_name", "AXES"]

_NUMERIC = {"epochs", "steps", "lr", "lrs", "batch_sizes", "seeds", "base_batch_size",
            "momentum", "weight_decay", "warmup_epochs", "width", "fixed_batch_size",
            "fixed_norm_batch_size", "data_seed", "threads"}
PRESETS = Path(__file__).resolve().parent.parent / "configs"
AXES = ("models", "norms", "batch_sizes", "seeds", "lrs")     # what a trial varies along
_NOT_RESULTS = ("name", "data_root", "download")              # never change a trial's result


def expand_spec(spec: str) -> list[str]:
    """A sweep written in one spec: ``bgn:groups=[1,4,16,64]`` -> four specs (several bracketed
    parameters give their product)."""
    import itertools

    name, sep, rest = spec.partition(":")
    if "[" not in rest:
        return [spec]
    parts = re.findall(r"([^,=\[\]]+)=(\[[^\]]*\]|[^,]*)", rest)
    if not parts:
        raise ValueError(f"norm spec {spec!r}: cannot read the sweep; expected e.g. bgn:groups=[1,4,16]")
    choices = []
    for key, value in parts:
        key = key.strip()
        if value.startswith("["):
            items = [x.strip() for x in value[1:-1].split(",") if x.strip()]
            if not items:
                raise ValueError(f"norm spec {spec!r}: {key}=[] is empty; expected values, e.g. [1,4,16]")
            choices.append([f"{key}={x}" for x in items])
        else:
            choices.append([f"{key}={value.strip()}"])
    return [f"{name}:{','.join(combo)}" for combo in itertools.product(*choices)]


def _is_tuned(spec: str) -> bool:
    name, _, rest = spec.replace(" ", "").partition(":")
    return name.lower() == "bgn" and rest.lower() == "groups=tuned"


def safe_name(name: str) -> str:
    """A name that is safe as a folder name: letters, digits, '.', '_' and '-' (anything else,
    '/' and '..' included, becomes '_'). For names read back from a store someone else wrote."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).lstrip(".") or "experiment"
    return cleaned[:100]


TUNED = "bgn:groups=tuned"          # BGN with its group count chosen on a validation split


class Tune(BaseModel):
    """``bgn:groups=tuned``: at each model x batch size, BGN is trained once per G in ``grid`` (and
    seed) on the training data less a held-out ``val_fraction`` (stratified, split by
    ``data_seed``); the G with the best mean validation accuracy over the seeds is chosen, and the
    report shows the test accuracy of the chosen G's runs only, so the test set never picks the
    winner. Every run is a stored trial. A grid entry is a group count G (one G for every layer) or
    the auto rule itself, ``"auto"`` or with its settings (``"auto,ref_batch=8"``: per layer,
    G ~ batch * C / ref_batch), so a rule is judged on the same validation split as a fixed G."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: list[int | str] = Field(default_factory=lambda: [1, 4, 16])
    val_fraction: float = 0.1

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: list[int | str]) -> list[int | str]:
        from ..layers import parse_spec

        counts = [g for g in v if not isinstance(g, str)]
        rules = []
        for g in v:
            if not isinstance(g, str):
                continue
            try:
                spec = parse_spec(f"bgn:groups={g.replace(' ', '')}")
            except ValueError:
                spec = None
            if spec is None or str(spec.params.get("groups", "")).lower() != "auto":
                raise ValueError(f"tune.grid entry {g!r} is invalid: expected a group count or a rule "
                                 f"'auto' (optionally with its settings, e.g. 'auto,ref_batch=8')")
            rules.append(str(spec).partition("groups=")[2])
        if (not v or any(isinstance(g, bool) or g < 1 for g in counts) or len(set(counts)) != len(counts)
                or len(set(rules)) != len(rules)):
            raise ValueError(f"tune.grid={v} is invalid: expected distinct positive group counts, e.g. [1, 4, 16] "
                             f"(and, to put the auto rule on the same validation, 'auto' entries)")
        return sorted(counts) + rules

    def specs(self) -> list[str]:
        """The norm specs the grid trains: ``bgn:groups=G`` per count, then the auto rules."""
        return [f"bgn:groups={g}" for g in self.grid]

    @field_validator("val_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0 < v < 1:
            raise ValueError(f"tune.val_fraction={v} is invalid: expected a number in (0, 1), e.g. 0.1")
        return v


class ExperimentError(ValueError):
    """An experiment description that cannot run: one line saying what and what is valid."""


class Experiment(Settings, BaseModel):
    """Models x norms x batch sizes x seeds (x learning rates), on one dataset, with one budget.

    ``batch_mode`` says what the batch-size axis varies:
      - ``both``: the optimizer batch and the batch normalization sees (the BGN paper's study);
      - ``norm``: only the normalization batch (micro-batches), the optimizer batch stays
        ``fixed_batch_size`` (the MABN paper's protocol);
      - ``optimizer``: only the optimizer batch; normalization sees ``fixed_norm_batch_size``.
    Learning rates are for ``base_batch_size`` and scaled linearly to each optimizer batch.
    Loaded through :class:`normlab._settings.Settings` (``from_dict``, ``preset``, ``to_dict``);
    pydantic checks the keys (``extra="forbid"``), the base puts its message in one line.
    """

    settings_error: ClassVar[type[Exception]] = ExperimentError
    settings_label: ClassVar[str] = "experiment"
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "experiment"
    dataset: str = "mnist5k"
    models: list[str] = Field(default_factory=lambda: ["resnet20"])
    norms: list[str] = Field(default_factory=lambda: ["bn", "gn:groups=8", "bgn:groups=8"])
    batch_sizes: list[int] = Field(default_factory=lambda: [2, 8, 32])
    seeds: list[int] = Field(default_factory=lambda: [0])
    batch_mode: Literal["both", "norm", "optimizer"] = "both"
    fixed_batch_size: int = 32
    fixed_norm_batch_size: int = 2
    epochs: float | None = 1.0
    steps: int | None = None
    lr: float = 0.1
    lrs: list[float] | None = None            # optional learning-rate axis (overrides lr)
    base_batch_size: int | None = 32
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    width: float = 1.0
    act: str = "relu"
    augment: bool = True
    eval_mode: Literal["running", "batch"] = "running"
    data_seed: int = 0
    threads: int | None = None                # torch threads per trial: pins the result (see run_trial)
    tune: Tune = Field(default_factory=Tune)  # how bgn:groups=tuned chooses G (used only when named)
    data_root: str | None = None
    download: bool = False

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        """Numbers are numbers: no booleans, no NaN or infinity, anywhere."""
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, bool) and key in _NUMERIC:
                    raise ValueError(f"{key}={value!r} is invalid: expected a number, not a boolean")
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"{key}={value!r} is invalid: expected a finite number")
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        from ..runtime import check_name

        return check_name(v)

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        from ..models import available_models, is_model

        if not v:
            raise ValueError("models is empty: expected at least one")
        bad = [m for m in v if not is_model(m)]
        if bad and bad[0].endswith(".json"):
            from ..models import ModelError, model_config

            try:
                model_config(bad[0])
            except ModelError as exc:
                raise ValueError(str(exc)) from None
        if bad:
            raise ValueError(f"unknown model '{bad[0]}'; known models: {', '.join(available_models())}")
        return v

    @field_validator("norms")
    @classmethod
    def _norms(cls, v: list[str]) -> list[str]:
        from ..layers import parse_spec

        if not v:
            raise ValueError("norms is empty: expected at least one norm spec")
        specs = [TUNED if _is_tuned(s) else str(parse_spec(s)) for spec in v for s in expand_spec(spec)]
        repeated = sorted({s for s in specs if specs.count(s) > 1})
        if repeated:
            raise ValueError(f"norms={v} names {repeated[0]} more than once (specs are compared "
                             f"after filling in defaults)")
        return specs

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        from ..data import DATASETS, available_datasets

        name = v.partition(":")[0].lower()
        if name != "imagefolder" and name not in DATASETS:
            raise ValueError(f"unknown dataset '{name}'; known datasets: {', '.join(available_datasets())}")
        return v

    @field_validator("batch_sizes", "seeds")
    @classmethod
    def _ints(cls, v: list[int], info) -> list[int]:
        if not v:
            raise ValueError(f"{info.field_name} is empty: expected at least one value")
        if info.field_name == "batch_sizes" and any(b < 1 for b in v):
            raise ValueError(f"batch_sizes={v} is invalid: expected positive integers")
        if len(set(v)) != len(v):
            raise ValueError(f"{info.field_name}={v} has repeated values")
        return sorted(v) if info.field_name == "batch_sizes" else v

    @model_validator(mode="after")
    def _budget(self) -> "Experiment":
        if self.steps is None and (self.epochs is None or self.epochs <= 0):
            raise ValueError("set a training budget: epochs > 0 or steps > 0")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps={self.steps} is invalid: expected a positive integer")
        if self.batch_mode == "norm" and max(self.batch_sizes) > self.fixed_batch_size:
            raise ValueError(f"batch_mode=norm: batch sizes up to {max(self.batch_sizes)} exceed "
                             f"fixed_batch_size={self.fixed_batch_size}")
        if self.batch_mode == "optimizer" and self.fixed_norm_batch_size > min(self.batch_sizes):
            raise ValueError(f"batch_mode=optimizer: fixed_norm_batch_size={self.fixed_norm_batch_size} "
                             f"exceeds the smallest batch size {min(self.batch_sizes)}")
        if self.epochs is not None and self.steps is None and self.epochs <= 0:
            raise ValueError(f"epochs={self.epochs} is invalid: expected > 0")
        for lr in self.lrs or [self.lr]:
            if lr <= 0:
                raise ValueError(f"learning rate {lr} is invalid: expected > 0")
        if self.lrs is not None:
            if not self.lrs:
                raise ValueError("lrs is empty: expected at least one learning rate (or leave it out)")
            if len(set(self.lrs)) != len(self.lrs):
                raise ValueError(f"lrs={self.lrs} has repeated values")
        for key in ("momentum", "weight_decay", "warmup_epochs"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}={getattr(self, key)} is invalid: expected >= 0")
        for key in ("fixed_batch_size", "fixed_norm_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} is invalid: expected a positive integer")
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ValueError(f"threads={self.threads} is invalid: expected a positive integer (torch threads "
                             f"per trial), or leave it out for the executor's share of the cores")
        if not 0 < self.width <= 16:
            raise ValueError(f"width={self.width} is invalid: expected a number in (0, 16]")
        import torch

        from ..models import create_model

        for model in self.models:          # every norm must fit every model's channel counts
            for norm in self.trained_norms():
                try:
                    with torch.device("meta"):         # shapes only: nothing is allocated
                        create_model(model, norm=norm, act=self.act, width=self.width)
                except ValueError as exc:
                    raise ValueError(f"{model} with norm '{norm}': {exc}") from None
        return self

    def trained_norms(self) -> list[str]:
        """The norm specs that are trained: ``bgn:groups=tuned`` stands for its G grid."""
        out: list[str] = []
        for n in self.norms:
            for spec in (self.tune.specs() if n == TUNED else [n]):
                if spec not in out:
                    out.append(spec)
        return out

    def identity(self) -> dict[str, Any]:
        """What identifies the experiment in the store: every setting that can change a result,
        without the axes (adding a seed or a norm keeps the finished trials) and the name."""
        data = self.model_dump()
        for key in (*AXES, *_NOT_RESULTS, "lr"):
            data.pop(key, None)
        if data.get("threads") is None:       # unpinned: the identity of experiments from before
            data.pop("threads", None)
        if TUNED not in self.norms:           # tuning settings matter only when something is tuned
            data.pop("tune", None)
        return data

    def batch_independent(self) -> set[tuple[str, str]]:
        """(model, norm) pairs with no batch-dependent layer: in ``norm`` mode they train
        identically at every normalization batch (same optimizer batches, same computation)."""
        import torch

        from ..layers.ghost import batch_dependent_layers
        from ..models import create_model

        out = set()
        for model in self.models:
            for norm in self.trained_norms():
                with torch.device("meta"):
                    net = create_model(model, norm=norm, act=self.act, width=self.width)
                if not batch_dependent_layers(net):
                    out.add((model, norm))
        return out

    def same_run(self) -> Any:
        """The key under which trials are one computation (``Driver.run(same=...)``): in ``norm``
        mode a batch-independent norm's trials differ only in the normalization batch label, so
        each seed trains once and its result is stored at every batch size; None otherwise."""
        if self.batch_mode != "norm":
            return None
        independent = self.batch_independent()
        if not independent:
            return None

        def key(d: dict[str, Any]) -> dict[str, Any]:
            if (d["model"], d["norm"]) not in independent:
                return d
            return {**{k: v for k, v in d.items() if k != "batch_size"},
                    "train": {**d["train"], "norm_batch_size": None}}
        return key

    def norm_batches(self) -> list[int]:
        """The batch sizes normalization sees across the plan."""
        return sorted({(self.train_config(b, 0, self.lr)["norm_batch_size"] or
                        self.train_config(b, 0, self.lr)["batch_size"]) for b in self.batch_sizes})

    def optimizer_batches(self) -> list[int]:
        return sorted({self.train_config(b, 0, self.lr)["batch_size"] for b in self.batch_sizes})

    def train_config(self, batch_size: int, seed: int, lr: float) -> dict[str, Any]:
        """The TrainConfig fields of one trial."""
        if self.batch_mode == "both":
            opt_batch, norm_batch = batch_size, None
        elif self.batch_mode == "norm":
            opt_batch, norm_batch = self.fixed_batch_size, batch_size
        else:
            opt_batch, norm_batch = batch_size, self.fixed_norm_batch_size
        return {"epochs": self.epochs or 1.0, "steps": self.steps, "batch_size": opt_batch,
                "norm_batch_size": norm_batch if norm_batch != opt_batch else None,
                "optimizer": self.optimizer, "lr": lr, "base_batch_size": self.base_batch_size,
                "momentum": self.momentum, "weight_decay": self.weight_decay,
                "schedule": self.schedule, "warmup_epochs": self.warmup_epochs,
                "augment": self.augment, "seed": seed, "eval_mode": self.eval_mode,
                "eval_every": 0, "progress": False}

    @classmethod
    def preset_names(cls) -> list[str]:
        return available_presets()

    @classmethod
    def preset_settings(cls, name: str) -> dict[str, Any]:
        """A bench preset's settings (its file under normlab/configs; the name defaults to the
        file's), or one line naming the presets (or the command the file belongs to)."""
        path = preset_path(name)
        data = cls.read_yaml(path, "experiment file")
        data.setdefault("name", path.stem)
        return data


def load_experiment(path: str | Path | None = None, preset: str | None = None,
                    **overrides: Any) -> Experiment:
    """An experiment from a YAML file or a preset (not both), with CLI overrides; ExperimentError
    if invalid."""
    if path is not None and preset is not None:
        raise ExperimentError(f"--preset {preset} and the config file {path} were both given: use one")
    data: dict[str, Any] = {}
    if path:
        data = Experiment.read_yaml(path, "experiment file")
        data.setdefault("name", Path(path).stem)
    elif preset:
        data = Experiment.preset_settings(preset)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return Experiment.from_dict(data)


def _is_bench_preset(path: Path) -> bool:
    """normlab/configs holds every command's presets: the bench's are the experiments (every
    setting an Experiment field), whatever their file name (evolve-vs-fixed is one)."""
    from .._yaml import read_yaml_mapping

    try:
        data = read_yaml_mapping(path, "preset")
    except ValueError:
        return False
    return bool(data) and set(data) <= set(Experiment.model_fields)


def _owner(name: str) -> str:
    """The command a preset of another command belongs to (by its file name's prefix)."""
    command, _, short = name.partition("-")
    if name.startswith("nas-nb201"):
        return f"'normlab nas nb201 study --preset {name}'"
    if command in ("evolve", "nas") and short:
        return f"'normlab {command} run --preset {short}'"
    if command == "nago":
        return f"'normlab nago run normlab/configs/{name}.yaml'"
    return "another command"


def available_presets() -> list[str]:
    """The bench's presets (not the other commands' files in the same folder)."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml") if _is_bench_preset(p))


def preset_path(name: str) -> Path:
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        raise ExperimentError(f"unknown preset '{name}'; presets: {', '.join(available_presets())}")
    if not _is_bench_preset(path):
        raise ExperimentError(f"preset '{name}' is not a bench preset: it belongs to {_owner(name)}; bench "
                              f"presets: {', '.join(available_presets())}")
    return path


def plan(exp: Experiment) -> list[dict[str, Any]]:
    """The trials: the product of the axes, each a pure description. Its identity in the store
    is hash(experiment identity, description) (``normlab.runtime.trial_id``)."""
    trials = []
    for model in exp.models:
        for name in exp.norms:
            tuned = name == TUNED            # one validation trial per G of the grid
            for norm in (exp.tune.specs() if tuned else [name]):
                for batch_size in exp.batch_sizes:
                    for lr in exp.lrs or [exp.lr]:
                        for seed in exp.seeds:
                            trials.append({"model": model, "norm": norm, "dataset": exp.dataset,
                                           "batch_size": batch_size, "batch_mode": exp.batch_mode,
                                           "seed": seed, "lr": lr, "width": exp.width, "act": exp.act,
                                           "data_seed": exp.data_seed,
                                           "train": exp.train_config(batch_size, seed, lr)})
                            if exp.threads is not None:     # part of what was computed: see run_trial
                                trials[-1]["threads"] = exp.threads
                            if tuned:
                                trials[-1]["tune"] = {"norm": TUNED, "val_fraction": exp.tune.val_fraction}
    return trials


def check_plan(exp: Experiment):
    """Everything that can be known before training, checked against the real data: the dataset
    is there (or will be downloaded), every batch fits in the training set, and every norm works
    at every model's real feature shapes and the smallest normalization batch (shape propagation
    on the meta device: nothing is allocated). Returns the dataset's facts; ExperimentError else."""
    import torch

    from ..data import check_dataset
    from ..models import create_model

    try:
        info = check_dataset(exp.dataset, root=exp.data_root, download=exp.download)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None
    if info.n_train is not None:
        biggest = max(exp.optimizer_batches())
        if biggest > info.n_train:
            raise ExperimentError(f"batch size {biggest} is larger than the training set of "
                                  f"{exp.dataset} ({info.n_train} images)")
    n = max(2, min(exp.norm_batches()))
    shape = (n, info.in_channels, *info.image_size)
    for model in exp.models:
        for norm in exp.trained_norms():
            try:
                with torch.device("meta"):
                    net = create_model(model, norm=norm, act=exp.act, width=exp.width,
                                       in_channels=info.in_channels, num_classes=info.num_classes)
                    net.train()
                    net(torch.empty(shape))
            except ValueError as exc:
                raise ExperimentError(f"{model} with norm '{norm}' on {exp.dataset} "
                                      f"(normalization batch {n}): {exc}") from None
            except (RuntimeError, NotImplementedError) as exc:
                if "meta" not in str(exc):            # a layer that reads values (e.g. brn's
                    raise                             # .item()) cannot run on meta: skip it
    return info
