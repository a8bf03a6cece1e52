"""The one settings base of the config classes (normlab/_settings.py): loading, the unknown-key
message, presets, to_dict."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from normlab._settings import Settings


class ToyError(ValueError):
    pass


@dataclass(frozen=True)
class Toy(Settings):
    settings_error = ToyError
    settings_label = "toy"
    presets = {"small": {"size": 2, "shape": (1, 2)}, "file": "toy-preset.yaml"}

    size: int = 1
    shape: tuple[int, ...] = (3,)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ToyError(f"size={self.size} is invalid: expected a positive integer")

    @classmethod
    def from_settings(cls, d):
        if "shape" in d:
            d["shape"] = tuple(d["shape"])
        return cls(**d)


def test_from_dict_to_dict_round_trip_with_plain_lists():
    toy = Toy.from_dict({"size": 3, "shape": [4, 5]})
    assert toy == Toy(3, (4, 5))
    assert toy.to_dict() == {"size": 3, "shape": [4, 5]}          # tuples come out as lists
    assert Toy.from_dict(toy.to_dict()) == toy


def test_unknown_keys_and_non_mappings_are_one_line_naming_what_is_expected():
    with pytest.raises(ToyError) as err:
        Toy.from_dict({"sise": 3, "colour": 1})
    assert str(err.value) == "unknown toy setting(s) colour, sise: expected some of shape, size"
    with pytest.raises(ToyError, match="toy settings should be a mapping, got list"):
        Toy.from_dict([1])
    with pytest.raises(ToyError, match="size=0 is invalid"):               # the class's own check
        Toy.from_dict({"size": 0})


def test_presets_from_mappings_and_yaml_files(tmp_path, monkeypatch):
    import normlab._settings as settings

    small = Toy.preset("small", size=7)
    assert small == Toy(7, (1, 2))
    Toy.preset_settings("small")["size"] = 99                             # a copy: the preset is unchanged
    assert Toy.preset("small").size == 2
    (tmp_path / "toy-preset.yaml").write_text("size: 5\nshape: [6]\n")
    monkeypatch.setattr(settings, "CONFIGS", tmp_path)
    assert Toy.preset("file") == Toy(5, (6,))
    with pytest.raises(ToyError) as err:
        Toy.preset("huge")
    assert str(err.value) == "unknown preset 'huge': expected one of small, file"


def test_yaml_errors_are_the_class_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: [1\n")
    with pytest.raises(ToyError, match="malformed YAML in config"):
        Toy.from_yaml(bad)
    with pytest.raises(ToyError, match="it does not exist"):
        Toy.read_yaml(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text("size: 4\n")
    assert Toy.from_yaml(good) == Toy(4)


def test_the_config_classes_share_the_base():
    from normlab.bench.experiment import Experiment
    from normlab.models.nago import GeneratorParams
    from normlab.models.nas import SpaceConfig
    from normlab.nas.pipeline import ChainConfig, RetrainSettings, SearchSettings, ShrinkSettings
    from normlab.train import TrainConfig

    for cls in (Experiment, GeneratorParams, SpaceConfig, ChainConfig, RetrainSettings, SearchSettings,
                ShrinkSettings, TrainConfig):
        assert issubclass(cls, Settings), cls
        assert "from_dict" not in vars(cls) or cls in (GeneratorParams,), cls      # written once


def test_a_pydantic_model_reports_in_one_line():
    from normlab.bench.experiment import Experiment, ExperimentError

    with pytest.raises(ExperimentError, match="unknown setting 'colour'; valid settings: name, dataset"):
        Experiment.from_dict({"colour": 1})
    with pytest.raises(ExperimentError, match="experiment settings should be a mapping"):
        Experiment.from_dict([])
    quick = Experiment.preset("quick")
    assert quick.name == "quick" and Experiment.from_dict(quick.to_dict()) == quick
