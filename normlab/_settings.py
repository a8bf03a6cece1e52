"""The one settings base of normlab's config classes: load from a mapping or a YAML file, check
unknown keys in one line, presets, ``to_dict``.

A config class is a frozen dataclass (or a pydantic model) that subclasses :class:`Settings` and
names its error class and what its messages call it; validation of the values stays in the
class (``__post_init__`` or pydantic validators)::

    @dataclass(frozen=True)
    class SearchSettings(Settings):
        settings_error = NasError        # every message from the base is raised as this
        settings_label = "search"        # "unknown search setting(s) budjet: expected some of ..."
        presets = {"quick": {"budget": 30}, "paper": "nas-paper.yaml"}   # optional
        budget: int = 300

    SearchSettings.from_dict({"budget": 5}); SearchSettings.preset("quick", budget=7).to_dict()

This module sits at the bottom of the import contract (below ``normlab.layers``): it imports no
other normlab module at its top, so every layer may use it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

__all__ = ["Settings", "known_settings", "CONFIGS"]

#: the folder of the YAML presets every command ships (``normlab/configs``)
CONFIGS = Path(__file__).resolve().parent / "configs"

S = TypeVar("S", bound="Settings")


def setting_names(cls: type) -> list[str]:
    """The settings a config class takes: its dataclass fields, or its pydantic model fields."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return list(getattr(cls, "model_fields", {}))


def known_settings(d: Any, cls: type, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """``d`` as a dict when it is a mapping whose keys are all settings of ``cls``; otherwise
    ``error`` with one line naming the unknown keys (or the wrong type) and the known ones:
    "unknown {what} setting(s) a, b: expected some of x, y"."""
    label = f"{what} " if what else ""
    if not isinstance(d, Mapping):
        raise error(f"{label or 'the '}settings should be a mapping, got {type(d).__name__}")
    known = set(setting_names(cls))
    unknown = sorted(set(d) - known, key=str)
    if unknown:
        raise error(f"unknown {label}setting(s) {', '.join(map(str, unknown))}: expected some of "
                    f"{', '.join(sorted(known))}")
    return dict(d)


def plain(value: Any) -> Any:
    """Tuples as lists, all the way down (what YAML and JSON hold): ``to_dict``'s last step."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Settings:
    """The base of a config class: :meth:`from_dict`, :meth:`read_yaml`, :meth:`preset`,
    :meth:`to_dict`, written once.

    Class attributes a subclass sets:

    - ``settings_error``: the exception every message is raised as (a ``ValueError`` subclass);
    - ``settings_label``: what the messages call these settings ("training", "space", ...;
      "" for a top-level config);
    - ``presets``: preset name -> its settings (a mapping), or the name of a YAML file under
      ``normlab/configs`` that holds them (read when the preset is asked for).

    Hooks a subclass may override: :meth:`from_settings` (the checked mapping -> an instance:
    conversions such as list -> tuple, nested settings) and :meth:`to_dict` (calling the base's).
    """

    settings_error: ClassVar[type[Exception]] = ValueError
    settings_label: ClassVar[str] = ""
    presets: ClassVar[Mapping[str, Any]] = {}

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def setting_names(cls) -> list[str]:
        return setting_names(cls)

    @classmethod
    def check_settings(cls, d: Any) -> dict[str, Any]:
        """``d`` as a dict of known settings, or one line naming the unknown keys and the known ones."""
        return known_settings(d, cls, cls.settings_label, cls.settings_error)

    @classmethod
    def from_settings(cls: type[S], d: dict[str, Any]) -> S:
        """An instance from checked settings (hook: conversions before construction)."""
        return cls(**d)

    @classmethod
    def from_dict(cls: type[S], d: Any) -> S:
        """An instance from a mapping of settings; one line for an unknown key or a bad value."""
        if not dataclasses.is_dataclass(cls):        # a pydantic model checks its own keys
            return cls._from_pydantic(d)
        return cls.from_settings(cls.check_settings(d))

    @classmethod
    def _from_pydantic(cls: type[S], d: Any) -> S:
        from pydantic import ValidationError

        if not isinstance(d, Mapping):
            raise cls.settings_error(f"{cls.settings_label or 'the'} settings should be a mapping, got {type(d).__name__}")
        try:
            return cls(**d)
        except ValidationError as exc:
            raise cls.settings_error(cls._validation_line(exc)) from None
        except ValueError as exc:
            raise cls.settings_error(str(exc)) from None

    @classmethod
    def _validation_line(cls, exc: Any) -> str:
        """A pydantic ValidationError in one line: where, and what was wrong (or, for an unknown
        key, the valid settings)."""
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "experiment"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            return f"unknown setting '{where}'; valid settings: {', '.join(cls.setting_names())}"
        return f"{where}: {msg}" if where not in msg else msg

    @classmethod
    def read_yaml(cls, path: str | Path, what: str = "config") -> dict[str, Any]:
        """The mapping in a YAML file; a file that cannot be read, malformed YAML or anything but a
        mapping is one line (as ``settings_error``)."""
        from ._yaml import read_yaml_mapping

        try:
            return read_yaml_mapping(path, what)
        except cls.settings_error:
            raise
        except ValueError as exc:
            raise cls.settings_error(str(exc)) from None

    @classmethod
    def from_yaml(cls: type[S], path: str | Path, what: str = "config") -> S:
        return cls.from_dict(cls.read_yaml(path, what))

    # -- presets ---------------------------------------------------------------------------------

    @classmethod
    def preset_names(cls) -> list[str]:
        return list(cls.presets)

    @classmethod
    def preset_settings(cls, name: str) -> dict[str, Any]:
        """A preset's settings (a fresh copy: changing it changes no preset)."""
        names = cls.preset_names()
        if name not in names:
            raise cls.settings_error(f"unknown preset {name!r}: expected one of {', '.join(names)}")
        entry = cls.presets[name]
        if isinstance(entry, (str, Path)):
            return cls.read_yaml(CONFIGS / entry, "preset")
        return copy.deepcopy(dict(entry))

    @classmethod
    def preset(cls: type[S], name: str, **overrides: Any) -> S:
        """A preset, with ``overrides`` on top (each one a setting)."""
        return cls.from_dict({**cls.preset_settings(name), **overrides})

    # -- out -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data (lists for tuples), which :meth:`from_dict` reads back."""
        if dataclasses.is_dataclass(self):
            return plain(dataclasses.asdict(self))
        return self.model_dump()
