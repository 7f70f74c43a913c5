import numpy as np
import pytest

from common import config
from tasks.tts import PRESETS, Config, inference, text
from tasks.tts import model as tts_model


def _cfg(**overrides):
    cfg = config.from_preset(Config, PRESETS, "smoke")
    config.apply_overrides(cfg, {"model.max_text_length": 24, "model.max_decoder_steps": 12,
                                 **overrides})
    return cfg


@pytest.fixture(scope="module")
def trained_free_model():
    """A random smoke-sized model without pre-net dropout (deterministic) and its parts."""
    cfg = _cfg(**{"model.prenet_dropout": 0.0})
    model = tts_model.build_model(cfg)
    return cfg, model, tts_model.edge_model(model, cfg)


def _raw(edge):
    from common import artifacts
    return {key: artifacts.keras_raw_fn(part) for key, part in edge.items()}


def test_attention_ignores_padding_and_sums_to_one(trained_free_model):
    cfg, _, edge = trained_free_model
    synthesizer = inference.Synthesizer(_raw(edge), cfg)
    encoded = synthesizer.encode(text.encode("a cat."))
    length = len(text.encode("a cat."))
    assert encoded["mask"][0].sum() == length
    # padded encoder outputs are zero, so padding carries nothing into the context
    assert np.abs(encoded["memory"][0, length:]).max() == 0
    _, _, alignment = synthesizer.decode(encoded, teacher_mel=np.zeros((9, 80), np.float32))
    assert alignment.shape == (3, cfg.model.max_text_length)
    assert np.abs(alignment[:, length:]).max() < 1e-6
    np.testing.assert_allclose(alignment.sum(axis=1), 1.0, atol=1e-4)


def test_edge_parts_reproduce_the_teacher_forced_training_model(trained_free_model):
    cfg, model, edge = trained_free_model
    ids = np.asarray(text.encode("the dog ran."), np.int32)
    padded = np.zeros((1, cfg.model.max_text_length), np.int32)
    padded[0, :len(ids)] = ids
    rng = np.random.default_rng(0)
    frames = 10 * cfg.model.reduction
    mel = rng.uniform(-4, 0, (1, frames, 80)).astype(np.float32)
    expected = model({"text": padded, "teacher_mel": mel}, training=False)
    result = inference.Synthesizer(_raw(edge), cfg).synthesize(ids, teacher_mel=mel[0])
    np.testing.assert_allclose(result["mel"], np.asarray(expected["mel"])[0], atol=2e-4)
    # The post-net's 5 convolutions (kernel 5) see 10 frames either side: the
    # edge pads the end with silence, the training graph with zeros, so only
    # frames more than 10 from the end must agree.
    inner = frames - 2 * cfg.model.postnet_layers - 1
    np.testing.assert_allclose(result["mel_postnet"][:inner],
                               np.asarray(expected["mel_postnet"])[0, :inner], atol=2e-4)
    stop = 1 / (1 + np.exp(-np.asarray(expected["stop"])[0]))
    np.testing.assert_allclose(result["stop"], stop, atol=1e-4)
    np.testing.assert_allclose(result["alignment"],
                               np.asarray(expected["alignment"])[0, :, :len(ids)], atol=1e-4)


def _fake_parts(cfg, stop_at=None):
    """Raw functions shaped like the real parts; the stop logit turns high at `stop_at`."""
    m = cfg.model
    calls = []

    def encode(inputs):
        mask = (inputs["text"] > 0).astype(np.float32)
        width = m.max_text_length
        return [np.zeros((1, width, 2 * m.encoder_lstm_units), np.float32),
                np.zeros((1, width, m.attention_dim), np.float32), mask]

    def decode_step(inputs):
        calls.append(inputs["frame"].copy())
        step = len(calls) - 1
        frames = np.full((1, m.reduction * 80), float(step), np.float32)
        stop = np.array([[10.0 if stop_at is not None and step >= stop_at else -10.0]])
        states = [inputs[name] for name in inference.STATE_NAMES]
        return [frames, stop] + states

    def postnet(inputs):
        return inputs["mel"]
    return {"encode": encode, "decode_step": decode_step, "postnet": postnet}, calls


def test_free_running_stops_at_the_stop_token_or_the_step_budget():
    cfg = _cfg()
    parts, calls = _fake_parts(cfg, stop_at=4)
    result = inference.Synthesizer(parts, cfg).synthesize(text.encode("hello"))
    assert len(calls) == 5 and len(result["mel"]) == 5 * cfg.model.reduction
    # each step is fed the last frame the previous step predicted (a silent go frame first)
    assert calls[0].max() == -5.0 and calls[3].max() == 2.0
    parts, calls = _fake_parts(cfg, stop_at=None)
    result = inference.Synthesizer(parts, cfg).synthesize(text.encode("hello"))
    assert len(calls) == cfg.model.max_decoder_steps


def test_text_longer_than_the_encoder_is_refused():
    cfg = _cfg()
    parts, _ = _fake_parts(cfg)
    with pytest.raises(text.TextTooLongError, match="at most 24"):
        inference.Synthesizer(parts, cfg).encode(text.encode("x" * 30))


def test_guided_attention_loss_prefers_the_diagonal():
    from tasks.tts.data import guide_weights
    guide = guide_weights(np.array([8]), np.array([8]), 8, 8, 0.2).numpy()
    diagonal = np.eye(8, dtype=np.float32)[None]
    anti = np.eye(8, dtype=np.float32)[::-1][None]
    on = float(np.asarray(tts_model.guided_attention_loss(guide, diagonal)).mean())
    off = float(np.asarray(tts_model.guided_attention_loss(guide, anti)).mean())
    assert on < 0.01 and off > 0.5


def test_weight_only_file_keeps_float_activations_and_the_models_answers(
        trained_free_model, tmp_path):
    from common import export, litert

    cfg, _, edge = trained_free_model
    path = str(tmp_path / "weight_only.tflite")
    report = export.convert_to_tflite(edge, path, None, weight_only=True)
    assert report["weight_only"]
    # int8 weights, float compute: no quantized activations anywhere.
    assert report["ops"].get("DEQUANTIZE/int8") or report["ops"].get("FULLY_CONNECTED/float32")
    assert not [op for op in report["ops"] if op.endswith("/int8") and op.split("/")[0]
                in ("FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL")]
    ids = np.asarray(text.encode("the dog ran."), np.int32)
    mel = np.random.default_rng(0).uniform(-4, 0, (6 * cfg.model.reduction, 80))
    expected = inference.Synthesizer(_raw(edge), cfg).synthesize(ids, teacher_mel=mel)
    got = inference.Synthesizer(litert.load(path), cfg).synthesize(ids, teacher_mel=mel)
    # 8-bit weights move the frames a little, far less than the mel scale (-5..0).
    assert np.abs(got["mel_postnet"] - expected["mel_postnet"]).max() < 0.05
    assert np.abs(got["mel_postnet"] - expected["mel_postnet"]).max() > 0  # really quantized


def test_init_starts_from_an_earlier_runs_weights_or_names_the_mismatch(tmp_path):
    from common.errors import UserError

    earlier = tts_model.build_model(_cfg(**{"run.seed": 1}))
    run = tmp_path / "earlier_run"
    run.mkdir()
    earlier.save(run / "model.keras")
    fresh = tts_model.build_model(_cfg(**{"run.seed": 2}))
    assert not np.array_equal(fresh.get_weights()[0], earlier.get_weights()[0])
    # The run folder (or its model.keras): every weight is the earlier run's.
    started = tts_model.build_model(_cfg(**{"run.seed": 2, "model.init": str(run)}))
    for mine, theirs in zip(started.get_weights(), earlier.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(UserError, match=r"weight .*embedding.* has shape .*same model sizes"):
        tts_model.build_model(_cfg(**{"model.embedding_dim": 48,
                                      "model.init": str(run / "model.keras")}))
    with pytest.raises(UserError, match=r"--init .*missing.*no such file"):
        tts_model.build_model(_cfg(**{"model.init": str(tmp_path / "missing")}))
