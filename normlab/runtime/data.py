"""Datasets loaded once per worker process and reused by every trial it runs."""

from __future__ import annotations

from typing import Any

from .protocol import RunContext

__all__ = ["load_data", "clear_data_cache"]

_CACHE: dict[tuple, Any] = {}


def load_data(spec: str, seed: int = 0, context: RunContext | None = None):
    """``normlab.data.load_dataset`` with a per-process cache keyed by (spec, seed, root)."""
    from ..data import load_dataset

    context = context or RunContext()
    key = (spec, seed, context.data_root)
    if key not in _CACHE:
        _CACHE[key] = load_dataset(spec, root=context.data_root, download=context.download, seed=seed)
    return _CACHE[key]


def clear_data_cache() -> None:
    _CACHE.clear()
