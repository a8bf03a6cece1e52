"""The dataset type every loader returns, its errors, and batched augmentation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ImageData", "DatasetInfo", "DataError", "default_root", "crop_flip", "stats"]


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
        batches = iter(loader)
        while limit is None or seen < limit:
            try:
                xb, yb = next(batches)
            except StopIteration:
                break
            except DataError as exc:            # from a worker: its message is a traceback whose
                raise DataError(_last_line(str(exc))) from None  # last line is ours
            seen += len(yb)
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def _last_line(message: str) -> str:
    line = message.strip().splitlines()[-1] if message.strip() else message
    _, sep, rest = line.partition("DataError: ")
    return rest if sep else line




@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before any image is decoded (``check_dataset``).

    ``n_train`` is None where it cannot be known without loading (never for the built-in sets).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    n_train: int | None
    n_test: int | None


def stats(x: Tensor, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x / scale`` (std clamped away from zero)."""
    xf = x.float().div(scale).transpose(0, 1).reshape(x.shape[1], -1)
    return tuple(xf.mean(1).tolist()), tuple(xf.std(1).clamp_min(1e-6).tolist())


def in_memory(name: str, x: Tensor, y: Tensor, tx: Tensor, ty: Tensor, scale: float,
              augment: str | None, num_classes: int | None = None, **info: Any) -> ImageData:
    """An ImageData over tensors, normalized with the training split's statistics."""
    mean, std = stats(x, scale)
    return ImageData(name=name, num_classes=num_classes or int(max(y.max(), ty.max())) + 1,
                     in_channels=x.shape[1], image_size=(x.shape[2], x.shape[3]), mean=mean,
                     std=std, augment=augment, train_x=x, train_y=y.long(), test_x=tx,
                     test_y=ty.long(), scale=scale, info=info)


def holdout(data: ImageData, fraction: float, seed: int = 0) -> tuple[ImageData, ImageData]:
    """A validation split carved from the training data (stratified, seeded): returns
    ``(fit_data, test_data)``, where ``fit_data`` trains on the rest of the training split and
    its "test" split is the held-out validation set, and ``test_data`` has the same training rest
    and the real test split. Both are normalized with the statistics of the training rest, so
    the validation set plays no part in training. In-memory data only."""
    if not data.in_memory:
        raise DataError(f"{data.name}: a validation split needs in-memory data (not a folder dataset)")
    if not 0 < fraction < 1:
        raise DataError(f"val_fraction={fraction!r} is invalid: expected a number in (0, 1)")
    from sklearn.model_selection import train_test_split

    y = data.train_y
    idx = torch.arange(len(y)).numpy()
    try:
        rest, val = train_test_split(idx, test_size=fraction, random_state=seed, stratify=y.numpy())
    except ValueError as exc:
        raise DataError(f"{data.name}: cannot hold out {fraction:g} of {len(y)} training images for "
                        f"validation ({exc})") from None
    rest, val = torch.as_tensor(rest), torch.as_tensor(val)
    x = data.train_x
    common = dict(scale=data.scale, augment=data.augment, num_classes=data.num_classes, **data.info)
    fit_data = in_memory(f"{data.name}/train-val", x[rest], y[rest], x[val], y[val], **common)
    test_data = in_memory(f"{data.name}/train-test", x[rest], y[rest], data.test_x, data.test_y, **common)
    return fit_data, test_data
