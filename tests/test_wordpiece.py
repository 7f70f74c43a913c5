"""The core-TF WordPiece tokenizer: same ids as keras-hub's tensorflow-text
tokenizer, BERT's special tokens, truncation and bad bytes."""

import numpy as np
import pytest
import tensorflow as tf

from common.errors import DataError
from tasks.sentiment import corpus
from common.wordpiece import (
    WordPieceTokenizer, build_vocabulary, read_vocabulary, write_vocabulary)


@pytest.fixture(scope="module")
def vocabulary():
    texts = [text for text, _ in corpus.generate(400, seed=3)]
    texts += ["Ünïcode CAFÉ déjà vu", "don't stop-believing... (really)", "naïve 你好吗"]
    return build_vocabulary(texts, 600)


def test_vocabulary_is_deterministic_and_starts_with_special_tokens(vocabulary):
    texts = [text for text, _ in corpus.generate(400, seed=3)]
    texts += ["Ünïcode CAFÉ déjà vu", "don't stop-believing... (really)", "naïve 你好吗"]
    assert build_vocabulary(texts, 600) == vocabulary
    assert vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_same_pieces_as_keras_hub_tensorflow_text_tokenizer(vocabulary):
    import keras_hub

    reference = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=True, strip_accents=False, oov_token="[UNK]")
    texts = [text for text, _ in corpus.generate(150, seed=11)] + [
        "Ünïcode CAFÉ!!", "don't stop-believing...", "a" * 150, "zzzqqq xx",
        "  tabs\tand\nnewlines  ", "¿qué? 你好", "naïve résumé", "emoji 🙂 here"]
    tokenizer = WordPieceTokenizer(vocabulary, sequence_length=200)
    ids = tokenizer(tf.constant(texts)).numpy()
    for text, row in zip(texts, ids):
        expected = np.asarray(reference(text)).tolist()
        length = int((row != 0).sum())
        assert row[0] == tokenizer.cls_id and row[length - 1] == tokenizer.sep_id
        assert row[1:length - 1].tolist() == expected, text


def test_special_tokens_padding_and_truncation():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "good",
                  "un", "##believ", "##able", "!"]
    tokenizer = WordPieceTokenizer(vocabulary, sequence_length=6)
    ids, truncated = tokenizer.tokenize(tf.constant(
        ["The GOOD!", "unbelievable", "the the the the the", ""]))
    assert tokenizer.decode(ids.numpy()[0]) == ["[CLS]", "the", "good", "!", "[SEP]"]
    assert tokenizer.decode(ids.numpy()[1]) == ["[CLS]", "un", "##believ", "##able", "[SEP]"]
    assert tokenizer.decode(ids.numpy()[2]) == ["[CLS]", "the", "the", "the", "the", "[SEP]"]
    assert tokenizer.decode(ids.numpy()[3]) == ["[CLS]", "[SEP]"]
    assert truncated.numpy().tolist() == [False, False, True, False]
    # Pieces, not only words, count: 2 words of 3 pieces each overflow 4 places.
    _, cut = tokenizer.tokenize(tf.constant(["unbelievable unbelievable"]))
    assert cut.numpy().tolist() == [True]


def test_unknown_words_and_invalid_utf8_bytes_become_unk():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "g", "##o"]
    tokenizer = WordPieceTokenizer(vocabulary, sequence_length=8, max_chars_per_word=10)
    ids = tokenizer(tf.constant([b"good \xff\xfe good", b"goooooooooooooo good", b"xyz"]))
    assert tokenizer.decode(ids.numpy()[0]) == ["[CLS]", "good", "[UNK]", "good", "[SEP]"]
    # Longer than max_chars_per_word: one [UNK], as in BERT.
    assert tokenizer.decode(ids.numpy()[1]) == ["[CLS]", "[UNK]", "good", "[SEP]"]
    assert tokenizer.decode(ids.numpy()[2]) == ["[CLS]", "[UNK]", "[SEP]"]


def test_vocabulary_files_round_trip_and_are_checked(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "word"]
    path = str(tmp_path / "vocabulary.txt")
    write_vocabulary(vocabulary, path)
    assert read_vocabulary(path) == vocabulary
    (tmp_path / "bad.txt").write_text("hello\nworld\n")
    with pytest.raises(DataError, match="lacks the special tokens"):
        read_vocabulary(str(tmp_path / "bad.txt"))
    with pytest.raises(DataError, match="not found"):
        read_vocabulary(str(tmp_path / "missing.txt"))
