"""Names for layers: the registry, the spec parser ("bgn:groups=8"), create_norm and norm_act."""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from .bgn import BatchGroupNorm, SyncBatchGroupNorm
from .bn import BatchNorm
from .renorm import BatchRenorm
from .evonorm import EvoNormB0, EvoNormS0
from .evolved import EvolvedNorm
from .frn import FilterResponseNorm
from .mabn import MovingAverageBatchNorm
from .sample import GroupNorm, InstanceNorm, LayerNorm, PositionalNorm

__all__ = [
    "NormInfo", "NORMS", "NormSpec", "NormSpecError", "parse_spec", "create_norm", "norm_act",
    "available_norms", "create_act", "replaces_activation", "canonical_spec",
]


class NormSpecError(ValueError):
    """A norm spec that names an unknown layer or carries a bad parameter."""


@dataclass(frozen=True)
class NormInfo:
    cls: type[nn.Module]
    batch_dependent: bool
    replaces_act: bool
    foldable: str          # "yes", "no", or the condition under which it folds into a conv
    paper: str             # short citation; the class docstring names the paper in full


NORMS: dict[str, NormInfo] = {
    "bn": NormInfo(BatchNorm, True, False, "yes", "Ioffe & Szegedy 2015"),
    "bgn": NormInfo(BatchGroupNorm, True, False, "if G divides C",
                    "Zhou et al. 2020"),
    "sync_bgn": NormInfo(SyncBatchGroupNorm, True, False, "if G divides C",
                         "Zhou et al. 2020"),
    "brn": NormInfo(BatchRenorm, True, False, "yes", "Ioffe 2017"),
    "mabn": NormInfo(MovingAverageBatchNorm, True, False, "yes",
                     "Yan et al. 2020"),
    "gn": NormInfo(GroupNorm, False, False, "no", "Wu & He 2018"),
    "ln": NormInfo(LayerNorm, False, False, "no", "Ba et al. 2016"),
    "in": NormInfo(InstanceNorm, False, False, "no", "Ulyanov et al. 2016"),
    "pn": NormInfo(PositionalNorm, False, False, "no", "Li et al. 2019"),
    "evonorm_b0": NormInfo(EvoNormB0, True, True, "no",
                           "Liu et al. 2020"),
    "evonorm_s0": NormInfo(EvoNormS0, False, True, "no",
                           "Liu et al. 2020"),
    "frn": NormInfo(FilterResponseNorm, False, True, "no",
                    "Singh & Krishnan 2020"),
    # a layer found by `normlab evolve` (genome=CODE or file=PATH); batch-dependent when its
    # genome has a batch aggregate, which only the built layer knows (layer.batch_dependent)
    "evolved": NormInfo(EvolvedNorm, True, True, "no", "Liu et al. 2020 (search)"),
}


def available_norms() -> list[str]:
    """The spec names that create_norm knows."""
    return list(NORMS)


def _known() -> str:
    return ", ".join(NORMS)


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    for skip in ("self", "num_channels", "process_group"):
        params.pop(skip, None)
    return params


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low == "none":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _normalise(value: Any, hint: Any) -> Any:
    """An int given for a float parameter is that float (eps=1 is eps=1.0)."""
    allowed = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) or \
        typing.get_origin(hint) is typing.Union else {hint}
    if float in allowed and int not in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    return value == default


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


def canonical_spec(spec: "str | NormSpec") -> str:
    """The canonical string of a spec: ``canonical_spec("GN:eps=1e-5,groups=4") == "gn:groups=4"``."""
    return str(NormSpec.parse(spec))


def _check_type(name: str, key: str, value: Any, hint: Any) -> None:
    """Check a parsed value against the parameter's annotation (int, float, bool, optional)."""
    allowed = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) or \
        typing.get_origin(hint) is typing.Union else {hint}
    if isinstance(value, str) and str in allowed and value.lower() == "auto":
        return                                   # groups=auto (BatchGroupNorm)
    if value is None:
        if type(None) not in allowed:
            raise NormSpecError(f"norm '{name}': parameter {key} cannot be none")
        return
    if bool in allowed:
        ok, label = isinstance(value, bool), "true or false"
    elif int in allowed:
        ok, label = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif float in allowed:
        ok, label = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        return
    if not ok:
        label += " or auto" if str in allowed else ""
        raise NormSpecError(f"norm '{name}': parameter {key}={value!r} should be {label}")


@dataclass(frozen=True)
class NormSpec:
    """A parsed spec: ``NormSpec.parse("bgn:groups=8")`` -> name 'bgn', params {'groups': 8}."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: "str | NormSpec") -> "NormSpec":
        if isinstance(spec, NormSpec):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise NormSpecError(f"norm spec {spec!r} is empty; known norms: {_known()}")
        name, _, rest = spec.strip().partition(":")
        name = name.strip().lower()
        if name not in NORMS:
            raise NormSpecError(f"unknown norm '{name}' in spec {spec!r}; known norms: {_known()}")
        valid = _parameters(NORMS[name].cls)
        hints = typing.get_type_hints(NORMS[name].cls.__init__)
        params: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, raw = item.partition("=")
            key = key.strip()
            if not eq or not key or not raw.strip():
                raise NormSpecError(f"bad parameter {item!r} in norm spec {spec!r}: expected "
                                    f"key=value, e.g. '{name}:{next(iter(valid), 'eps')}=...'")
            if key not in valid:
                raise NormSpecError(f"norm '{name}' has no parameter '{key}'; valid parameters: "
                                    + (", ".join(valid) or "none"))
            value = _parse_value(raw.strip())
            if isinstance(value, str):
                value = value.lower()                # words are case-insensitive: groups=AUTO
            _check_type(name, key, value, hints.get(key))
            params[key] = _normalise(value, hints.get(key))
        # Canonical: a parameter equal to its default is dropped, so 'gn:groups=4,eps=1e-5',
        # 'gn:eps=1e-5,groups=4' and 'gn:groups=4' are one spec (and one trial in a study).
        params = {k: v for k, v in sorted(params.items())
                  if not (valid[k].default is not inspect.Parameter.empty and _same(v, valid[k].default))}
        return cls(name, params)

    @property
    def info(self) -> NormInfo:
        return NORMS[self.name]

    def __str__(self) -> str:
        """The canonical spec: lowercase name, defaults dropped, parameters sorted."""
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format(v)}" for k, v in sorted(self.params.items()))


def parse_spec(spec: "str | NormSpec") -> NormSpec:
    """Parse and validate a spec string; raises NormSpecError with the valid choices."""
    return NormSpec.parse(spec)


def create_norm(spec: "str | NormSpec", num_channels: int, **overrides: Any) -> nn.Module:
    """Build the layer a spec names, e.g. ``create_norm("bgn:groups=8", 64)``."""
    parsed = NormSpec.parse(spec)
    params = {**parsed.params, **overrides}
    try:
        return parsed.info.cls(num_channels, **params)
    except (ValueError, TypeError) as exc:
        raise NormSpecError(f"norm '{parsed}' with {num_channels} channels: {exc}") from None


_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "mish": lambda: nn.Mish(inplace=True),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def create_act(act: "str | nn.Module | Callable[[], nn.Module] | None") -> nn.Module:
    """An activation module from a name ('relu', 'silu', ...), a module, a class, or None."""
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    if isinstance(act, str):
        key = act.lower()
        if key == "none":
            return nn.Identity()
        if key not in _ACTS:
            raise NormSpecError(f"unknown activation '{act}'; known: {', '.join(_ACTS)}, none")
        return _ACTS[key]()
    if callable(act):
        return act()
    raise NormSpecError(f"activation {act!r} is not a name, module or module class")


def replaces_activation(layer: nn.Module) -> bool:
    """Whether a layer is a normalization-activation layer (EvoNorm, FRN+TLU)."""
    return bool(getattr(layer, "replaces_activation", False))


def norm_act(spec: "str | NormSpec", num_channels: int,
             act: "str | nn.Module | Callable[[], nn.Module] | None" = "relu",
             **overrides: Any) -> nn.Module:
    """The norm followed by ``act``, or the single layer when the norm replaces the activation.

    With ``act=None`` a normalization-activation layer (EvoNorm, FRN) comes in its linear variant
    (EvoNorm's nonlinearity=False, FRN without TLU), for slots with no activation after them.
    """
    activation = create_act(act)
    no_act = isinstance(activation, nn.Identity)
    parsed = NormSpec.parse(spec)
    if no_act and parsed.info.replaces_act:
        # the layer's own linear variant: EvoNorm without its nonlinearity, FRN without its TLU
        flag = "tlu" if parsed.name == "frn" else "apply_act"
        overrides = {flag: False, **overrides}
    norm = create_norm(parsed, num_channels, **overrides)
    if replaces_activation(norm) or no_act:
        return norm
    return nn.Sequential(norm, activation)
