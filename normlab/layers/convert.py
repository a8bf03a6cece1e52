"""Model surgery: swap every normalization layer for another (convert_norms), fold eval-mode
norms into the convolution before them (fuse_norms), compile the norms alone (compile_norms).

Works on torchvision and timm models. timm is never imported here: its norm-act layers are
recognised when timm is already loaded (a model built with timm means it is).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Iterator

import torch
import torch.fx
from torch import Tensor, nn

from ._batch_kernels import _running_affine
from .bgn import BatchGroupNorm
from .renorm import BatchRenorm
from .evonorm import EvoNormB0, EvoNormS0
from .frn import FilterResponseNorm
from .genome_module import EvolvedLayer
from .mabn import CenteredConv2d, MovingAverageBatchNorm
from .registry import NormSpec, create_act, create_norm, replaces_activation
from .sample import GroupNorm, InstanceNorm, LayerNorm, PositionalNorm

__all__ = ["convert_norms", "fuse_norms", "compile_norms", "is_norm", "norm_channels", "center_convs", "traced_pairs",
           "norm_summary"]

_OWN = (BatchGroupNorm, BatchRenorm, MovingAverageBatchNorm, GroupNorm, LayerNorm, InstanceNorm,
        PositionalNorm, EvoNormB0, EvoNormS0, FilterResponseNorm, EvolvedLayer)
_TORCH = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, CenteredConv2d)


def _timm_norm_types() -> tuple[type, ...]:
    """timm's channels-first norm classes, if timm is loaded (never imports it)."""
    if "timm" not in sys.modules:
        return ()
    found: list[type] = []
    for mod_name in ("timm.layers.norm_act", "timm.layers.norm", "timm.layers.evo_norm",
                     "timm.layers.filter_response_norm"):
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        for attr in ("BatchNormAct2d", "SyncBatchNormAct", "FrozenBatchNormAct2d", "GroupNormAct",
                     "GroupNorm1Act", "LayerNormAct2d", "LayerNorm2d", "GroupNorm", "GroupNorm1",
                     "FrozenBatchNorm2d", "EvoNorm2dB0", "EvoNorm2dB1", "EvoNorm2dB2",
                     "EvoNorm2dS0", "EvoNorm2dS0a", "EvoNorm2dS1", "EvoNorm2dS1a", "EvoNorm2dS2",
                     "EvoNorm2dS2a", "FilterResponseNormTlu2d", "FilterResponseNormAct2d"):
            cls = getattr(mod, attr, None)
            if isinstance(cls, type):
                found.append(cls)
    tv = sys.modules.get("torchvision.ops.misc")
    if tv is not None and hasattr(tv, "FrozenBatchNorm2d"):
        found.append(tv.FrozenBatchNorm2d)
    return tuple(found)


def is_norm(module: nn.Module) -> bool:
    """A channels-first normalization layer that convert_norms knows how to replace."""
    return isinstance(module, _OWN + _TORCH + _timm_norm_types())


def norm_channels(module: nn.Module) -> int:
    for attr in ("num_channels", "num_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    shape = getattr(module, "normalized_shape", None)
    if shape:
        return int(shape[0])
    weight = getattr(module, "weight", None)
    if isinstance(weight, Tensor):
        return int(weight.shape[0])
    raise ValueError(f"cannot tell the channel count of {type(module).__name__}")


def _source_replaces_act(module: nn.Module) -> bool:
    if replaces_activation(module):
        return True
    name = type(module).__name__
    if name.startswith("EvoNorm") or name == "FilterResponseNormTlu2d":
        return bool(getattr(module, "apply_act", True))
    return False


def _bundled_act(module: nn.Module) -> nn.Module | None:
    """The activation a timm norm-act layer applies after normalizing (with its dropout)."""
    act = getattr(module, "act", None)
    if not isinstance(act, nn.Module):
        return None
    drop = getattr(module, "drop", None)
    if isinstance(drop, nn.Module) and not isinstance(drop, nn.Identity):
        return nn.Sequential(drop, act)
    return act


_MEAN_VAR = (nn.modules.batchnorm._BatchNorm, BatchRenorm, BatchGroupNorm)


def _copy_state(src: nn.Module, dst: nn.Module, channels: int) -> None:
    with torch.no_grad():
        for name in ("weight", "bias"):
            s, d = getattr(src, name, None), getattr(dst, name, None)
            if isinstance(s, Tensor) and isinstance(d, Tensor) and s.shape == d.shape == (channels,):
                d.copy_(s)
        if isinstance(src, _MEAN_VAR) and isinstance(dst, _MEAN_VAR):
            for name in ("running_mean", "running_var"):
                s, d = getattr(src, name, None), getattr(dst, name, None)
                if isinstance(s, Tensor) and isinstance(d, Tensor) and s.shape == d.shape:
                    d.copy_(s)


def _like(new: nn.Module, old: nn.Module) -> nn.Module:
    ref = next(iter(old.parameters()), None)
    if ref is None:
        ref = next((b for b in old.buffers() if b.is_floating_point()), None)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
    new.train(old.training)
    return new


def _replacement(old: nn.Module, spec: NormSpec, fallback_act: str) -> nn.Module:
    channels = norm_channels(old)
    new = _like(create_norm(spec, channels), old)
    _copy_state(old, new, channels)
    if replaces_activation(new):
        return new           # the norm-act layer stands in for old's activation too
    act = _bundled_act(old)
    if act is None and _source_replaces_act(old):
        act = create_act(fallback_act)
    return new if act is None else nn.Sequential(new, act)


def _children(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    yield from list(module.named_children())


def convert_norms(model: nn.Module, spec: "str | NormSpec", *, center_convs: bool = True,
                  fallback_act: str = "relu") -> nn.Module:
    """Replace every normalization layer of ``model`` by the layer ``spec`` names, in place.

    - timm norm-act layers (BatchNormAct2d, GroupNormAct, ...) keep their activation after the new
      norm, unless the new norm replaces the activation (EvoNorm, FRN+TLU): then it stands alone,
      so no second activation is added.
    - A source layer that was itself a norm-activation (EvoNorm, FRN) gets ``fallback_act`` after
      a plain new norm, so the network keeps a nonlinearity.
    - Per-channel affine parameters are copied when both layers have them; running mean and
      variance are copied between BatchNorm-like layers of the same statistics shape.
    - For ``mabn``, every ``nn.Conv2d`` becomes a :class:`CenteredConv2d` as the paper prescribes
      (``center_convs=False`` opts out).

    Returns the model (or the new layer, if ``model`` itself is a norm).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert_norms expects an nn.Module, got {type(model).__name__}")
    parsed = NormSpec.parse(spec)
    if is_norm(model):
        return _replacement(model, parsed, fallback_act)
    if not any(is_norm(m) for m in model.modules()):
        # nothing to convert: leave the model exactly as it is (no centred convs either)
        warnings.warn(f"convert_norms found no normalization layer in {type(model).__name__}; "
                      f"nothing was converted", stacklevel=2)
        return model
    center = center_convs and parsed.name == "mabn"
    _check_flat_inputs(model, parsed)
    _convert(model, parsed, center, fallback_act)
    return model


def _flat_norms(model: nn.Module) -> list[str]:
    """Paths of the BatchNorm1d layers that normalize (N, C) features: fed by a Linear or a
    flatten, read off the torch.fx graph (or, if the model does not trace, a Sequential's order)."""
    flat = (nn.Linear, nn.Flatten)
    try:
        graph = _Tracer().trace(model)
    except Exception:                                    # noqa: BLE001  (untraceable: fall back)
        found = []
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Sequential):
                items = list(mod.named_children())
                for (_, m1), (b, m2) in zip(items, items[1:]):
                    if isinstance(m1, flat) and isinstance(m2, nn.BatchNorm1d):
                        found.append(f"{name}.{b}" if name else b)
        return found
    modules = dict(model.named_modules())
    found = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm1d):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node):
            continue
        if (src.op == "call_module" and isinstance(modules[src.target], flat)) \
                or (src.op == "call_function" and src.target is torch.flatten) \
                or (src.op == "call_method" and src.target == "flatten"):
            found.append(node.target)
    return found


def _check_flat_inputs(model: nn.Module, spec: NormSpec) -> None:
    """Refuse, naming the layer, to swap a BatchNorm1d over (N, C) features for a norm that cannot
    normalize (N, C) input (``in`` needs spatial positions): it would fail only at the first
    forward. Each such replacement is tried once on a (2, C) input, on a copy."""
    if not any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        return
    for path in _flat_norms(model):
        old = model.get_submodule(path)
        channels = norm_channels(old)
        try:
            trial = create_norm(spec, channels).train()
            with torch.no_grad():
                trial(torch.zeros(2, channels))
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"convert_norms: layer '{path}' ({type(old).__name__}({channels})) normalizes (N, C) "
                             f"features, which '{spec}' cannot ({str(exc).splitlines()[0]}); leave it out "
                             f"or choose a norm that works on (N, C), e.g. bn, gn, ln") from None


def center_convs(model: nn.Module) -> nn.Module:
    """Swap every plain ``nn.Conv2d`` for a :class:`CenteredConv2d` (weight centralization, as
    MABN prescribes), keeping the parameter values. In place; returns the model."""
    for name, child in _children(model):
        if type(child) is nn.Conv2d:
            setattr(model, name, _like(CenteredConv2d.from_conv(child), child))
        else:
            center_convs(child)
    return model


def _convert(module: nn.Module, spec: NormSpec, center: bool, fallback_act: str) -> None:
    for name, child in _children(module):
        if is_norm(child):
            setattr(module, name, _replacement(child, spec, fallback_act))
        elif center and type(child) is nn.Conv2d:
            setattr(module, name, _like(CenteredConv2d.from_conv(child), child))
        else:
            _convert(child, spec, center, fallback_act)


# ----------------------------------------------------------------------------- fusing


def _channel_affine(norm: nn.Module) -> tuple[Tensor, Tensor] | None:
    if norm.training:
        return None
    fn = getattr(norm, "channel_affine", None)
    if callable(fn):
        return fn()
    if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.track_running_stats \
            and norm.running_var is not None:
        return _running_affine(norm.running_mean, norm.running_var, norm.eps,
                               norm.weight if norm.affine else None,
                               norm.bias if norm.affine else None)
    if type(norm).__name__ == "FrozenBatchNorm2d":
        return _running_affine(norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias)
    return None


def _fused_conv(conv: nn.Module, scale: Tensor, shift: Tensor) -> nn.Module:
    weight = conv.centered_weight() if isinstance(conv, CenteredConv2d) else conv.weight
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[weight.dim() - 2]
    fused = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        s = scale.to(torch.float64)
        w = weight.to(torch.float64) * s.reshape((-1,) + (1,) * (weight.dim() - 1))
        b = conv.bias.to(torch.float64) if conv.bias is not None else torch.zeros_like(s)
        fused.weight.copy_(w.to(weight.dtype))
        fused.bias.copy_((b * s + shift.to(torch.float64)).to(weight.dtype))
    return fused


class _Tracer(torch.fx.Tracer):
    """Keeps norms and weighted layers as leaves, so the graph shows which feeds which."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_norm(m) or isinstance(m, _CONVS + (nn.Linear,)) or super().is_leaf_module(m, qualname)


def traced_pairs(model: nn.Module, producers: tuple[type, ...],
                 consumer: "type | tuple[type, ...] | None" = None) -> list[tuple[str, str]]:
    """(producer, consumer) module paths where a ``producers`` layer's output goes only into a
    norm (of type ``consumer`` if given), read off the torch.fx graph. Raises if untraceable."""
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        mod = modules[node.target]
        if not (isinstance(mod, consumer) if consumer is not None else is_norm(mod)):
            continue
        src = node.args[0] if node.args else None
        if isinstance(src, torch.fx.Node) and src.op == "call_module" \
                and isinstance(modules[src.target], producers) and len(src.users) == 1:
            pairs.append((src.target, node.target))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            items = list(mod.named_children())
            for (a, m1), (b, m2) in zip(items, items[1:]):
                if isinstance(m1, _CONVS) and is_norm(m2):
                    prefix = f"{name}." if name else ""
                    pairs.append((prefix + a, prefix + b))
    return pairs


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def fuse_norms(model: nn.Module) -> nn.Module:
    """Fold every eval-mode norm that follows a convolution into that convolution, in place.

    A norm folds when its eval transform is a per-channel affine: BatchNorm (and timm's
    BatchNormAct2d, whose activation is kept), BatchGroupNorm whose groups are whole channels
    (G divides C), MovingAverageBatchNorm and BatchRenorm. The conv becomes a plain ``nn.ConvNd``
    with y = conv(x) * scale + shift baked in (a CenteredConv2d's centred weight is baked in too);
    the norm becomes ``nn.Identity`` (or its bundled activation). Conv-norm pairs are found from
    the traced graph (torch.fx), or from nn.Sequential order when the model cannot be traced.
    Call ``model.eval()`` first. Returns the model.
    """
    if model.training:
        raise ValueError("fuse_norms folds eval-mode statistics: call model.eval() first")
    try:
        pairs = traced_pairs(model, _CONVS)
    except Exception as exc:  # noqa: BLE001 - any tracing failure falls back to Sequential order
        warnings.warn(f"fuse_norms: torch.fx could not trace the model ({type(exc).__name__}); "
                      "fusing only conv->norm pairs adjacent in nn.Sequential", stacklevel=2)
        pairs = _sequential_pairs(model)
    for conv_path, norm_path in pairs:
        conv, norm = model.get_submodule(conv_path), model.get_submodule(norm_path)
        affine = _channel_affine(norm)
        if affine is None or affine[0].shape[0] != conv.out_channels:
            continue
        fused = _fused_conv(conv, *affine)
        fused.train(conv.training)
        _set(model, conv_path, fused)
        act = _bundled_act(norm)
        _set(model, norm_path, act if act is not None else nn.Identity())
    return model


def compile_norms(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """Compile every normalization layer of ``model`` in place with ``torch.compile`` (inductor,
    ``fullgraph=True`` unless given), leaving every other module eager; returns the model.

    Each outermost norm (:func:`is_norm`: normlab's layers, torch's and timm's) is compiled with
    ``nn.Module.compile``, so its parameters, buffers and ``state_dict`` keys are untouched; a norm
    inside a compiled norm is compiled with it. It pays where a compiled layer beats its eager
    path (``benchmarks/layers.py --compile``, the ``/eager`` column; docs/speed.md, "Compiled"):
    on the CPU that is BatchNorm, MABN, PositionalNorm and above all the evolved layer (about 8x
    faster forward+backward); GroupNorm, InstanceNorm, FRN, Batch Renorm and EvoNorm-S0 are slower
    compiled than on their eager paths, so a model of those is better left eager. The first call
    of each layer shape and mode pays the compilation (seconds on a CPU, a C++ compiler needed);
    with ``fullgraph=True`` a graph break raises instead of running part of a layer eagerly.
    ``compile_kwargs`` go to ``torch.compile`` (``mode``, ``dynamic``, ``backend``, ``fullgraph``).

        model = normlab.compile_norms(create_model("resnet20", norm="evolved:file=best.json"))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compile_norms expects a torch.nn.Module, got {type(model).__name__}")
    compile_kwargs.setdefault("fullgraph", True)
    done: list[str] = []
    for name, module in model.named_modules():
        if is_norm(module) and not any(name.startswith(prefix + ".") for prefix in done if prefix):
            nn.Module.compile(module, **compile_kwargs)   # EvolvedLayer's own `compile` is a flag
            done.append(name)
            if not name:                                # the model itself is a norm
                break
    return model


# ----------------------------------------------------------------------------- summary


def norm_summary(model: nn.Module, example: Tensor | None = None) -> list[dict]:
    """One row per normalization layer: its name, class, channels, the input shape it saw and
    its group count (``groups=auto`` shows the G it chose). With ``example`` (a batch), one
    training-mode forward runs first (on the model itself, in place: running statistics move) so that
    shapes are known and ``groups=auto`` layers choose their G; pass a meta tensor
    (``torch.empty(2, 3, 32, 32, device="meta")``) on a meta model to allocate nothing."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    if example is not None:
        for name, m in model.named_modules():
            if is_norm(m):
                hooks.append(m.register_forward_pre_hook(
                    lambda mod, args, name=name: shapes.__setitem__(name, tuple(args[0].shape))))
        was = model.training
        model.train()
        try:
            with torch.no_grad():
                model(example)
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
    rows = []
    for name, m in model.named_modules():
        if not is_norm(m):
            continue
        groups = getattr(m, "groups", None)
        if groups is None:
            groups = getattr(m, "num_groups", None)
        auto = bool(getattr(m, "auto", False))
        rows.append({"name": name or type(m).__name__, "layer": type(m).__name__,
                     "channels": norm_channels(m), "input": shapes.get(name),
                     "groups": (f"auto->{groups}" if groups else "auto (not chosen yet)") if auto else groups})
    return rows
