import dataclasses
import json

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


def test_preset_applies_overrides_on_defaults_and_leaves_the_rest():
    cfg = config.from_preset(ExampleConfig, PRESETS, "smoke")
    assert cfg.train.epochs == 1 and cfg.model.filters == 4 and cfg.preset == "smoke"
    # Every field the preset does not name keeps its dataclass default.
    expected = ExampleConfig()
    expected.train.epochs, expected.model.filters, expected.preset = 1, 4, "smoke"
    assert cfg == expected
    # Each call is a fresh config: changing one run's leaks into no other.
    cfg.model.filters, cfg.train.epochs = 99, 99
    again = config.from_preset(ExampleConfig, PRESETS, "smoke")
    assert (again.model.filters, again.train.epochs) == (4, 1)
    assert config.from_preset(ExampleConfig, PRESETS, "default") == ExampleConfig()
    # ... and applying a preset never edits the preset itself.
    assert PRESETS["smoke"] == {"train.epochs": 1, "model.filters": 4}


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
    config.apply_overrides(cfg, ["train.learning_rate=3e-4", "run.max_test_examples=none",
                                 "model.names=x,y", "run.xla=false"])
    saved = json.loads(cfg.to_json())

    def flatten(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                yield from flatten(f"{prefix}.{key}" if prefix else key, inner)
        else:
            yield prefix, value
    # JSON turns tuples into lists and keeps None: the types come back.
    loaded = config.apply_overrides(ExampleConfig(), dict(flatten("", saved)))
    assert loaded == cfg and loaded.model.names == ("x", "y")
    assert loaded.to_json() == cfg.to_json()
