"""The Transformer at a tiny size, untrained: masks (no attention to future
target tokens or to source padding), the cached decoder step against the
full teacher-forcing model, beam search against greedy on a known
distribution, and the BLEU wiring against sacrebleu."""

import keras
import numpy as np
import pytest
import sacrebleu

from common import config as config_lib
from common import qat
from tasks.translation import PRESETS, Config, decoding, metrics
from tasks.translation import model as model_lib

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(40)]
INFO = {"source_vocabulary": VOCABULARY, "target_vocabulary": VOCABULARY, "lowercase": True}


SMALL = {"model.encoder_layers": 2, "model.decoder_layers": 2,
         "model.max_source_length": 12, "model.max_target_length": 12}


def _cfg(**overrides):
    cfg = config_lib.from_preset(Config, PRESETS, "smoke")
    config_lib.apply_overrides(cfg, overrides)
    return cfg


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    cfg = _cfg(**SMALL)
    return cfg, model_lib.build_model(cfg, INFO)


def _batch(cfg, rng, batch=3, words=5):
    source = np.zeros((batch, cfg.model.max_source_length), np.int32)
    source[:, 0], source[:, words + 1] = 2, 3
    source[:, 1:words + 1] = rng.integers(5, len(VOCABULARY), (batch, words))
    decoder = rng.integers(5, len(VOCABULARY), (batch, cfg.model.max_target_length))
    decoder[:, 0] = 2
    return source, decoder.astype(np.int32)


def test_decoder_never_attends_to_future_tokens(tiny):
    cfg, model = tiny
    source, decoder = _batch(cfg, np.random.default_rng(1))
    logits = np.asarray(model({"source_ids": source, "decoder_ids": decoder}))
    changed = decoder.copy()
    changed[:, 7:] = np.random.default_rng(2).integers(5, len(VOCABULARY), changed[:, 7:].shape)
    changed_logits = np.asarray(model({"source_ids": source, "decoder_ids": changed}))
    np.testing.assert_allclose(changed_logits[:, :7], logits[:, :7], atol=1e-5)
    assert np.abs(changed_logits[:, 7:] - logits[:, 7:]).max() > 1e-3


def test_source_padding_is_never_attended(tiny):
    """The same sentence padded to 12 and to 8 source positions (a second
    model with the same weights) gives the same logits: padded positions,
    whose embeddings are not zero, take no part."""
    cfg, model = tiny
    short_cfg = _cfg(**dict(SMALL, **{"model.max_source_length": 8}))
    short = model_lib.build_model(short_cfg, INFO)
    short.set_weights(model.get_weights())
    source, decoder = _batch(cfg, np.random.default_rng(3))
    long_logits = np.asarray(model({"source_ids": source, "decoder_ids": decoder}))
    short_logits = np.asarray(short({"source_ids": source[:, :8], "decoder_ids": decoder}))
    np.testing.assert_allclose(short_logits, long_logits, atol=1e-4)


def test_cached_steps_equal_the_full_model_and_greedy_agrees(tiny):
    cfg, model = tiny
    source, decoder = _batch(cfg, np.random.default_rng(4))
    full = np.asarray(model({"source_ids": source, "decoder_ids": decoder}))
    parts = model_lib.edge_model(model, cfg)
    cross = np.asarray(parts["encode"](source)["cross_cache"])
    cache = np.zeros((3,) + model_lib.cache_shape(cfg, cfg.model.max_target_length), np.float32)
    for position in range(cfg.model.max_target_length):
        out = parts["decode_step"]({
            "token": decoder[:, position:position + 1],
            "index": np.full((3, 1), position, np.int32), "self_cache": cache,
            "cross_cache": cross, "source_ids": source})
        cache = np.asarray(out["self_cache"])
        np.testing.assert_allclose(np.asarray(out["logits"]), full[:, position], atol=1e-4)
    raw = {key: _numpy_fn(part) for key, part in parts.items()}
    cached, steps = decoding.EdgeDecoder(raw, cfg, INFO).decode(source, beam_size=1)
    uncached = decoding.greedy_without_cache(
        lambda inputs: model(inputs), source, INFO, cfg.model.max_target_length)
    np.testing.assert_array_equal(cached, uncached)
    assert steps <= cfg.model.max_target_length


def test_qat_ranges_each_embedding_call_and_its_step_matches_the_full_model(tiny):
    """The embedding layer is called twice (source, target): the QAT clone
    gives each call a range of its own name (common.qat.range_name), and the
    cached QAT decoder step, with the target's range, computes the QAT
    model's logits."""
    cfg, model = tiny
    quantized = qat.quantize_model(model)
    names = {layer.name for layer in quantized.layers}
    assert {"embedding_fq", "embedding_call1_fq"} <= names
    source, decoder = _batch(cfg, np.random.default_rng(5))
    quantized({"source_ids": source, "decoder_ids": decoder}, training=True)  # set ranges
    full = np.asarray(quantized({"source_ids": source, "decoder_ids": decoder}))
    parts = model_lib.edge_model(quantized, cfg)
    cross = np.asarray(parts["encode"](source)["cross_cache"])
    cache = np.zeros((3,) + model_lib.cache_shape(cfg, cfg.model.max_target_length), np.float32)
    for position in range(3):
        out = parts["decode_step"]({
            "token": decoder[:, position:position + 1],
            "index": np.full((3, 1), position, np.int32), "self_cache": cache,
            "cross_cache": cross, "source_ids": source})
        cache = np.asarray(out["self_cache"])
        # Equal up to fake-quant rounding flips (the two graphs sum in
        # different orders): measured mean 0.03-0.04 against a spread of
        # 0.85; a wrong mask or range moves logits by the spread.
        difference = np.abs(np.asarray(out["logits"]) - full[:, position])
        assert difference.mean() < 0.1 * np.std(full[:, position])


def _numpy_fn(part):
    return lambda inputs: keras.tree.map_structure(np.asarray, part(inputs))


def _fake_parts(cfg):
    """A decoder whose next-token distribution depends only on the last
    token: from [CLS], w0 0.6 / w1 0.4; after w0, w2 0.34 / [SEP] 0.33 /
    w1 0.33; after w1, [SEP] 0.99; after w2, [SEP]. Greedy takes
    "w0 w2" (0.6 * 0.34 = 0.204), the best sequence is "w1" (0.396)."""
    size = len(VOCABULARY)
    table = np.full((size, size), 1e-9)
    w0, w1, w2 = 5, 6, 7
    table[2, [w0, w1]] = [0.6, 0.4]
    table[w0, [w2, 3, w1]] = [0.34, 0.33, 0.33]
    table[w1, 3] = 0.99
    table[w2, 3] = 1.0
    table[[0, 3]] = 1e-9
    table[[0, 3], 0] = 1.0
    rows = cfg.model.max_source_length

    def encode(source_ids):
        shape = (len(source_ids),) + model_lib.cache_shape(cfg, rows)
        return {"cross_cache": np.zeros(shape, np.float32)}

    def step(inputs):
        return {"logits": np.log(table[inputs["token"][:, 0]]),
                "self_cache": inputs["self_cache"]}
    return {"encode": encode, "decode_step": step}


def test_beam_search_finds_the_sequence_greedy_misses():
    cfg = _cfg()
    decoder = decoding.EdgeDecoder(_fake_parts(cfg), cfg, INFO)
    source = np.zeros((2, cfg.model.max_source_length), np.int32)
    greedy, _ = decoder.decode(source, beam_size=1)
    beam, steps = decoder.decode(source, beam_size=2, length_penalty=0.0)
    assert [list(row[:3]) for row in greedy] == [[5, 7, 3]] * 2
    assert [list(row[:2]) for row in beam] == [[6, 3]] * 2
    assert (beam[:, 2:] == 0).all() and steps == 3  # stops once every beam has [SEP]
    empty, _ = decoder.decode(source[:0], beam_size=2)
    assert empty.shape == (0, cfg.model.max_target_length)


def test_bleu_chrf_and_exact_match_are_sacrebleu_on_the_text():
    references = ["el gato negro come.", "tengo veintitrés libros rojos.",
                  "¿lee ella el periódico?", "no la veo hoy."]
    hypotheses = ["el gato negro come.", "tengo veinte libros rojos.",
                  "¿lee ella un periódico?", "no lo veo hoy."]
    scores = metrics.corpus_scores(hypotheses, references)
    assert scores["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert scores["chrf"] == pytest.approx(
        sacrebleu.corpus_chrf(hypotheses, [references]).score)
    assert 0 < scores["bleu"] < 100 and scores["exact_match"] == 0.25
    assert metrics.corpus_scores(references, references)["bleu"] == pytest.approx(100.0)
    assert set(scores) >= {"bleu_words_1_5"} and "bleu_words_16_plus" not in scores
    with pytest.raises(ValueError, match="3 hypotheses for 4 references"):
        metrics.corpus_scores(hypotheses[:3], references)
