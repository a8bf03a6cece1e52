"""One reader for the YAML files users hand to any command (study, search and space configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["read_yaml_mapping"]


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in a YAML file (an empty file is {}); otherwise a one-line ValueError naming
    ``what`` ("config", "space file", ...), the file and the problem: it cannot be read (it does
    not exist), where the YAML breaks, or that it holds something other than a mapping."""
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        reason = "it does not exist" if not file.exists() else (exc.strerror or str(exc))
        raise ValueError(f"cannot read {what} {file}: {reason}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read {what} {file}: it is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                         f"at position {exc.start}); save it as UTF-8") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"malformed YAML in {what} {file}{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} {file} should hold a mapping of settings, got {type(loaded).__name__}")
    return loaded
