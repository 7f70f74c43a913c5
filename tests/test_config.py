import dataclasses

import pytest

from common import config


@dataclasses.dataclass
class ModelOptions:
    filters: int = 8
    names: tuple = ("a",)


@dataclasses.dataclass
class ExampleConfig(config.BaseConfig):
    model: ModelOptions = dataclasses.field(default_factory=ModelOptions)


PRESETS = {"smoke": {"train.epochs": 1, "model.filters": 4}, "default": {}}


def test_preset_applies_overrides_on_defaults():
    cfg = config.from_preset(ExampleConfig, PRESETS, "smoke")
    assert cfg.train.epochs == 1 and cfg.model.filters == 4 and cfg.preset == "smoke"
    assert config.from_preset(ExampleConfig, PRESETS, "default").model.filters == 8


def test_unknown_preset_names_the_choices():
    with pytest.raises(config.ConfigError, match="unknown preset 'huge'.*default, smoke"):
        config.from_preset(ExampleConfig, PRESETS, "huge")


def test_string_overrides_are_converted_to_field_types():
    cfg = ExampleConfig()
    config.apply_overrides(cfg, ["train.epochs=7", "train.learning_rate=3e-4",
                                 "run.xla=true", "run.max_test_examples=none",
                                 "model.names=x,y"])
    assert cfg.train.epochs == 7 and cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.run.xla is True and cfg.run.max_test_examples is None
    assert cfg.model.names == ("x", "y")


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", r"unknown config key 'train.epoch'.*known: epochs"),
    ("modle.filters=3", r"unknown config key 'modle.filters'"),
    ("train.epochs=three", r"train.epochs: expected int, got 'three'"),
    ("run.xla=maybe", r"run.xla: expected true/false"),
    ("train=3", r"is a section"),
    ("epochs", r"expected KEY=VALUE"),
])
def test_bad_overrides_name_the_key_and_the_expectation(override, message):
    with pytest.raises(config.ConfigError, match=message):
        config.apply_overrides(ExampleConfig(), [override])


def test_config_round_trips_through_json():
    cfg = config.from_preset(ExampleConfig, PRESETS, "smoke")
    assert '"filters": 4' in cfg.to_json()
