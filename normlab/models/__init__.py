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

__all__ = ["create_model", "available_models", "profile", "Profile", "ModelError"]


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


def available_models() -> list[str]:
    return list(MODELS)


def create_model(name: str, norm: str | NormSpec = "bn", act: str = "relu", in_channels: int = 3,
                 num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """Build an anchor model whose every normalization slot is ``norm`` (a spec like 'bgn:groups=8')."""
    if name not in MODELS:
        raise ModelError(f"unknown model '{name}'; known models: {', '.join(MODELS)}")
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{arg}={value!r} is invalid: expected a positive integer")
    if not isinstance(width, (int, float)) or not 0 < width <= 16:
        raise ModelError(f"width={width!r} is invalid: expected a number in (0, 16]")
    spec = NormSpec.parse(norm)
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
