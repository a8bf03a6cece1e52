"""``imagefolder:PATH``: a folder of class sub-folders of images, read through a DataLoader.

Either ``PATH/train`` and ``PATH/val`` (or ``PATH/test``), each holding one folder per class, or
one folder per class directly under ``PATH`` (then a seeded 80/20 split).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .base import DataError, DatasetInfo, ImageData, stats

__all__ = ["imagefolder", "imagefolder_info", "verify_images", "load_image", "IMAGE_EXTENSIONS"]

# the extensions torchvision's ImageFolder accepts
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def load_image(path: str):
    """Open one image as RGB; a file that is not a readable image is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None


def _count(folder: Path) -> dict[str, int]:
    """Images per class folder, without decoding any; DataError where ImageFolder would fail."""
    if not folder.is_dir():
        raise DataError(f"imagefolder path {folder} is not a directory")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise DataError(f"imagefolder {folder} has no class folders: expected {folder}/<class>/<image>"
                        f" (or {folder}/train/<class>/ and {folder}/val/<class>/)")
    counts = {}
    for cls in classes:
        n = 0
        for _, _, files in os.walk(folder / cls, followlinks=True):
            n += sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in files)
        if n == 0:
            raise DataError(f"imagefolder class folder {folder / cls} holds no images (expected files "
                            f"ending in {', '.join(IMAGE_EXTENSIONS)})")
        counts[cls] = n
    return counts


def _image_files(folder: Path) -> list[Path]:
    files = []
    for cls in sorted(e.name for e in os.scandir(folder) if e.is_dir()):
        for where, _, names in sorted(os.walk(folder / cls, followlinks=True)):
            files += [Path(where) / f for f in sorted(names) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return files


def verify_images(path: str) -> None:
    """Read the header of every image of an image folder (its test split first), without decoding
    pixels (PIL's ``Image.open`` + ``verify``: about 60 us an image), so that an unreadable file
    stops a run before training rather than at its final evaluation. DataError naming the first
    unreadable file (and how many more there are)."""
    from PIL import Image

    root = Path(path).expanduser()
    pair = _split_dirs(root)
    bad: list[tuple[Path, str]] = []
    for folder in ((pair[1], pair[0]) if pair else (root,)):
        for file in _image_files(folder):
            try:
                with Image.open(file) as img:
                    img.verify()
            except Exception as exc:                      # noqa: BLE001  (PIL raises many kinds)
                bad.append((file, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        if bad:
            break                                         # the test split's problems first
    if bad:
        (file, why), more = bad[0], len(bad) - 1
        extra = f"; {more} more unreadable image(s) in {file.parents[1]}" if more else ""
        raise DataError(f"cannot decode image {file}: {why} (fix or remove it{extra})")


def _split_dirs(root: Path) -> tuple[Path, Path] | None:
    for a, b in (("train", "val"), ("train", "test")):
        if (root / a).is_dir() and (root / b).is_dir():
            return root / a, root / b
    return None


def imagefolder_info(path: str, size: int = 32, **_: Any) -> DatasetInfo:
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"imagefolder path {root} does not exist")
    if not isinstance(size, int) or size < 1:
        raise DataError(f"imagefolder size={size!r} is invalid: expected a positive integer")
    pair = _split_dirs(root)
    if pair:
        train, test = _count(pair[0]), _count(pair[1])
        if sorted(train) != sorted(test):
            raise DataError(f"imagefolder {root}: {pair[0].name} and {pair[1].name} have different "
                            f"class folders ({len(train)} vs {len(test)})")
        n_train, n_test = sum(train.values()), sum(test.values())
        classes = len(train)
    else:
        counts = _count(root)
        total = sum(counts.values())
        if total < 2:
            raise DataError(f"imagefolder {root} holds {total} image: expected at least 2 to split")
        n_test = max(1, total // 5)
        n_train, classes = total - n_test, len(counts)
    return DatasetInfo(f"imagefolder:{root}", classes, 3, (size, size), n_train, n_test)


def imagefolder(path: str, size: int = 32, seed: int = 0, workers: int | None = None,
                **_: Any) -> ImageData:
    from .._compat import import_torchvision

    tv = import_torchvision()
    info = imagefolder_info(path, size)
    root = Path(path).expanduser()
    T = tv.transforms
    base = T.Compose([T.Resize((size, size)), T.ToTensor()])
    pair = _split_dirs(root)

    def folder(p):
        return tv.datasets.ImageFolder(str(p), transform=base, loader=load_image)

    try:
        if pair:
            train_set, test_set = folder(pair[0]), folder(pair[1])
        else:
            full = folder(root)
            n_test = max(1, len(full) // 5)
            train_set, test_set = torch.utils.data.random_split(
                full, [len(full) - n_test, n_test], generator=torch.Generator().manual_seed(seed))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"imagefolder {root}: {exc}") from None
    classes = (train_set.classes if hasattr(train_set, "classes") else train_set.dataset.classes)
    probe = torch.stack([train_set[i][0] for i in range(min(256, len(train_set)))])
    mean, std = stats(probe, 1.0)
    transform = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(mean, std)])
    for ds in (train_set, test_set):
        (ds.dataset if hasattr(ds, "dataset") else ds).transform = transform
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    return ImageData(name=info.name, num_classes=len(classes), in_channels=probe.shape[1],
                     image_size=(size, size), mean=mean, std=std, train_set=train_set,
                     test_set=test_set, num_workers=workers,
                     info={"source": str(root), "classes": classes})
