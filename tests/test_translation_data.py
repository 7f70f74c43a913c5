"""Translation data: the built-in corpus's grammar, local files and their bad
lines, length limits, and the WordPiece tokenizer (core TF) against
keras-hub's."""

import numpy as np
import pytest
import tensorflow as tf

from common import config as config_lib
from common.errors import DataError
from common.wordpiece import (
    WordPieceTokenizer,
    build_vocabulary,
    read_vocabulary,
    write_vocabulary,
)
from tasks.translation import PRESETS, Config, corpus, data, text


def _cfg(**overrides):
    cfg = config_lib.from_preset(Config, PRESETS, "smoke")
    config_lib.apply_overrides(cfg, overrides)
    return cfg


# --- the built-in corpus -------------------------------------------------------

def test_corpus_rules_agreement_order_numbers_dates():
    assert corpus.number_words(21, "f") == "veintiuna"
    assert corpus.number_words(21, "m") == "veintiún"
    assert corpus.number_words(31, "m") == "treinta y un"
    assert corpus.number_words(31) == "treinta y uno"
    assert corpus.number_words(16) == "dieciséis"
    assert corpus.plural("flor") == "flores" and corpus.plural("lápiz") == "lápices"
    assert corpus.plural("jardín") == "jardines" and corpus.plural("casa") == "casas"
    assert corpus.adjective_form("rojo", "f", "pl") == "rojas"
    assert corpus.adjective_form("azul", "f", "pl") == "azules"
    assert corpus.conjugate("vivir", 3) == "vivimos" and corpus.conjugate("tener", 0) == "tengo"
    assert corpus.personal_a("el niño alto") == "al niño alto"


def test_corpus_is_deterministic_distinct_and_splits_are_disjoint():
    train, val, test = corpus.splits(2000, 100, 200, seed=3)
    assert (train, val, test) == corpus.splits(2000, 100, 200, seed=3)
    sources = [s for s, _ in train + val + test]
    assert len(set(sources)) == len(sources) == 2300
    assert not {s for s, _ in test} & {s for s, _ in train}
    # Real structure: sentences differ in length, questions and negation
    # change the Spanish order and punctuation, dates are written out.
    lengths = {len(s.split()) for s in sources}
    assert max(lengths) - min(lengths) >= 6
    pairs = dict(train)
    assert any(t.startswith("¿") for t in pairs.values())
    assert any(" no " in f" {t}" for t in pairs.values())
    assert any(" de " in t and any(m in t for _, m in corpus.MONTHS) for t in pairs.values())
    assert not any(ch.isdigit() for t in pairs.values() for ch in t)


# --- local files ---------------------------------------------------------------

def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def _lines(count):
    return [f"sentence number {i} .\tfrase número {i} ." for i in range(count)]


def test_tsv_with_header_is_read_and_carved(tmp_path):
    path = _write(tmp_path / "pairs.tsv", "en\tes\n" + "\n".join(_lines(200)) + "\n")
    pairs = data.load_pairs(_cfg(**{"data.source": path}))
    assert len(pairs.train) + len(pairs.val) + len(pairs.test) == 200
    assert pairs.train[0].source.startswith("sentence number")
    assert pairs.train[0].origin.startswith(path + ": line ")


@pytest.mark.parametrize("bad, message", [
    ("only a source sentence", "line 3 has 0 TABs, expected exactly one"),
    ("a\tb\tc", "line 3 has 2 TABs"),
    ("", "line 3 is empty"),
    ("source\t ", "line 3: the target sentence is empty"),
])
def test_bad_tsv_lines_name_the_file_and_line_or_are_skipped(tmp_path, bad, message):
    lines = _lines(2) + [bad] + _lines(60)[2:]
    path = _write(tmp_path / "bad.tsv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message) as error:
        data.load_pairs(_cfg(**{"data.source": path}))
    assert path in str(error.value)
    cfg = _cfg(**{"data.source": path})
    cfg.run.skip_bad = True
    pairs = data.load_pairs(cfg)
    assert len(pairs.skipped) == 1 and message.split(":")[-1].strip() in pairs.skipped[0]
    assert len(pairs.train) + len(pairs.val) + len(pairs.test) == 60


def test_not_utf8_and_mismatched_files_are_refused(tmp_path):
    path = _write(tmp_path / "latin.tsv", b"a\tb\n" + "caf\xe9\tcafé\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.tsv: line 2 is not valid UTF-8"):
        data.load_pairs(_cfg(**{"data.source": path}))
    source = _write(tmp_path / "train.en", "one\ntwo\nthree\n")
    target = _write(tmp_path / "train.es", "uno\ndos\n")
    with pytest.raises(DataError, match=r"train.en has 3 lines but .*train.es has 2"):
        data.load_pairs(_cfg(**{"data.source": f"{source},{target}"}))


def test_aligned_files_and_too_long_sentences(tmp_path):
    count = 120
    source = _write(tmp_path / "a.en", "\n".join(f"word {i} ." for i in range(count - 1))
                    + "\n" + " ".join(["long"] * 60) + "\n")
    target = _write(tmp_path / "a.es", "\n".join(f"palabra {i} ." for i in range(count)) + "\n")
    cfg = _cfg(**{"data.source": f"{source},{target}", "data.val_fraction": 0.0,
                  "data.test_fraction": 0.0})
    pairs = data.read_aligned(source, target, data.common_data.BadSampleCounter(False))
    assert len(pairs) == count and pairs[-1].origin.endswith("line 120")
    vocabulary = build_vocabulary([p.source for p in pairs] + [p.target for p in pairs], 200)
    info = {"source_vocabulary": vocabulary, "target_vocabulary": vocabulary,
            "lowercase": True}
    source_tokenizer, target_tokenizer = text.tokenizers(info, cfg)
    *_, truncated = data.encode_pairs(pairs, source_tokenizer, target_tokenizer, cfg)
    assert truncated == 1
    cfg.model.too_long = "reject"
    with pytest.raises(DataError, match=r"a.es: line 120: the sentence pair is longer"):
        data.encode_pairs(pairs, source_tokenizer, target_tokenizer, cfg)


# --- tokenizer -----------------------------------------------------------------

def test_tokenizer_saved_and_loaded_agrees_with_keras_hub(tmp_path):
    import keras_hub

    train, _, test = corpus.splits(1500, 0, 200, seed=1)
    texts = [s for s, _ in train] + [t for _, t in train]
    vocabulary = build_vocabulary(texts, 600)
    path = str(tmp_path / "vocabulary.txt")
    write_vocabulary(vocabulary, path)
    assert read_vocabulary(path) == vocabulary
    ours = WordPieceTokenizer(read_vocabulary(path), 40)
    # keras-hub's tokenizer (tensorflow-text ops) on the same vocabulary.
    theirs = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=True, strip_accents=False)
    sentences = [s for s, _ in test[:50]] + [t for _, t in test[:50]] + ["¿Dónde está?"]
    ids = ours(tf.constant(sentences)).numpy()
    for row, sentence in zip(ids, sentences):
        expected = [int(i) for i in np.asarray(theirs(sentence))]
        body = [int(i) for i in row if i not in (ours.pad_id,)][1:-1]  # [CLS] ... [SEP]
        assert body == expected, sentence
    # Detokenized, the text comes back (lowercased) for in-vocabulary words.
    spanish = [t for _, t in test[:20]]
    back = [text.ids_to_text(row, vocabulary)
            for row in ours(tf.constant(spanish)).numpy()]
    assert back == [t.lower() for t in spanish]
    graph = text.ids_to_text_graph(ours(tf.constant(spanish)), vocabulary,
                                   [vocabulary.index(t) for t in ("[PAD]", "[CLS]", "[SEP]")])
    assert [t.decode() for t in graph.numpy()] == back


def test_datasets_shift_the_target_for_teacher_forcing():
    cfg = _cfg(**{"data.num_train": 200, "data.num_val": 20, "data.num_test": 20,
                  "model.vocabulary_size": 300})
    splits = data.build_datasets(cfg)
    inputs, labels = next(iter(splits.test))
    decoder_ids, labels = np.asarray(inputs["decoder_ids"]), np.asarray(labels)
    vocabulary = splits.info["target_vocabulary"]
    assert (decoder_ids[:, 0] == vocabulary.index("[CLS]")).all()
    # [CLS] a b [SEP] [PAD]: decoder input [CLS] a b [SEP], labels a b [SEP] [PAD].
    np.testing.assert_array_equal(decoder_ids[:, 1:], labels[:, :-1])
    assert ((labels == vocabulary.index("[SEP]")).sum(axis=1) == 1).all()
    assert inputs["source_ids"].shape[1] == cfg.model.max_source_length
    assert splits.info["num_test"] == 20
