"""The SPOS search space and its supernet: a stem, stages of searchable layers, a classifier.

Every searchable layer holds a list of candidate ops (a *choice block*, Guo et al. 2020, "Single
Path One-Shot Neural Architecture Search with Uniform Sampling"); a *path* is one op index per
layer and ``Supernet.forward(x, path)`` runs that single path. The ops are MobileNetV2 inverted
residuals (MBConv: 1x1 expand -> norm -> ReLU6 -> kxk depthwise -> norm -> ReLU6 -> 1x1 project ->
norm, plus the skip connection when the shape is kept) with kernel k and expansion e, and the
identity where a layer keeps channels and resolution. The norm in every op is a normlab spec
(``bn`` by default, ``bgn:groups=4`` for Batch Group Normalization), affine on: BN-NAS scores an
op by the gamma of its *last* norm (after the 1x1 projection), ``op.last_norm``.

In ``models/`` because ``create_model("nas", space=..., path=...)`` builds a genotype from it;
``normlab.nas.supernet`` re-exports it for the study.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..layers import create_norm

__all__ = ["NasError", "SpaceConfig", "MBConv", "Identity", "Supernet", "Subnet", "PRESETS",
           "op_name", "genotype", "build_genotype"]


class NasError(ValueError):
    """A NAS setting or architecture that cannot be used as given: one line."""


def check_positive(obj: Any, names: Sequence[str], prefix: str = "") -> None:
    """Each attribute ``names`` of ``obj`` is a positive integer, or a one-line NasError
    ("{prefix}{name}=... is invalid: expected a positive integer")."""
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise NasError(f"{prefix}{name}={v!r} is invalid: expected a positive integer")


def op_name(kernel: int | None, expansion: int | None) -> str:
    return "id" if kernel is None else f"k{kernel}e{expansion}"


@dataclass(frozen=True)
class SpaceConfig:
    """A search space: ``stages`` is a list of (width, layers, stride of the first layer).

    Layer candidates: MBConv for every kernel x expansion, and the identity when the layer keeps
    channels and resolution (and ``identity`` is on). ``image_size`` is needed for FLOPs only.
    """

    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    stem: int = 8
    stem_stride: int = 2
    stages: tuple[tuple[int, int, int], ...] = ((8, 2, 1), (16, 3, 2), (32, 3, 2))
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (3, 6)
    identity: bool = True
    norm: str = "bn"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(tuple(int(v) for v in s) for s in self.stages))
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "expansions", tuple(int(e) for e in self.expansions))
        check_positive(self, ("in_channels", "num_classes", "image_size", "stem", "stem_stride"))
        if not self.stages:
            raise NasError("stages is empty: expected a list of (width, layers, stride)")
        for s in self.stages:
            if len(s) != 3 or min(s) < 1 or s[2] > 2:
                raise NasError(f"stage {list(s)} is invalid: expected [width >= 1, layers >= 1, stride 1 or 2]")
        if not self.kernels or any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise NasError(f"kernels={list(self.kernels)} is invalid: expected odd positive sizes, e.g. [3, 5, 7]")
        if not self.expansions or any(e < 1 for e in self.expansions):
            raise NasError(f"expansions={list(self.expansions)} is invalid: expected positive ratios, e.g. [3, 6]")
        from ..layers import NormSpec

        try:
            NormSpec.parse(self.norm)
        except ValueError as exc:
            raise NasError(f"norm={self.norm!r} is invalid: {str(exc).splitlines()[0]}") from None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpaceConfig":
        from .._settings import known_settings

        return cls(**known_settings(d, cls, "space", NasError))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = [list(s) for s in self.stages]
        out["kernels"], out["expansions"] = list(self.kernels), list(self.expansions)
        return out

    def layers(self) -> list[dict[str, Any]]:
        """Per searchable layer: in/out channels, stride, input resolution, candidate op specs."""
        out, cin = [], self.stem
        size = -(-self.image_size // self.stem_stride)
        for width, depth, stride in self.stages:
            for i in range(depth):
                s = stride if i == 0 else 1
                ops: list[tuple[int | None, int | None]] = [(k, e) for k in self.kernels for e in self.expansions]
                if self.identity and cin == width and s == 1:
                    ops.append((None, None))
                out.append({"cin": cin, "cout": width, "stride": s, "size": size, "ops": ops,
                            "names": [op_name(k, e) for k, e in ops]})
                size = -(-size // s)
                cin = width
        return out

    def num_paths(self) -> int:
        n = 1
        for layer in self.layers():
            n *= len(layer["ops"])
        return n


PRESETS: dict[str, dict[str, Any]] = {
    # stem -> 3 stages, 8 searchable layers, widths 8/16/32: 7^6 * 6^2 = 4.2e6 paths
    "small": {},
    # the SPOS/ABS ImageNet-style MBConv space (ProxylessNAS widths), for GPUs: 224x224, 21 layers
    "imagenet": {"in_channels": 3, "num_classes": 1000, "image_size": 224, "stem": 16, "stem_stride": 2,
                 "stages": ((32, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))},
}


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (cin -> e cin) -> norm -> ReLU6 -> kxk depthwise (stride) ->
    norm -> ReLU6 -> 1x1 project (-> cout) -> norm, plus x when stride is 1 and cin == cout."""

    def __init__(self, cin: int, cout: int, kernel: int, expansion: int, stride: int, norm: str) -> None:
        super().__init__()
        hidden = cin * expansion
        self.kernel, self.expansion, self.stride = kernel, expansion, stride
        self.cin, self.cout = cin, cout
        self.expand = nn.Conv2d(cin, hidden, 1, bias=False)
        self.norm1 = create_norm(norm, hidden)
        self.dw = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self.norm2 = create_norm(norm, hidden)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)
        self.norm3 = create_norm(norm, cout)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout

    @property
    def last_norm(self) -> nn.Module:
        return self.norm3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.expand(x)))
        y = self.act(self.norm2(self.dw(y)))
        y = self.norm3(self.project(y))
        return x + y if self.residual else y

    def flops(self, size: int) -> int:
        """Multiply-adds x 2 of the three convolutions on a size x size input (norms and the
        activation are not counted, as torch.utils.flop_counter does not count them)."""
        hidden = self.cin * self.expansion
        out = -(-size // self.stride)
        return 2 * (size * size * self.cin * hidden + out * out * hidden * self.kernel ** 2
                    + out * out * hidden * self.cout)


class Identity(nn.Module):
    """The skip op: no parameters, no norm (BN indicator 0, no FLOPs)."""

    last_norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def flops(self, size: int) -> int:
        return 0


def _stem(cfg: SpaceConfig) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cfg.in_channels, cfg.stem, 3, cfg.stem_stride, 1, bias=False),
                         create_norm(cfg.norm, cfg.stem), nn.ReLU6())


class Supernet(nn.Module):
    """All candidate ops of a :class:`SpaceConfig`; ``forward(x, path)`` runs one path."""

    def __init__(self, cfg: SpaceConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = cfg if isinstance(cfg, SpaceConfig) else SpaceConfig.from_dict(cfg or {})
        self.cfg = cfg
        self.layer_info = cfg.layers()
        self.stem = _stem(cfg)
        self.choices = nn.ModuleList()
        for info in self.layer_info:
            ops = [Identity() if k is None else MBConv(info["cin"], info["cout"], k, e, info["stride"], cfg.norm)
                   for k, e in info["ops"]]
            self.choices.append(nn.ModuleList(ops))
        width = cfg.stages[-1][0]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, cfg.num_classes)

    @property
    def num_ops(self) -> list[int]:
        return [len(c) for c in self.choices]

    @staticmethod
    def check_path_for(cfg: SpaceConfig, path: Sequence[int]) -> tuple[int, ...]:
        """``path`` as a tuple of ints, or a one-line NasError naming what is wrong for ``cfg``."""
        return _checked(path, [len(layer["ops"]) for layer in cfg.layers()])

    def check_path(self, path: Sequence[int]) -> tuple[int, ...]:
        return _checked(path, self.num_ops)

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        x = self.stem(x)
        for ops, i in zip(self.choices, path):
            x = ops[i](x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def op_norms(self, layer: int, op: int) -> list[nn.Module]:
        """The norm(s) BN-NAS reads for op ``op`` of layer ``layer``: its last norm, none for the
        identity (the one-shot study's protocol, shared with the NB201 supernet)."""
        norm = self.choices[layer][op].last_norm
        return [] if norm is None else [norm]

    def angle_modules(self, path: Sequence[int]) -> list[tuple[str, nn.Module]]:
        """(state-dict prefix, module) of a child model: the stem, the path's ops, the classifier."""
        return ([("stem", self.stem)] + [(f"choices.{layer}.{i}", self.choices[layer][i]) for layer, i in enumerate(path)]
                + [("classifier", self.classifier)])

    def path_ops(self, path: Sequence[int]) -> list[nn.Module]:
        return [ops[i] for ops, i in zip(self.choices, path)]

    def names(self, path: Sequence[int]) -> list[str]:
        return [info["names"][i] for info, i in zip(self.layer_info, path)]

    def flops(self, path: Sequence[int]) -> int:
        """Analytic FLOPs (2 x multiply-adds of every conv and the classifier) of a path."""
        cfg = self.cfg
        size = -(-cfg.image_size // cfg.stem_stride)
        total = 2 * size * size * cfg.in_channels * 9 * cfg.stem
        for op, info in zip(self.path_ops(path), self.layer_info):
            total += op.flops(info["size"])
        return total + 2 * self.classifier.in_features * self.classifier.out_features

    def params(self, path: Sequence[int]) -> int:
        """Parameters of the standalone subnet of a path."""
        shared = sum(p.numel() for m in (self.stem, self.classifier) for p in m.parameters())
        return shared + sum(p.numel() for op in self.path_ops(path) for p in op.parameters())

    def subnet(self, path: Sequence[int]) -> "Subnet":
        """A standalone network with copies of the path's weights (and norm statistics)."""
        path = self.check_path(path)
        return Subnet(copy.deepcopy(self.stem), [copy.deepcopy(op) for op in self.path_ops(path)],
                      copy.deepcopy(self.classifier), path)


def _checked(path: Sequence[int], num_ops: Sequence[int]) -> tuple[int, ...]:
    try:
        path = tuple(int(i) for i in path)
    except (TypeError, ValueError):
        raise NasError(f"path {path!r} is invalid: expected a list of op indices, one per layer") from None
    if len(path) != len(num_ops):
        raise NasError(f"path {list(path)} has {len(path)} layers: expected {len(num_ops)}")
    for layer, (i, n) in enumerate(zip(path, num_ops)):
        if not 0 <= i < n:
            raise NasError(f"path {list(path)}: op {i} at layer {layer} is invalid: expected 0..{n - 1}")
    return path


class Subnet(nn.Module):
    """One path as a plain network (what ``Supernet.subnet`` extracts and retraining builds)."""

    def __init__(self, stem: nn.Module, ops: Sequence[nn.Module], classifier: nn.Linear,
                 path: Sequence[int] = ()) -> None:
        super().__init__()
        self.stem = stem
        self.ops = nn.ModuleList(ops)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier
        self.path = tuple(path)

    @classmethod
    def build(cls, cfg: SpaceConfig, path: Sequence[int], seed: int = 0) -> "Subnet":
        """A freshly initialised standalone network of ``path`` (for training from scratch)."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return Supernet(cfg).subnet(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for op in self.ops:
            x = op(x)
        return self.classifier(torch.flatten(self.pool(x), 1))


def genotype(space: SpaceConfig, path: Sequence[int], **extra: Any) -> dict[str, Any]:
    """A path as a JSON-able model description that ``create_model`` and ``normlab bench
    --model FILE.json`` build: ``{"model": "nas", "space": {...}, "path": [...], "ops": [...]}``
    (``ops`` names each layer's op, for people; ``extra`` adds e.g. the search's scores)."""
    path = Supernet.check_path_for(space, path)
    layers = space.layers()
    return {"model": "nas", "space": space.to_dict(), "path": list(path),
            "ops": [layer["names"][i] for layer, i in zip(layers, path)], **extra}


def build_genotype(space: Mapping[str, Any] | SpaceConfig, path: Sequence[int], *, norm: str | None = None,
                   in_channels: int | None = None, num_classes: int | None = None, width: float = 1.0,
                   seed: int = 0) -> "Subnet":
    """A freshly initialised network of a genotype, for training from scratch: the space's norm,
    channels and classes unless given (``create_model`` passes its own), widths scaled by ``width``."""
    base = space.to_dict() if isinstance(space, SpaceConfig) else dict(space)
    if norm is not None:
        base["norm"] = norm
    if in_channels is not None:
        base["in_channels"] = in_channels
    if num_classes is not None:
        base["num_classes"] = num_classes
    if width != 1.0:
        base["stem"] = max(1, round(base.get("stem", SpaceConfig.stem) * width))
        base["stages"] = [[max(1, round(w * width)), n, st]
                          for w, n, st in base.get("stages", SpaceConfig.stages)]
    try:
        cfg = SpaceConfig.from_dict(base)
    except TypeError as exc:
        raise NasError(f"space {base} is invalid: {exc}") from None
    if isinstance(path, (str, bytes)):
        raise NasError(f"path={path!r} is invalid: expected a list of op indices, one per layer")
    return Subnet.build(cfg, path, seed=seed)
