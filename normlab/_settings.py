"""One check for settings given as a mapping (YAML configs, JSON files, keyword dicts) against
the fields of the dataclass they build."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

__all__ = ["known_settings"]


def known_settings(d: Any, cls: type, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """``d`` as a dict when it is a mapping whose keys are all fields of the dataclass ``cls``;
    otherwise ``error`` with one line naming the unknown keys (or the wrong type) and the known
    ones: "unknown {what} setting(s) a, b: expected some of x, y"."""
    label = f"{what} " if what else ""
    if not isinstance(d, Mapping):
        raise error(f"{label or 'the '}settings should be a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"unknown {label}setting(s) {', '.join(map(str, unknown))}: expected some of "
                    f"{', '.join(sorted(known))}")
    return dict(d)
