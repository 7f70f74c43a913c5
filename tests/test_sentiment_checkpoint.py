"""`--init`: a keras-hub preset by name (local kagglehub cache, download when
online, a fast clear error offline) or a preset folder. No test touches the
network: the offline case points the download host at a `.invalid` name,
which never resolves (RFC 6761)."""

import os
import time

import keras_hub
import numpy as np
import pytest

from common import config as config_lib
from common.errors import UserError
from tasks.sentiment import PRESETS, Config, checkpoint, data
from tasks.sentiment import model as model_lib

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was",
              "good", "bad", "not", "."]
INFO = {"vocabulary": VOCABULARY, "num_classes": 2, "classes": ["negative", "positive"]}
NAME = "bert_tiny_en_uncased"


def tiny_config(**overrides):
    cfg = config_lib.from_preset(Config, PRESETS, "smoke")
    for key, value in overrides.items():
        config_lib.set_value(cfg, key, value)
    return cfg


def save_tiny_preset(folder):
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32)
    backbone.save_to_preset(folder)
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY).save_to_preset(folder)
    return backbone


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "kagglehub"
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    return cache


def test_a_preset_name_loads_from_the_kagglehub_cache_without_network(
        empty_cache, monkeypatch):
    import kagglehub

    handle = checkpoint.bert_presets()[NAME]
    assert handle.startswith("keras/bert/keras/bert_tiny_en_uncased/")
    # Where kagglehub.model_download leaves it, as copied from another machine.
    folder = str(empty_cache.joinpath("models", *handle.split("/")))
    backbone = save_tiny_preset(folder)

    def no_download(*args, **kwargs):
        raise AssertionError("a cached preset must not be downloaded")
    monkeypatch.setattr(kagglehub, "model_download", no_download)
    monkeypatch.setattr(checkpoint, "unreachable_reason", no_download)
    assert checkpoint.resolve(NAME) == folder
    cfg = tiny_config(**{"model.init": NAME})
    assert data.vocabulary_for(cfg, []) == (VOCABULARY, "init")
    loaded = model_lib.backbone_of(model_lib.build_model(cfg, INFO))
    for ours, theirs in zip(loaded.get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_another_cached_version_of_the_preset_serves(empty_cache):
    handle = checkpoint.bert_presets()[NAME]
    variant = empty_cache.joinpath("models", *handle.split("/")[:-1])
    save_tiny_preset(str(variant / "1"))
    assert checkpoint.resolve(NAME) == str(variant / "1")


def test_offline_without_the_preset_fails_fast_saying_how_to_fetch_it(
        empty_cache, monkeypatch):
    import kagglehub

    monkeypatch.setattr(checkpoint, "DOWNLOAD_URL", "https://kaggle.invalid")

    def no_download(*args, **kwargs):
        raise AssertionError("offline: kagglehub must not be called")
    monkeypatch.setattr(kagglehub, "model_download", no_download)
    handle = checkpoint.bert_presets()[NAME]
    start = time.monotonic()
    with pytest.raises(UserError) as raised:
        model_lib.build_model(tiny_config(**{"model.init": NAME}), INFO)
    assert time.monotonic() - start < checkpoint.REACH_TIMEOUT_SECONDS + 2
    message = str(raised.value)
    assert f"--init {NAME}: the preset is not in the local kagglehub cache" in message
    assert "https://kaggle.invalid cannot be reached" in message
    assert f"kagglehub.model_download('{handle}')" in message
    assert os.path.join(str(empty_cache), "models", *handle.split("/")) in message
    assert "--init /path/to/that/folder" in message


def test_unknown_names_and_incomplete_folders_are_explained(tmp_path):
    with pytest.raises(UserError, match="not a keras-hub BERT preset name.*bert_base_en"):
        checkpoint.resolve("bert_nano_en")
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(UserError, match="missing model.weights.h5"):
        checkpoint.resolve(str(folder))
