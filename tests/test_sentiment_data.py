"""Sentiment data loaders: built-in corpus, CSV / TSV files, GLUE SST-2, and
the batched token-id splits."""

import numpy as np
import pytest
import tensorflow as tf

from common import config as config_lib
from common.errors import DataError, UserError
from tasks.sentiment import PRESETS, Config, build_datasets, corpus, data


def smoke_config(**overrides):
    cfg = config_lib.from_preset(Config, PRESETS, "smoke")
    config_lib.apply_overrides(cfg, overrides)
    return cfg


def load(path, **overrides):
    return data.load_table_splits(str(path), smoke_config(**overrides))


def all_rows(splits):
    return splits.train + splits.val + splits.test


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# --- built-in corpus --------------------------------------------------------

def test_corpus_is_deterministic_disjoint_and_balanced():
    first = corpus.splits(600, 100, 200, seed=5)
    assert first == corpus.splits(600, 100, 200, seed=5)
    assert first != corpus.splits(600, 100, 200, seed=6)
    train, val, test = first
    assert (len(train), len(val), len(test)) == (600, 100, 200)
    train_texts = {text for text, _ in train}
    assert not train_texts & {text for text, _ in val + test}
    share = np.mean([label for _, label in train])
    assert 0.4 < share < 0.6


def test_corpus_needs_word_order():
    """The same words with opposite labels: what a bag of words cannot see."""
    examples = dict(corpus.generate(3000, seed=0))
    negated = [text for text in examples if " not " in f" {text} "]
    contrast = [text for text in examples if " but " in text]
    assert len(negated) > 300 and len(contrast) > 300
    labels = {examples[text] for text in negated}
    assert labels == {0, 1}


# --- CSV / TSV --------------------------------------------------------------

def test_csv_with_label_names_quotes_and_three_classes(tmp_path):
    rows = ["text,label"]
    for index in range(30):
        rows.append(f'"great, really great {index}",positive')
        rows.append(f'"awful ""bad"" film {index}",negative')
        rows.append(f'"it was\nfine {index}",neutral')
    splits = load(write(tmp_path, "reviews.csv", "\n".join(rows) + "\n"))
    assert splits.classes == ["negative", "neutral", "positive"]
    texts = dict(all_rows(splits))
    assert len(texts) == 90
    assert texts["great, really great 0"] == 2
    assert texts['awful "bad" film 0'] == 0
    assert texts["it was\nfine 0"] == 1
    assert len(splits.val) == 9 and len(splits.test) == 9


def test_tsv_and_semicolon_delimiters_are_detected(tmp_path):
    body = "".join(f"good {i}\t1\nbad {i}\t0\n" for i in range(20))
    tsv = load(write(tmp_path, "data.tsv", "sentence\tlabel\n" + body))
    assert tsv.classes == ["0", "1"] and len(all_rows(tsv)) == 40
    semicolon = body.replace("\t", ";")
    csv_splits = load(write(tmp_path, "data.csv", "review;sentiment\n" + semicolon))
    assert len(all_rows(csv_splits)) == 40
    assert dict(all_rows(csv_splits))["good 3"] == 1


def test_integer_labels_can_be_named(tmp_path):
    body = "".join(f"good {i},1\nbad {i},0\n" for i in range(20))
    path = write(tmp_path, "data.csv", "text,label\n" + body)
    splits = load(path, **{"data.classes": "negative,positive"})
    assert splits.classes == ["negative", "positive"]
    assert dict(all_rows(splits))["good 1"] == 1


def test_missing_column_names_the_columns_found(tmp_path):
    path = write(tmp_path, "data.csv", "comment,label\nnice,1\n")
    with pytest.raises(DataError, match=r"no text column .*\['comment', 'label'\]"):
        load(path)
    with pytest.raises(DataError, match="no label column"):
        load(path, **{"data.text_column": "comment", "data.label_column": "stars"})
    assert len(all_rows(load(write(tmp_path, "ok.csv", "comment,label\n" + "nice,1\nbad,0\n" * 10),
                             **{"data.text_column": "comment"}))) == 20


def test_wrong_delimiter_is_explained(tmp_path):
    path = write(tmp_path, "data.csv", "text|label\nnice|1\n")
    with pytest.raises(DataError, match="delimiter"):
        load(path, **{"data.delimiter": ","})


def test_bad_rows_raise_or_are_skipped_and_counted(tmp_path):
    rows = ["text,label"] + [f"good {i},pos\nbad {i},neg" for i in range(10)]
    rows += ['  ,pos', "fine,", "too,many,fields"]
    path = write(tmp_path, "data.csv", "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="line 22: empty text"):
        load(path)
    splits = load(path, **{"run.skip_bad": True})
    assert len(splits.skipped) == 3
    assert len(all_rows(splits)) == 20


def test_unknown_label_against_the_configured_classes(tmp_path):
    body = "text,label\n" + "good,positive\nbad,negative\n" * 10 + "meh,postive\n"
    path = write(tmp_path, "data.csv", body)
    with pytest.raises(DataError, match="line 22: unknown label 'postive'; expected "
                                        "one of negative, positive"):
        load(path, **{"data.classes": "negative,positive"})


def test_non_utf8_bytes_name_the_line_and_another_encoding_reads_them(tmp_path):
    text = "text,label\n" + "good,1\nbad,0\n" * 10 + "caf\xe9 cr\xe8me,1\n"
    path = write(tmp_path, "latin.csv", text, encoding="latin-1")
    with pytest.raises(DataError, match=r"line 22 is not valid utf-8 \(byte 0xe9"):
        load(path)
    splits = load(path, **{"data.encoding": "latin-1"})
    assert dict(all_rows(splits))["café crème"] == 1


def test_empty_missing_and_mixed_files(tmp_path):
    with pytest.raises(DataError, match="file is empty"):
        load(write(tmp_path, "empty.csv", ""))
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "absent.csv")
    mixed = write(tmp_path, "mixed.csv", "text,label\n" + "a,1\nb,good\n" * 5)
    with pytest.raises(DataError, match="mix integers and names"):
        load(mixed)


def test_folder_with_train_dev_test_files(tmp_path):
    write(tmp_path, "train.tsv", "sentence\tlabel\n" + "good\t1\nbad\t0\n" * 20)
    write(tmp_path, "dev.tsv", "sentence\tlabel\n" + "fine\t1\nugly\t0\n" * 3)
    write(tmp_path, "test.tsv", "sentence\tlabel\n" + "nice\t1\nawful\t0\n" * 4)
    splits = load(tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 6, 8)


# --- GLUE SST-2 through TFDS --------------------------------------------------

def test_sst2_fields_are_mapped_and_validation_becomes_test(monkeypatch):
    """SST-2 has no supervised keys; its test labels are hidden (-1)."""
    def fake_tfds_load(name, split, **kwargs):
        assert name == "glue/sst2"
        count = 50 if split == "train" else 10
        return tf.data.Dataset.from_tensor_slices({
            "sentence": [f"{split} sentence {i}" for i in range(count)],
            "label": np.arange(count) % 2,
            "idx": np.arange(count, dtype=np.int32)})

    monkeypatch.setattr(data.common_data, "tfds_load", fake_tfds_load)
    splits = data.load_text_splits(smoke_config(**{"data.source": "glue/sst2"}))
    assert splits.classes == ["negative", "positive"]
    assert len(splits.test) == 10 and all(t.startswith("validation") for t, _ in splits.test)
    assert len(splits.train) + len(splits.val) == 50
    assert all(t.startswith("train") for t, _ in splits.train + splits.val)


def test_unreachable_source_is_a_clear_error():
    with pytest.raises(UserError, match="expected 'synthetic', 'glue/sst2'"):
        data.load_text_splits(smoke_config(**{"data.source": "imdb-somewhere"}))


# --- tokenised splits -----------------------------------------------------------

def test_build_datasets_gives_fixed_shape_token_ids(tmp_path):
    cfg = smoke_config(**{"run.out": str(tmp_path)})
    splits = build_datasets(cfg)
    token_ids, labels = next(iter(splits.train))
    assert token_ids.shape == (cfg.train.batch_size, cfg.model.sequence_length)
    assert token_ids.dtype == tf.int32 and labels.dtype == tf.int32
    info = splits.info
    assert info["classes"] == ["negative", "positive"] and info["num_classes"] == 2
    assert info["vocabulary"][0] == "[PAD]" and len(info["vocabulary"]) <= 400
    assert sum(1 for _ in splits.test.unbatch()) == cfg.data.num_test
    assert any("majority-class baseline" in note for note in info["notes"])


def test_long_texts_are_truncated_and_counted(tmp_path):
    long_text = "good " * 5000
    body = "text,label\n" + "good film,1\nbad film,0\n" * 20 + f"{long_text},1\n"
    path = write(tmp_path, "long.csv", body)
    splits = build_datasets(smoke_config(**{"data.source": str(path)}))
    assert splits.info["truncated"] == 1
    rows = np.concatenate([ids.numpy() for split in (splits.train, splits.val, splits.test)
                           for ids, _ in split])
    assert (rows[:, -1] != 0).sum() == 1  # the long text fills every place


def test_skipped_rows_reach_the_splits_and_too_many_stop_the_run(tmp_path):
    good = "".join(f"good film {i},1\nbad film {i},0\n" for i in range(20))
    path = write(tmp_path, "rows.csv", "text,label\n" + good + " ,1\n")
    splits = build_datasets(smoke_config(**{"data.source": str(path), "run.skip_bad": True}))
    assert splits.skipped == 1  # the count the report shows
    assert splits.notes and any("skipped 1 bad rows" in note for note in splits.notes)
    # 10 bad rows of 50: more than the default 10% share.
    path = write(tmp_path, "rows.csv", "text,label\n" + good + " ,1\n" * 10)
    with pytest.raises(DataError, match=r"skipped 10 of 50 samples \(20%\), more than "
                                        r"data.max_skipped_fraction=0.1"):
        build_datasets(smoke_config(**{"data.source": str(path), "run.skip_bad": True}))
