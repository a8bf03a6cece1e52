"""MobileNetV2 (Sandler et al. 2018) and EfficientNet-B0 (Tan & Le 2019) for small images.

Strides are adapted for 32x32 inputs: a stride-1 stem and a stride-1 second stage, so three
stride-2 stages leave a 4x4 map, as the CIFAR variants of these networks do.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import NormSpec
from ._blocks import ConvNormAct, SqueezeExcite, init_weights, make_divisible


class InvertedResidual(nn.Module):
    """expand 1x1 (norm-act), depthwise kxk (norm-act), [SE], project 1x1 (norm, no act), + x."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, kernel: int,
                 norm: NormSpec, act, se_ratio: float = 0.0) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(cin, mid, 1, 1, norm, act))
        layers.append(ConvNormAct(mid, mid, kernel, stride, norm, act, groups=mid))
        if se_ratio:
            layers.append(SqueezeExcite(mid, max(1, int(cin * se_ratio)), act))
        layers.append(ConvNormAct(mid, cout, 1, 1, norm, None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# (expansion, channels, repeats, stride, kernel); stage 2 has stride 1 for small images
MBV2_STAGES = [(1, 16, 1, 1, 3), (6, 24, 2, 1, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3),
               (6, 96, 3, 1, 3), (6, 160, 3, 2, 3), (6, 320, 1, 1, 3)]
EFFNET_B0_STAGES = [(1, 16, 1, 1, 3), (6, 24, 2, 1, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                    (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]


class MobileNet(nn.Module):
    def __init__(self, stages, stem: int, head: int, se_ratio: float, norm: NormSpec, act,
                 in_channels: int, num_classes: int, width: float, dropout: float) -> None:
        super().__init__()
        cin = make_divisible(stem * width)
        self.stem = ConvNormAct(in_channels, cin, 3, 1, norm, act)
        blocks = []
        for expand, channels, repeats, stride, kernel in stages:
            cout = make_divisible(channels * width)
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, kernel,
                                               norm, act, se_ratio))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        head_channels = make_divisible(head * max(1.0, width))
        self.head = ConvNormAct(cin, head_channels, 1, 1, norm, act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head_channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.head(self.blocks(self.stem(x)))).flatten(1)
        return self.fc(self.dropout(x))
