"""The per-process dataset cache: datasets (and what a study derives from them, such as nas's
train/validation split) loaded once per worker process and reused by every trial it runs. The
one cache in normlab: bench trials, evolve's proxy task, nas's splits and nago's evaluations all
read through it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable

from .protocol import RunContext

__all__ = ["load_data", "cached", "clear_data_cache", "MAX_ENTRIES"]

MAX_ENTRIES = 8                          # least recently used entries beyond this are dropped
_CACHE: "OrderedDict[Hashable, Any]" = OrderedDict()


def cached(key: Hashable, build: Callable[[], Any]) -> Any:
    """The value cached under ``key``, built with ``build()`` the first time (per process)."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return value


def load_data(spec: str, seed: int = 0, context: RunContext | None = None):
    """``normlab.data.load_dataset`` with a per-process cache keyed by (spec, seed, root)."""
    from ..data import load_dataset

    context = context or RunContext()
    return cached(("dataset", spec, seed, context.data_root),
                  lambda: load_dataset(spec, root=context.data_root, download=context.download, seed=seed))


def clear_data_cache() -> None:
    _CACHE.clear()
