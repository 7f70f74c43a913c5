"""Translation data: the built-in English -> Spanish corpus, TFDS, local files.

Every source gives train / val / test lists of `Pair(source, target, origin)`
(`origin` names the file and line, for error messages); `build_datasets`
then fixes the WordPiece vocabulary (joint or per language), tokenises
everything once with the core-TF tokenizer the SavedModel serves with, and
returns batched `({"source_ids", "decoder_ids"}, labels)` datasets.

Local files (`--data PATH`):
- a TSV file: `source<TAB>target` per line, an optional header row
  (`source<TAB>target`, `src<TAB>tgt`, or two language codes such as
  `en<TAB>es`); validation and test are carved out by `data.val_fraction` /
  `data.test_fraction`;
- two aligned text files `--data SOURCE_FILE,TARGET_FILE`, one sentence per
  line.

Bad input raises `DataError` naming the file and line (with `--skip-bad` the
pair is skipped and counted): an empty line or an empty side, a TSV line
without exactly one TAB, text that is not UTF-8; two files with different
line counts always stop (nothing can be aligned). A sentence longer than the
model's maximum is truncated and counted (`model.too_long=truncate`) or
refused naming its line (`model.too_long=reject`).
"""

import collections
import json
import os

import numpy as np
import tensorflow as tf

from common import data as common_data
from common.errors import DataError, UserError
from common.wordpiece import (
    build_vocabulary,
    check_vocabulary,
    is_uncased,
    read_vocabulary,
)
from tasks.translation import corpus
from tasks.translation import text as text_lib

Pair = collections.namedtuple("Pair", "source target origin")

TFDS_SOURCES = ("ted_hrlr_translate/pt_to_en", "wmt14_translate/de-en")
HEADER_NAMES = {"source", "target", "src", "tgt", "input", "output"}
# A sentence is cut to this many characters per token of maximum length
# before tokenising: enough for any real word, and a 1 MB line costs no more
# than a normal one.
CHARS_PER_TOKEN = 20


class TextPairs:
    def __init__(self, train, val, test, skipped=(), source=""):
        self.train, self.val, self.test = list(train), list(val), list(test)
        self.skipped = list(skipped)
        self.source = source


# --- local files --------------------------------------------------------------

def _read_lines(path):
    """The lines of a UTF-8 text file, or a DataError naming the bad line."""
    raw = common_data.read_file_bytes(path, "a text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at "
            f"offset {error.start}); re-save the file as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [line.rstrip("\r") for line in lines]


def _is_header(fields):
    lowered = [field.strip().lower() for field in fields]
    return (all(name in HEADER_NAMES for name in lowered)
            or all(len(name) in (2, 3) and name.isalpha() for name in lowered))


def read_tsv(path, counter):
    """`source<TAB>target` lines -> [Pair]."""
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: the file is empty (expected source<TAB>target lines)")
    pairs = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("\t")
        if number == 1 and len(fields) == 2 and _is_header(fields):
            continue
        try:
            if not line.strip():
                raise DataError(f"{path}: line {number} is empty (expected "
                                "source<TAB>target)")
            if len(fields) != 2:
                raise DataError(
                    f"{path}: line {number} has {len(fields) - 1} TABs, expected exactly "
                    f"one between source and target: {line[:60]!r}")
            pair = Pair(fields[0].strip(), fields[1].strip(), f"{path}: line {number}")
            _check_sides(pair)
        except DataError as error:
            counter.handle(error)
            continue
        pairs.append(pair)
    return pairs


def _check_sides(pair):
    for side, value in (("source", pair.source), ("target", pair.target)):
        if not value:
            raise DataError(f"{pair.origin}: the {side} sentence is empty")


def read_aligned(source_path, target_path, counter):
    """Two files, line N of one translating line N of the other."""
    sources, targets = _read_lines(source_path), _read_lines(target_path)
    if len(sources) != len(targets):
        raise DataError(
            f"{source_path} has {len(sources)} lines but {target_path} has "
            f"{len(targets)}; aligned files need one translation per line")
    pairs = []
    for number, (source, target) in enumerate(zip(sources, targets), start=1):
        pair = Pair(source.strip(), target.strip(),
                    f"{source_path} / {target_path}: line {number}")
        try:
            _check_sides(pair)
        except DataError as error:
            counter.handle(error)
            continue
        pairs.append(pair)
    return pairs


def carve(pairs, cfg, source):
    """Validation and test sets taken out of one list, deterministically."""
    fractions = [cfg.data.val_fraction, cfg.data.test_fraction]
    parts = common_data.split_indices(len(pairs), fractions + [1.0 - sum(fractions)],
                                      cfg.run.seed)
    val, test, train = ([pairs[i] for i in part] for part in parts)
    if not val or not test or not train:
        raise DataError(
            f"{source}: {len(pairs)} pairs are too few to carve validation and test "
            f"sets (fractions {cfg.data.val_fraction} / {cfg.data.test_fraction})")
    return train, val, test


def load_local(cfg):
    source = cfg.data.source
    counter = common_data.BadSampleCounter(cfg.run.skip_bad)
    if "," in source and not os.path.exists(source):
        paths = [p.strip() for p in source.split(",")]
        if len(paths) != 2:
            raise UserError(f"--data {source}: expected SOURCE_FILE,TARGET_FILE")
        pairs = read_aligned(paths[0], paths[1], counter)
    else:
        pairs = read_tsv(source, counter)
    if not pairs:
        raise DataError(f"{source}: no usable sentence pairs")
    train, val, test = carve(pairs, cfg, source)
    return TextPairs(train, val, test, counter.skipped, source)


# --- TFDS ----------------------------------------------------------------------

def load_tfds(cfg):
    name = cfg.data.source

    def read(split, limit):
        dataset = common_data.tfds_load(name, split, as_supervised=True)
        if limit:
            dataset = dataset.take(limit)
        pairs = []
        for index, (source, target) in enumerate(dataset.as_numpy_iterator()):
            pairs.append(Pair(source.decode("utf-8", errors="replace").strip(),
                              target.decode("utf-8", errors="replace").strip(),
                              f"{name} {split} #{index}"))
        return [p for p in pairs if p.source and p.target]

    return TextPairs(read("train", cfg.data.max_train_pairs), read("validation", 0),
                     read("test", 0), source=name)


def load_pairs(cfg):
    source = cfg.data.source
    if source in ("", "synthetic", "builtin"):
        train, val, test = corpus.splits(cfg.data.num_train, cfg.data.num_val,
                                         cfg.data.num_test, cfg.run.seed)

        def wrap(rows, split):
            return [Pair(s, t, f"built-in {split} #{i}") for i, (s, t) in enumerate(rows)]
        return TextPairs(wrap(train, "train"), wrap(val, "val"), wrap(test, "test"),
                         source="synthetic")
    if source in TFDS_SOURCES:
        return load_tfds(cfg)
    if os.path.exists(source) or "," in source or source.lower().endswith((".tsv", ".txt")):
        return load_local(cfg)
    raise UserError(
        f"data source {source!r}: expected 'synthetic', one of {', '.join(TFDS_SOURCES)}, "
        "a TSV file (source<TAB>target) or SOURCE_FILE,TARGET_FILE")


# --- vocabulary and tokens -----------------------------------------------------

def _vocabulary_file(path, key):
    """A vocabulary file (one token per line), or the `key` list of a
    translation run's info.json."""
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as handle:
                vocabulary = json.load(handle).get(key)
        except (OSError, ValueError, AttributeError) as error:
            raise DataError(f"{path}: cannot read a run's info.json ({error})") from None
        if not isinstance(vocabulary, list):
            raise DataError(f"{path}: has no {key!r} list (not a translation run's info.json)")
        check_vocabulary(vocabulary, path)
        return vocabulary
    return read_vocabulary(path)


def vocabularies(cfg, train):
    """(source vocabulary, target vocabulary, origin)."""
    options = cfg.model
    if options.shared_embeddings and not options.joint_vocabulary:
        raise UserError("model.shared_embeddings needs model.joint_vocabulary (one "
                        "embedding matrix needs one vocabulary)")
    if options.source_vocabulary:
        source = _vocabulary_file(options.source_vocabulary, "source_vocabulary")
        target = _vocabulary_file(options.target_vocabulary or options.source_vocabulary,
                                  "target_vocabulary")
        return source, target, "model.source_vocabulary"
    sources = [p.source for p in train]
    targets = [p.target for p in train]
    if options.joint_vocabulary:
        joint = build_vocabulary(sources + targets, options.vocabulary_size)
        return joint, joint, "learnt jointly"
    return (build_vocabulary(sources, options.vocabulary_size),
            build_vocabulary(targets, options.vocabulary_size), "learnt per language")


def tokenize(tokenizer, texts, batch_size=512):
    """Texts -> (int32 ids [N, length], truncated flags [N])."""
    limit = CHARS_PER_TOKEN * tokenizer.sequence_length
    # One trace for any batch size (each trace of the tokenizer costs about
    # half a CPU-second; batches of every split's size would retrace it).
    function = tokenizer.tokenize.get_concrete_function(tf.TensorSpec([None], tf.string))
    chunks, flags = [], []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        ids, cut = function(tf.constant([t[:limit] for t in batch], tf.string))
        chunks.append(ids.numpy())
        flags.append(cut.numpy() | np.array([len(t) > limit for t in batch]))
    if not chunks:
        return np.zeros([0, tokenizer.sequence_length], np.int32), np.zeros([0], bool)
    return np.concatenate(chunks).astype(np.int32), np.concatenate(flags)


def encode_pairs(pairs, source_tokenizer, target_tokenizer, cfg):
    """Pairs -> (source ids, decoder ids, labels, number truncated)."""
    source_ids, source_cut = tokenize(source_tokenizer, [p.source for p in pairs])
    target_ids, target_cut = tokenize(target_tokenizer, [p.target for p in pairs])
    cut = source_cut | target_cut
    if cfg.model.too_long == "reject" and cut.any():
        first = pairs[int(np.argmax(cut))]
        raise DataError(
            f"{first.origin}: the sentence pair is longer than the model's "
            f"{cfg.model.max_source_length} source / {cfg.model.max_target_length} target "
            f"tokens ({int(cut.sum())} such pairs); raise model.max_source_length / "
            "model.max_target_length, or set model.too_long=truncate")
    if cfg.model.too_long not in ("reject", "truncate"):
        raise UserError(f"model.too_long={cfg.model.too_long!r}: expected truncate or reject")
    # A truncated target lost its [SEP]: the model learns to stop at the limit.
    return source_ids, target_ids[:, :-1], target_ids[:, 1:], int(cut.sum())


def _finish(arrays, cfg, training):
    source_ids, decoder_ids, labels, _ = arrays
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"source_ids": source_ids, "decoder_ids": decoder_ids}, labels))
    return common_data.finish(dataset, cfg.train.batch_size, training, seed=cfg.run.seed,
                              shuffle_buffer=max(len(labels), 1))


def build_datasets(cfg):
    pairs = load_pairs(cfg)
    rows_read = len(pairs.train) + len(pairs.val) + len(pairs.test) + len(pairs.skipped)
    common_data.check_skipped_share(len(pairs.skipped), rows_read,
                                    cfg.data.max_skipped_fraction, pairs.source,
                                    pairs.skipped[0] if pairs.skipped else None)
    for name in ("train", "val", "test"):
        if not getattr(pairs, name):
            raise DataError(f"{pairs.source}: the {name} split is empty")
    source_vocabulary, target_vocabulary, origin = vocabularies(cfg, pairs.train)
    info = {
        "source_vocabulary": source_vocabulary,
        "target_vocabulary": target_vocabulary,
        "vocabulary_origin": origin,
        "lowercase": is_uncased(source_vocabulary) and is_uncased(target_vocabulary),
        "max_source_length": cfg.model.max_source_length,
        "max_target_length": cfg.model.max_target_length,
    }
    source_tokenizer, target_tokenizer = text_lib.tokenizers(info, cfg)
    arrays = {name: encode_pairs(getattr(pairs, name), source_tokenizer, target_tokenizer,
                                 cfg) for name in ("train", "val", "test")}
    truncated = {name: arrays[name][3] for name in arrays}
    notes = [(f"vocabulary: {len(source_vocabulary)} source / {len(target_vocabulary)} "
              f"target WordPiece tokens ({origin})"),
             ("BLEU / chrF compare detokenized text: the reference goes through the same "
              "tokenizer (lowercased when the vocabulary is, cut at the maximum length).")]
    if sum(truncated.values()):
        notes.append(f"{sum(truncated.values())} sentence pairs were longer than "
                     f"{cfg.model.max_source_length} / {cfg.model.max_target_length} tokens "
                     f"and were truncated ({truncated})")
    if pairs.skipped:
        notes.append(f"skipped {len(pairs.skipped)} bad pairs (first: {pairs.skipped[0]})")
        print(f"[translation] skipped {len(pairs.skipped)} bad pairs; first: "
              f"{pairs.skipped[0]}")
    info.update({
        "num_train": len(pairs.train), "num_val": len(pairs.val),
        "num_test": len(pairs.test), "truncated": truncated,
        "skipped": len(pairs.skipped), "notes": notes,
        "source_words_mean": float(np.mean([len(p.source.split()) for p in pairs.train])),
    })
    summary = {"pairs": {"train": len(pairs.train), "val": len(pairs.val),
                         "test": len(pairs.test)},
               "truncated": truncated,
               "source_words_mean": info["source_words_mean"]}
    calibration = tf.data.Dataset.from_tensor_slices(
        ({"source_ids": arrays["train"][0], "decoder_ids": arrays["train"][1]},
         arrays["train"][2])).batch(cfg.train.batch_size)
    return common_data.Splits(
        train=_finish(arrays["train"], cfg, training=True),
        val=_finish(arrays["val"], cfg, training=False),
        test=_finish(arrays["test"], cfg, training=False),
        info=info, notes=notes, skipped=len(pairs.skipped), summary=summary,
        calibration=calibration)
