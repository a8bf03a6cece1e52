"""ResNets for small images: CIFAR-style ResNet-20/32/56 (He et al. 2016, basic blocks) and a
pre-activation ResNet-50 v2 (He et al. 2016, "Identity Mappings") with a 3x3 stride-1 stem."""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import NormSpec, create_act, norm_act
from ._blocks import ConvNormAct, init_weights, scaled


class BasicBlock(nn.Module):
    """conv3x3-norm-act, conv3x3-norm, + shortcut, act.

    The second norm has no activation of its own (norm_act(..., act=None)), so an EvoNorm there
    is its linear variant; when the norm replaces activations, no ReLU follows the addition
    (the activations live inside the norm layers, as in the EvoNorm paper's ResNets).
    """

    def __init__(self, cin: int, cout: int, stride: int, norm: NormSpec, act) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride, norm, act)
        self.conv2 = ConvNormAct(cout, cout, 3, 1, norm, None)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else ConvNormAct(cin, cout, 1, stride, norm, None))
        self.act = nn.Identity() if norm.info.replaces_act else create_act(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, norm: NormSpec, act, in_channels: int, num_classes: int,
                 width: float) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth={depth} is invalid: expected 6n + 2 (20, 32, 56, ...)")
        n = (depth - 2) // 6
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.stem = ConvNormAct(in_channels, widths[0], 3, 1, norm, act)
        layers, cin = [], widths[0]
        for stage, cout in enumerate(widths):
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1, norm, act))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


class PreActBottleneck(nn.Module):
    """norm-act, conv1x1, norm-act, conv3x3 (stride), norm-act, conv1x1, + shortcut."""

    expansion = 4

    def __init__(self, cin: int, mid: int, stride: int, norm: NormSpec, act) -> None:
        super().__init__()
        cout = mid * self.expansion
        self.pre = norm_act(norm, cin, act=act)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = norm_act(norm, mid, act=act)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.norm3 = norm_act(norm, mid, act=act)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pre(x)
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.norm2(out))
        out = self.conv3(self.norm3(out))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, blocks: list[int], norm: NormSpec, act, in_channels: int,
                 num_classes: int, width: float) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, cin = [], widths[0]
        for stage, (mid, n) in enumerate(zip(widths, blocks)):
            for i in range(n):
                layers.append(PreActBottleneck(cin, mid, 2 if stage > 0 and i == 0 else 1, norm, act))
                cin = mid * PreActBottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.final = norm_act(norm, cin, act=act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.final(self.layers(self.stem(x)))).flatten(1))
