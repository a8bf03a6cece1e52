"""Anchor architectures for small images that take a norm spec.

    model = create_model("resnet20", norm="bgn:groups=8", num_classes=10)
    print(profile(model, (1, 3, 32, 32)))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..layers import NormSpec
from ..layers.convert import center_convs
from .mobile import EFFNET_B0_STAGES, MBV2_STAGES, MobileNet
from .resnet import CifarResNet, PreActResNet

__all__ = ["create_model", "available_models", "is_model", "model_config", "profile", "Profile", "ModelError"]


class ModelError(ValueError):
    """An unknown model name or a bad model argument."""


def _resnet(depth: int) -> Callable[..., nn.Module]:
    return lambda norm, act, cin, classes, width: CifarResNet(depth, norm, act, cin, classes, width)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": _resnet(20),
    "resnet32": _resnet(32),
    "resnet56": _resnet(56),
    "resnet50v2": lambda norm, act, cin, classes, width: PreActResNet(
        [3, 4, 6, 3], norm, act, cin, classes, width),
    "mobilenetv2": lambda norm, act, cin, classes, width: MobileNet(
        MBV2_STAGES, 32, 1280, 0.0, norm, act, cin, classes, width, dropout=0.2),
    "efficientnet_b0": lambda norm, act, cin, classes, width: MobileNet(
        EFFNET_B0_STAGES, 32, 1280, 0.25, norm, act, cin, classes, width, dropout=0.2),
}


def _nago(norm: NormSpec, act: str, cin: int, classes: int, width: float, generator=None,
          seed: int = 0) -> nn.Module:
    """A network sampled from a NAGO generator (models/nago.py; needs networkx). ``width`` scales
    the generator's base width."""
    from ..layers import canonical_spec
    from .nago import GeneratorError, GeneratorParams, sample

    if act != "relu":
        raise ModelError(f"act={act!r} is invalid for nago: its operations are ReLU-conv-norm (expected relu)")
    try:
        params = GeneratorParams.from_dict(generator if generator is not None else GeneratorParams())
        if width != 1.0:
            params = GeneratorParams.from_dict({**params.to_dict(), "width": max(1, round(params.width * width))})
        return sample(params, seed, norm=canonical_spec(norm),
                      in_channels=cin, num_classes=classes)
    except GeneratorError as exc:
        raise ModelError(f"nago: {exc}") from None


def _nas(norm: NormSpec, act: str, cin: int, classes: int, width: float, space=None, path=None,
         seed: int = 0, **about) -> nn.Module:
    """A path found by ``normlab nas`` (a genotype: its ``space`` and ``path``, as ``nas export``
    writes them; ``ops``, ``scores`` and ``search`` there only describe it), freshly initialised.
    Without them: the default (small) space, and its first op (MBConv k3 e3) in every layer."""
    from ..layers import canonical_spec
    from .nas import NasError, build_genotype

    unknown = sorted(set(about) - {"ops", "scores", "search"})
    if unknown:
        raise ModelError(f"nas: unknown option(s) {', '.join(unknown)}: expected space, path, seed")
    if act not in ("relu", "relu6"):
        raise ModelError(f"act={act!r} is invalid for nas: its MBConv ops use ReLU6 (expected relu)")
    space = {} if space is None else space
    if not isinstance(space, dict):
        raise ModelError("nas: expected space (a mapping of SpaceConfig fields) and path (op indices), "
                         "e.g. a file from 'normlab nas export'")
    if path is None:
        from .nas import SpaceConfig

        path = [0] * len(SpaceConfig.from_dict(space).layers())
    try:
        return build_genotype(space, path, norm=canonical_spec(norm), in_channels=cin, num_classes=classes,
                              width=width, seed=seed)
    except NasError as exc:
        raise ModelError(f"nas: {exc}") from None


def _nb201(norm: NormSpec, act: str, cin: int, classes: int, width: float, arch=None, C: int = 16,
           N: int = 5) -> nn.Module:
    """The NAS-Bench-201 network of cell ``arch`` (its NB201 string; default the paper's ResNet-like
    cell) at ``C`` channels (scaled by ``width``) and ``N`` cells per stage."""
    from .nb201 import RESNET_CELL, NB201Error, NB201Net

    if act != "relu":
        raise ModelError(f"act={act!r} is invalid for nb201: its ops are ReLU-conv-norm (expected relu)")
    try:
        c = C if width == 1.0 or isinstance(C, bool) or not isinstance(C, int) else max(1, round(C * width))
        return NB201Net(RESNET_CELL if arch is None else arch, C=c, N=N, norm=norm, in_channels=cin,
                        num_classes=classes)
    except NB201Error as exc:
        raise ModelError(f"nb201: {exc}") from None


#: models that take options (``create_model(name, ..., **options)``)
OPTION_MODELS: dict[str, Callable[..., nn.Module]] = {"nago": _nago, "nas": _nas, "nb201": _nb201}


def available_models() -> list[str]:
    return list(MODELS) + list(OPTION_MODELS)


def model_config(name: str) -> tuple[str, dict]:
    """(model name, options) of a name or of a JSON model file ``{"model": "nago", "generator":
    {...}, "seed": 3}`` (as ``normlab nago sample --export-model`` writes)."""
    if name in MODELS or name in OPTION_MODELS or not name.endswith(".json"):
        return name, {}
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(name).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model file {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelError(f"cannot read model file {name}: it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"model file {name} is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise ModelError(f"model file {name} is invalid: expected an object with a 'model' name and its options")
    data = dict(data)
    return data.pop("model"), data


def is_model(name: str) -> bool:
    """A known model name, or a readable JSON model file naming one."""
    try:
        base, _ = model_config(name)
    except ModelError:
        return False
    return base in MODELS or base in OPTION_MODELS


def create_model(name: str, norm: str | NormSpec = "bn", act: str = "relu", in_channels: int = 3,
                 num_classes: int = 10, width: float = 1.0, **options) -> nn.Module:
    """Build an anchor model whose every normalization slot is ``norm`` (a spec like 'bgn:groups=8').
    ``name`` may be a JSON model file (``{"model": "nago", "generator": {...}, "seed": 0}``);
    ``options`` go to models that take them (``create_model("nago", generator=..., seed=3)``)."""
    name, stored = model_config(name)
    options = {**stored, **options}
    if name not in MODELS and name not in OPTION_MODELS:
        raise ModelError(f"unknown model '{name}'; known models: {', '.join(available_models())}")
    if options and name not in OPTION_MODELS:
        raise ModelError(f"model '{name}' takes no options (got {', '.join(sorted(options))})")
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{arg}={value!r} is invalid: expected a positive integer")
    if not isinstance(width, (int, float)) or not 0 < width <= 16:
        raise ModelError(f"width={width!r} is invalid: expected a number in (0, 16]")
    spec = NormSpec.parse(norm)
    if name in OPTION_MODELS:
        try:
            model = OPTION_MODELS[name](spec, act, in_channels, num_classes, float(width), **options)
        except TypeError as exc:
            raise ModelError(f"model '{name}': {exc}") from None
    else:
        model = MODELS[name](spec, act, in_channels, num_classes, float(width))
    if spec.name == "mabn":          # MABN subtracts no mean: its convolutions are weight-centred
        center_convs(model)
    return model


@dataclass(frozen=True)
class Profile:
    params: int
    flops: int          # multiply-adds count twice, as torch.utils.flop_counter counts them

    def __str__(self) -> str:
        return f"{self.params / 1e6:.2f}M params, {self.flops / 1e6:.1f} MFLOPs"


def profile(model: nn.Module, input_shape: tuple[int, ...]) -> Profile:
    """Parameters and FLOPs of one forward pass, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    ref = next(model.parameters())
    x = torch.zeros(input_shape, device=ref.device, dtype=ref.dtype)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return Profile(sum(p.numel() for p in model.parameters()), int(counter.get_total_flops()))
