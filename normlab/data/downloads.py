"""Public datasets fetched with torchvision, only when asked (``download=True``).

MNIST and Fashion-MNIST are also read straight from IDX files already on disk (gzipped or not),
so Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) or a copy
of the four files under ``$NORMLAB_DATA/fashion-mnist`` works offline, without torchvision.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Callable

import torch

from .base import DataError, DatasetInfo, ImageData, default_root, in_memory

__all__ = ["TORCHVISION", "FACTS", "read_idx", "find_idx", "torchvision_set", "downloadable_info", "known_info"]

# name: (torchvision class, augmentation)
TORCHVISION: dict[str, tuple[str, str | None]] = {
    "cifar10": ("CIFAR10", "crop+flip"),
    "cifar100": ("CIFAR100", "crop+flip"),
    "mnist": ("MNIST", None),
    "fashion-mnist": ("FashionMNIST", None),
    "svhn": ("SVHN", "crop"),
}
FACTS: dict[str, tuple[int, int, int, int, int]] = {   # classes, channels, size, n_train, n_test
    "cifar10": (10, 3, 32, 50000, 10000),
    "cifar100": (100, 3, 32, 50000, 10000),
    "mnist": (10, 1, 28, 60000, 10000),
    "fashion-mnist": (10, 1, 28, 60000, 10000),
    "svhn": (10, 3, 32, 73257, 26032),
}
# what torchvision leaves on disk once a set is downloaded (relative to root/name)
_ON_DISK = {"cifar10": ["cifar-10-batches-py"], "cifar100": ["cifar-100-python"],
            "svhn": ["train_32x32.mat", "test_32x32.mat"]}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
               "mnist": [Path("/usr/share/datasets/mnist")]}
_IDX_TYPES = {0x08: torch.uint8, 0x09: torch.int8, 0x0B: torch.int16, 0x0C: torch.int32,
              0x0D: torch.float32, 0x0E: torch.float64}


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (the MNIST format: magic 0,0,type,ndim; big-endian int32 sizes; data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = _IDX_TYPES[raw[2]]
    count = 1
    for d in dims:
        count *= d
    offset = 4 + 4 * ndim
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) - offset != count * itemsize:
        raise DataError(f"{path} is truncated: header says {dims}, file holds "
                        f"{(len(raw) - offset) // itemsize} values")
    data = torch.frombuffer(bytearray(raw[offset:]), dtype=dtype)
    if itemsize > 1:                                   # IDX is big-endian
        data = data.view(torch.uint8).view(-1, itemsize).flip(1).reshape(-1).view(dtype)
    return data.reshape(dims).clone()


def _idx_dirs(name: str, root: Path) -> list[Path]:
    cls = TORCHVISION[name][0]
    return [root / name, root / name / cls / "raw", root / cls / "raw", *SYSTEM_DIRS.get(name, [])]


def find_idx(name: str, root: Path) -> dict[str, Path] | None:
    """The four IDX files of MNIST/Fashion-MNIST in the first folder that has all of them."""
    for folder in _idx_dirs(name, root):
        found = {}
        for stem in IDX_FILES:
            hit = next((folder / (stem + ext) for ext in (".gz", "") if (folder / (stem + ext)).is_file()), None)
            if hit is None:
                break
            found[stem] = hit
        else:
            return found
    return None


def _missing(name: str, root: Path) -> DataError:
    where = root / name
    if name in ("mnist", "fashion-mnist"):
        layout = (f"the four IDX files ({', '.join(s + '.gz' for s in IDX_FILES)}) in one of: "
                  + ", ".join(str(d) for d in _idx_dirs(name, root)))
        extra = "; on Debian: apt install dataset-fashion-mnist" if name == "fashion-mnist" else ""
        return DataError(f"dataset '{name}' not found: expected {layout}; pass --download "
                         f"(download=True) to fetch it, or set NORMLAB_DATA{extra}")
    return DataError(f"dataset '{name}' not found in {where} (expected "
                     f"{', '.join(str(where / p) for p in _ON_DISK[name])}); pass --download "
                     f"(download=True) to fetch it, or set NORMLAB_DATA to where it is")


def _on_disk(name: str, root: Path) -> bool:
    if name in ("mnist", "fashion-mnist"):
        return find_idx(name, root) is not None
    return all((root / name / p).exists() for p in _ON_DISK[name])


def _torchvision_datasets(name: str, root: Path, download: bool):
    from .._compat import import_torchvision

    cls_name = TORCHVISION[name][0]
    cls = getattr(import_torchvision().datasets, cls_name)
    path = root / name
    try:
        if cls_name == "SVHN":
            return tuple(cls(str(path), split=s, download=download) for s in ("train", "test"))
        return tuple(cls(str(path), train=t, download=download) for t in (True, False))
    except RuntimeError as exc:
        if download:
            raise DataError(f"could not download '{name}' into {path}: {exc}") from None
        raise _missing(name, root) from None
    except OSError as exc:
        raise DataError(f"could not read or download '{name}' at {path}: {exc}") from None


def downloadable_info(name: str, root: Path | str | None = None, download: bool = False) -> DatasetInfo:
    """The set's facts once it is on disk; downloads it first when ``download`` (so that worker
    processes never race to download the same files)."""
    root = Path(root or default_root()).expanduser()
    if not _on_disk(name, root):
        if not download:
            raise _missing(name, root)
        _torchvision_datasets(name, root, True)
    return known_info(name)


def known_info(name: str) -> DatasetInfo:
    """A downloadable set's facts from ``FACTS``, whether or not it is on disk (a plan's shapes)."""
    classes, channels, size, n_train, n_test = FACTS[name]
    return DatasetInfo(name, classes, channels, (size, size), n_train, n_test)


def torchvision_set(name: str) -> Callable[..., ImageData]:
    cls_name, augment = TORCHVISION[name]

    def build(root: Path | str | None = None, download: bool = False, **_: Any) -> ImageData:
        base = Path(root or default_root()).expanduser()
        idx = find_idx(name, base) if name in ("mnist", "fashion-mnist") else None
        if idx is not None:
            x, y, tx, ty = (read_idx(idx[s]) for s in IDX_FILES)
            return in_memory(name, x.unsqueeze(1), y, tx.unsqueeze(1), ty, scale=255.0,
                             augment=augment, source=f"IDX files in {idx[IDX_FILES[0]].parent}")
        train, test = _torchvision_datasets(name, base, download)

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
        return in_memory(name, x, y, tx, ty, scale=255.0, augment=augment, source=f"torchvision {cls_name}")

    return build
