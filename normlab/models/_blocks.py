"""Building blocks shared by the anchor models. Every normalization slot goes through norm_act."""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import NormSpec, create_act, norm_act


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90% of ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class ConvNormAct(nn.Sequential):
    """conv -> norm (-> act): the norm slot is norm_act, so EvoNorm/FRN replace the activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, norm: NormSpec, act,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            norm_act(norm, cout, act=act),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) as in EfficientNet: no normalization inside."""

    def __init__(self, channels: int, reduced: int, act) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = create_act(act)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.expand(self.act(self.reduce(s))).sigmoid()


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
