"""Sentiment data: the built-in reviews, GLUE SST-2 from TFDS, CSV / TSV files.

Every source gives lists of (text, label index) for train / val / test plus
the class names; `build_datasets` then fixes the WordPiece vocabulary,
tokenises everything once (core TF ops, the same tokenizer the SavedModel
serves with) and returns batched `(token_ids, label)` datasets.

Bad input (see `read_table`): a missing column, an empty text, an unknown or
empty label, a row with the wrong number of fields, a field over the size
limit, or bytes that are not valid in `data.encoding` each raise `DataError`
naming the file and line; with `--skip-bad` (run.skip_bad) bad rows are
skipped and counted instead. Texts longer than the model's sequence length
are truncated (their end is dropped) and counted in `info["truncated"]`.
"""

import csv
import io
import os

import numpy as np
import tensorflow as tf

from common import data as common_data
from common.errors import DataError, UserError
from common.wordpiece import WordPieceTokenizer, build_vocabulary, read_vocabulary
from tasks.sentiment import checkpoint, corpus

VOCABULARY_FILE = "vocabulary.txt"
# Post-training INT8 still needs pad-free calibration text: without QAT's
# masking inside the trained score range, padding widens the score scale.
CALIBRATION_NOTE = (
    "INT8 calibration uses training text packed without [PAD] "
    "(see model.representative_dataset).")
TEXT_COLUMNS = ("text", "sentence", "review", "content")
LABEL_COLUMNS = ("label", "sentiment", "class", "target")
DELIMITERS = (",", "\t", ";", "|")
TABLE_EXTENSIONS = (".csv", ".tsv", ".txt")
# A text is cut to this many characters per token of the tokenizer's length
# (the length probe's, 256, when reading data) before tokenising: enough for
# any real word, and a 10 MB cell costs no more than a long one.
CHARS_PER_TOKEN = 20
# Python's csv module refuses fields over 128 KiB by default; allow long
# reviews but still catch a file whose quoting swallowed everything.
MAX_FIELD_CHARS = 1 << 22


class TextSplits:
    """Raw train / val / test lists of (text, label index) and class names."""

    def __init__(self, train, val, test, classes, skipped=None, source=""):
        self.train, self.val, self.test = train, val, test
        self.classes = list(classes)
        self.skipped = list(skipped or [])
        self.source = source


# --- CSV / TSV --------------------------------------------------------------

def _decode(raw, path, encoding):
    """Bytes -> text, or a DataError naming the line of the first bad byte."""
    try:
        return raw.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8")
                          else encoding)
    except LookupError:
        raise UserError(f"data.encoding: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid {encoding} (byte "
            f"0x{raw[error.start]:02x} at offset {error.start}); re-save the "
            "file as UTF-8 or pass --set data.encoding=latin-1 (or cp1252)"
        ) from None


def _detect_delimiter(path, header_line, configured):
    if configured:
        return "\t" if configured in ("\\t", "tab") else configured
    if path.lower().endswith(".tsv"):
        return "\t"
    # The delimiter that splits the header into the most fields; a header
    # with one column is reported by the column check below.
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _find_column(header, configured, candidates, kind, path, delimiter):
    lowered = [name.strip().lower() for name in header]
    if configured:
        if configured.strip().lower() in lowered:
            return lowered.index(configured.strip().lower())
        wanted = [configured]
    else:
        for name in candidates:
            if name in lowered:
                return lowered.index(name)
        wanted = list(candidates)
    shown = "tab" if delimiter == "\t" else repr(delimiter)
    raise DataError(
        f"{path}: no {kind} column (looked for {', '.join(wanted)}); the header "
        f"split on {shown} gives columns {header}; name it with "
        f"--set data.{kind}_column=NAME, or set data.delimiter if the file uses "
        "another delimiter")


def read_table(path, cfg, counter):
    """A CSV / TSV file -> [(text, raw label string, line number)].

    The file needs a header row naming a text and a label column. Fields that
    contain the delimiter, quotes or newlines must be double-quoted (RFC 4180
    quoting, as spreadsheets write it).
    """
    raw = common_data.read_file_bytes(path, "a CSV / TSV file")
    text = _decode(raw, path, cfg.data.encoding)
    if not text.strip():
        raise DataError(f"{path}: the file is empty (expected a header row "
                        "with text and label columns)")
    delimiter = _detect_delimiter(path, text.splitlines()[0], cfg.data.delimiter)
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        quotechar='"', doublequote=True, strict=False)
    try:
        header = next(reader)
    except csv.Error as error:
        raise DataError(f"{path}: cannot read the header row ({error})") from None
    text_index = _find_column(header, cfg.data.text_column, TEXT_COLUMNS,
                              "text", path, delimiter)
    label_index = _find_column(header, cfg.data.label_column, LABEL_COLUMNS,
                               "label", path, delimiter)
    rows = []
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise DataError(
                f"{path}: line {line}: {error} (check the quoting: a field "
                "with the delimiter, a quote or a newline must be in double "
                "quotes, and quotes inside it doubled)") from None
        if not fields or all(not field.strip() for field in fields):
            continue  # blank line
        try:
            if len(fields) != len(header):
                raise DataError(
                    f"{path}: line {line} has {len(fields)} fields, expected "
                    f"{len(header)} like the header (check the delimiter and "
                    "quoting)")
            sample_text = fields[text_index].strip()
            label = fields[label_index].strip()
            if not sample_text:
                raise DataError(f"{path}: line {line}: empty text")
            if not label:
                raise DataError(f"{path}: line {line}: empty label")
        except DataError as error:
            counter.handle(error)
            continue
        rows.append((sample_text, label, line))
    if not rows:
        raise DataError(f"{path}: no usable rows after the header")
    return rows


def _class_names(rows_by_file, cfg):
    """Class names in index order: from data.classes, else from the labels."""
    if cfg.data.classes:
        return [name.strip() for name in cfg.data.classes.split(",") if name.strip()]
    labels = sorted({label for rows, _ in rows_by_file for _, label, _ in rows})
    if all(_is_integer(label) for label in labels):
        top = max(int(label) for label in labels)
        if min(int(label) for label in labels) < 0:
            source, line = next(
                (path, line) for rows, path in rows_by_file
                for _, label, line in rows if int(label) < 0)
            raise DataError(
                f"{source}: line {line}: negative label (class indices start "
                "at 0; unlabelled rows such as GLUE's test split cannot be "
                "used for training or scoring)")
        return [str(index) for index in range(top + 1)]
    if any(_is_integer(label) for label in labels):
        raise DataError(
            f"{rows_by_file[0][1]}: labels mix integers and names "
            f"({', '.join(labels[:6])}...); use one or the other, or list the "
            "names with --set data.classes=a,b,c")
    return labels


def _is_integer(label):
    return label.lstrip("-").isdigit()


def _label_index(label, classes, integer_labels, source, line):
    if integer_labels and _is_integer(label):
        index = int(label)
        if 0 <= index < len(classes):
            return index
    elif label in classes:
        return classes.index(label)
    expected = (f"0..{len(classes) - 1}" if integer_labels
                else ", ".join(classes))
    raise DataError(f"{source}: line {line}: unknown label {label!r}; "
                    f"expected one of {expected}")


def _to_examples(rows, path, classes, counter):
    integer_labels = all(_is_integer(label) for _, label, _ in rows)
    examples = []
    for text, label, line in rows:
        try:
            examples.append(
                (text, _label_index(label, classes, integer_labels, path, line)))
        except DataError as error:
            counter.handle(error)
    return examples


def _split_file_name(name):
    stem, extension = os.path.splitext(name.lower())
    if extension not in TABLE_EXTENSIONS:
        return None
    for split, stems in (("train", ("train",)),
                         ("val", ("val", "dev", "validation", "valid")),
                         ("test", ("test",))):
        if stem in stems:
            return split
    return None


def load_table_splits(path, cfg):
    """A CSV / TSV file, or a folder of train / val / test files."""
    counter = common_data.BadSampleCounter(cfg.run.skip_bad)
    if os.path.isdir(path):
        files = {}
        for name in sorted(os.listdir(path)):
            split = _split_file_name(name)
            if split and split not in files:
                files[split] = os.path.join(path, name)
        if "train" not in files:
            raise DataError(
                f"{path}: no train.csv / train.tsv in the folder (expected "
                "train.*, and optionally val.* / dev.* and test.*)")
    elif os.path.isfile(path):
        files = {"train": path}
    else:
        raise DataError(f"{path}: no such file or folder (expected a CSV / TSV "
                        "file, a folder of them, 'synthetic' or 'glue/sst2')")
    rows = {split: read_table(file, cfg, counter) for split, file in files.items()}
    classes = _class_names([(rows[s], files[s]) for s in rows], cfg)
    examples = {split: _to_examples(rows[split], files[split], classes, counter)
                for split in rows}
    train, val, test = _carve(examples["train"], examples.get("val"),
                              examples.get("test"), cfg)
    _check_classes(train, classes, path)
    return TextSplits(train, val, test, classes, counter.skipped, source=path)


def _carve(train, val, test, cfg):
    """Take missing validation / test sets out of the training rows,
    deterministically from the seed."""
    fractions = []
    if val is None:
        fractions.append(cfg.data.val_fraction)
    if test is None:
        fractions.append(cfg.data.test_fraction)
    if not fractions:
        return train, val, test
    parts = common_data.split_indices(
        len(train), fractions + [1.0 - sum(fractions)], cfg.run.seed)
    carved = [[train[i] for i in part] for part in parts]
    train_part = carved.pop()
    if val is None:
        val = carved.pop(0)
    if test is None:
        test = carved.pop(0)
    if not val or not test:
        raise DataError(
            f"{len(train)} rows are too few to carve validation and test sets "
            f"(fractions {cfg.data.val_fraction} / {cfg.data.test_fraction})")
    return train_part, val, test


def _check_classes(train, classes, source):
    if len(classes) < 2:
        raise DataError(f"{source}: found {len(classes)} class ({classes}); "
                        "a classifier needs at least two")
    present = {label for _, label in train}
    missing = [classes[i] for i in range(len(classes)) if i not in present]
    if missing:
        raise DataError(f"{source}: classes {missing} have no training rows")


# --- TFDS -------------------------------------------------------------------

def sst2_example(features):
    """GLUE SST-2 has no supervised keys: (sentence, label) from the dict."""
    return features["sentence"], features["label"]


def _tfds_rows(dataset, source):
    rows = []
    for text, label in dataset.as_numpy_iterator():
        rows.append((text.decode("utf-8", errors="replace").strip(), int(label)))
    if not rows:
        raise DataError(f"{source}: the split is empty")
    return rows


def load_sst2_splits(cfg, name="glue/sst2"):
    """SST-2's test labels are hidden (-1), so its validation split is our
    test split, and our validation split is carved from its training split."""
    import tensorflow_datasets as tfds

    train = common_data.tfds_load(name, "train").map(
        sst2_example, num_parallel_calls=tf.data.AUTOTUNE)
    test = common_data.tfds_load(name, "validation").map(
        sst2_example, num_parallel_calls=tf.data.AUTOTUNE)
    classes = tfds.builder(name).info.features["label"].names
    train_rows, test_rows = _tfds_rows(train, name), _tfds_rows(test, name)
    train_rows, val_rows, _ = _carve(train_rows, None, test_rows, cfg)
    return TextSplits(train_rows, val_rows, test_rows, classes, source=name)


# --- All sources ------------------------------------------------------------

def load_text_splits(cfg):
    source = cfg.data.source
    if source in ("", "synthetic", "builtin"):
        train, val, test = corpus.splits(cfg.data.num_train, cfg.data.num_val,
                                         cfg.data.num_test, cfg.run.seed)
        return TextSplits(train, val, test, corpus.LABELS, source="synthetic")
    if source == "glue/sst2":
        return load_sst2_splits(cfg)
    if os.path.exists(source) or source.lower().endswith(TABLE_EXTENSIONS):
        return load_table_splits(source, cfg)
    raise UserError(
        f"data source {source!r}: expected 'synthetic', 'glue/sst2', or a CSV / "
        "TSV file or folder that exists")


def vocabulary_for(cfg, train_texts):
    """The vocabulary and where it came from: `model.vocabulary` (a trained
    model's, so other data is tokenised as it was trained), the checkpoint's
    (`--init`), the teacher's (a student must tokenise as its teacher), or
    one learnt from the training text (deterministic)."""
    if cfg.model.vocabulary:
        return read_vocabulary(cfg.model.vocabulary), "model.vocabulary"
    if cfg.model.init:
        return read_vocabulary(init_vocabulary_path(cfg.model.init)), "init"
    if cfg.model.teacher:
        folder = os.path.dirname(os.path.abspath(cfg.model.teacher))
        path = os.path.join(folder, VOCABULARY_FILE)
        if not os.path.isfile(path):
            raise UserError(
                f"--teacher {cfg.model.teacher}: no {VOCABULARY_FILE} beside it; a "
                "student must tokenise exactly as its teacher did (pass the "
                "model.keras of a sentiment run folder)")
        return read_vocabulary(path), "teacher"
    return build_vocabulary(train_texts, cfg.model.vocabulary_size), "learnt"


def checkpoint_positions(init):
    """Positions the `--init` checkpoint's embedding holds (its config.json's
    max_sequence_length; 512, BERT's, when the file does not say)."""
    import json

    path = os.path.join(checkpoint.resolve(init), "config.json")
    try:
        with open(path) as handle:
            config = json.load(handle).get("config", {})
    except (OSError, ValueError):
        return 512
    return int(config.get("max_sequence_length", 512))


def init_vocabulary_path(init):
    """The vocabulary file of `--init` (a preset folder or a keras-hub preset
    name, see checkpoint.py)."""
    return checkpoint.vocabulary_path(init)


def tokenize_texts(tokenizer, texts, batch_size=512):
    """Texts -> (int32 ids [N, sequence_length], number truncated)."""
    limit = CHARS_PER_TOKEN * tokenizer.sequence_length
    chunks, truncated = [], 0
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        ids, cut = tokenizer.tokenize(tf.constant([t[:limit] for t in batch]))
        chunks.append(ids.numpy())
        truncated += int(np.sum(cut.numpy() | np.array([len(t) > limit for t in batch])))
    if not chunks:
        return np.zeros([0, tokenizer.sequence_length], np.int32), 0
    return np.concatenate(chunks).astype(np.int32), truncated


def finish_arrays(ids, labels, cfg):
    """An evaluation split (batched, in order) from arrays."""
    return _finish(ids, labels, cfg, training=False)


def _finish(ids, labels, cfg, training):
    dataset = tf.data.Dataset.from_tensor_slices((ids, np.asarray(labels, np.int32)))
    return common_data.finish(dataset, cfg.train.batch_size, training,
                              seed=cfg.run.seed, shuffle_buffer=max(len(labels), 1))


# --- Class weights and the data summary ---------------------------------------

def class_weights(option, train_counts, classes):
    """`train.class_weight` -> one loss weight per class ([] for none)."""
    option = option.strip()
    if not option or option.lower() == "none":
        return []
    counts = np.asarray(train_counts, np.float64)
    if option.lower() == "balanced":
        # scikit-learn's class_weight="balanced": examples / (classes * count).
        return [float(w) for w in counts.sum() / (len(counts) * np.maximum(counts, 1))]
    try:
        weights = [float(part) for part in option.split(",")]
    except ValueError:
        weights = None
    if weights is None or len(weights) != len(classes) or min(weights) <= 0:
        raise UserError(
            f"train.class_weight={option!r}: expected 'balanced', '' (none) or "
            f"{len(classes)} positive numbers, one per class in the order "
            f"{', '.join(classes)} (e.g. {','.join(['1'] * len(classes))})")
    return weights


# Texts are also tokenised up to this many pieces (or twice the sequence
# length) to measure their length; the model's own ids stop at
# model.sequence_length. Longer texts count as this long.
LENGTH_PROBE_TOKENS = 256


def token_lengths(vocabulary, texts, sequence_length=0):
    """Word pieces per text (without [CLS]/[SEP]), counted up to
    max(LENGTH_PROBE_TOKENS, 2 * sequence_length) - 2."""
    return tokenize_measured(WordPieceTokenizer(vocabulary, sequence_length or 3),
                             texts)[2]


def tokenize_measured(tokenizer, texts):
    """Texts -> (ids [N, tokenizer.sequence_length], number truncated, length
    of each text in pieces before truncation).

    One pass with a longer tokenizer: the ids are its first pieces, exactly
    what `tokenizer` gives (greedy WordPiece splits each word on its own, and
    truncation keeps the first pieces), so measuring costs no second pass."""
    long_ids, lengths = measure_texts(tokenizer, texts)
    ids, truncated = cut_measured(long_ids, lengths, tokenizer)
    return ids, truncated, lengths


def measure_texts(tokenizer, texts, probe_length=0):
    """Texts -> (ids of a probe tokenizer max(LENGTH_PROBE_TOKENS, 2 *
    sequence length, probe_length) long, length of each text in pieces)."""
    length = max(LENGTH_PROBE_TOKENS, 2 * tokenizer.sequence_length, probe_length)
    probe = WordPieceTokenizer(tokenizer.vocabulary, length, tokenizer.lowercase)
    long_ids, _ = tokenize_texts(probe, texts)
    return long_ids, np.sum(long_ids != probe.pad_id, axis=1) - 2


def cut_measured(long_ids, lengths, tokenizer):
    """A probe's ids (`measure_texts`) -> (`tokenizer`'s ids, number truncated):
    the first pieces, then [SEP], then [PAD]."""
    room = tokenizer.sequence_length - 2
    kept = np.minimum(lengths, room)
    ids = np.full((len(long_ids), tokenizer.sequence_length), tokenizer.pad_id, np.int32)
    ids[:, 0] = tokenizer.cls_id
    pieces = long_ids[:, 1:room + 1].astype(np.int32)
    ids[:, 1:room + 1] = np.where(np.arange(room)[None, :] < kept[:, None], pieces,
                                  tokenizer.pad_id)
    ids[np.arange(len(long_ids)), kept + 1] = tokenizer.sep_id
    return ids, int(np.sum(lengths > room))


# A sequence length that truncates at most this share of the training texts
# is long enough; otherwise the 95th percentile of their lengths is used.
TRUNCATION_TOLERANCE = 0.05


def choose_sequence_length(train_lengths, configured, maximum):
    """(tokens per text incl. [CLS]/[SEP], reason): `configured`, raised to
    hold 95% of the training texts whole (a multiple of 8) when more than
    TRUNCATION_TOLERANCE of them are cut, at most `maximum`. Longer sequences
    cost time (each step grows with the length), so it is never lowered."""
    room = configured - 2
    share = float(np.mean(np.asarray(train_lengths) > room)) if len(train_lengths) else 0.0
    described = (f"{100 * share:.0f}% of the training texts are longer than "
                 f"model.sequence_length={configured}")
    if share <= TRUNCATION_TOLERANCE:
        return configured, f"{described}: kept"
    if maximum <= configured:
        return configured, f"{described}: kept (data.max_sequence_length={maximum})"
    wanted = int(-(-(int(np.percentile(train_lengths, 95)) + 2) // 8) * 8)
    length = min(wanted, maximum)
    capped = f", capped at data.max_sequence_length={maximum}" if wanted > maximum else ""
    return length, (f"{described}: raised to {length} (the 95th percentile holds "
                    f"{wanted} tokens with [CLS] and [SEP]{capped})")


def split_summary(ids, labels, lengths, truncated, tokenizer, classes):
    """Examples per class, length in tokens, truncation and [UNK] rate."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))
    special = np.isin(ids, [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id])
    pieces = int(np.sum(~special))
    return {
        "examples": len(labels),
        "per_class": {name: int(count) for name, count in zip(classes, counts)},
        "tokens_median": float(np.median(lengths)) if len(lengths) else 0.0,
        "tokens_p95": float(np.percentile(lengths, 95)) if len(lengths) else 0.0,
        "tokens_max": int(np.max(lengths)) if len(lengths) else 0,
        "truncated": int(truncated),
        "unknown_token_rate": float(np.sum(ids == tokenizer.unk_id) / max(pieces, 1)),
    }


def _training_budget(cfg, train_examples):
    """Epochs and steps per epoch of the float stage; under `train.max_steps`
    (with no explicit train.steps_per_epoch) epochs are shortened and
    cfg.train.steps_per_epoch is written back for the fit."""
    from common import training

    steps = cfg.train.steps_per_epoch or train_examples // cfg.train.batch_size
    if not steps:
        return {}
    epochs = training.epochs_for_budget(cfg.train, steps)
    pretrain = cfg.model.pretrain_epochs if not cfg.model.init else 0
    budget = {"steps_per_epoch": int(steps), "epochs": epochs, "pretrain_epochs": pretrain}
    if cfg.train.max_steps > 0 and not cfg.train.steps_per_epoch and \
            (epochs + pretrain) * steps > cfg.train.max_steps:
        short = max(1, cfg.train.max_steps // (epochs + pretrain))
        cfg.train.steps_per_epoch = short
        budget["steps_per_epoch"] = short
        budget["reason"] = (
            f"{pretrain} + {epochs} epochs of {steps} steps exceed train.max_steps="
            f"{cfg.train.max_steps}: each epoch is {short} steps "
            f"({100 * short / steps:.0f}% of the training split)")
    return budget


def summary_notes(summary, cfg, classes):
    """Sentences for report.md (which prints notes, not data_summary)."""
    splits = summary["splits"]
    counts = "; ".join(
        f"{name} {part['examples']} ("
        + ", ".join(f"{label} {count}" for label, count in part["per_class"].items()) + ")"
        for name, part in splits.items())
    train = splits["train"]
    notes = [
        f"data: {counts}.",
        f"data: tokens per training text: median {train['tokens_median']:.0f}, 95th "
        f"percentile {train['tokens_p95']:.0f}, longest {train['tokens_max']}; "
        f"truncated at model.sequence_length={cfg.model.sequence_length}: "
        + ", ".join(f"{name} {part['truncated']}" for name, part in splits.items())
        + "; [UNK] share of test tokens "
        f"{100 * splits['test']['unknown_token_rate']:.1f}%.",
    ]
    derived = summary["derived"]
    if derived["sequence_length"]["value"] != derived["sequence_length"]["configured"]:
        notes.append(f"data: sequence length from the data: "
                     f"{derived['sequence_length']['reason']}.")
    if "suggested_sequence_length" in derived["sequence_length"]:
        notes.append(
            f"data: {100 * derived['sequence_length']['truncated_share']:.0f}% of the "
            "training texts are truncated; --set model.sequence_length="
            f"{derived['sequence_length']['suggested_sequence_length']} keeps 95% whole "
            "(slower).")
    if "reason" in derived["training"]:
        notes.append(f"data: training budget: {derived['training']['reason']}.")
    weights = derived["class_weights"]
    if weights["weights"]:
        notes.append(f"data: class weights in the loss ({weights['option']}): "
                     + ", ".join(f"{name} {value:.3g}"
                                 for name, value in zip(classes, weights["weights"])) + ".")
    elif weights["imbalance"] >= 3:
        notes.append(
            f"data: the largest class has {weights['imbalance']:.1f}x the training "
            "examples of the smallest; --set train.class_weight=balanced weighs "
            "them evenly in the loss.")
    return notes


def data_summary(texts, arrays, lengths, cut, tokenizer, cfg, vocabulary, origin,
                 weights, train_counts, length_choice):
    splits = {name: split_summary(arrays[name][0], arrays[name][1], lengths[name],
                                  cut[name], tokenizer, texts.classes)
              for name in ("train", "val", "test")}
    train_lengths = lengths["train"]
    room = cfg.model.sequence_length - 2
    truncated_share = float(np.mean(train_lengths > room)) if len(train_lengths) else 0.0
    configured, reason = length_choice
    sequence = {"value": cfg.model.sequence_length, "configured": configured,
                "reason": reason, "truncated_share": truncated_share}
    if truncated_share > 0.05:
        # A multiple of 8 that holds 95% of the training texts whole.
        wanted = int(np.percentile(train_lengths, 95)) + 2
        sequence["suggested_sequence_length"] = int(-(-wanted // 8) * 8)
    nonzero = [count for count in train_counts if count]
    return {
        "source": texts.source,
        "classes": texts.classes,
        "splits": splits,
        "skipped_rows": texts.skipped[:5],
        "derived": {
            "vocabulary": {"size": len(vocabulary), "origin": origin},
            "sequence_length": sequence,
            "class_weights": {"option": cfg.train.class_weight, "weights": weights,
                              "imbalance": float(max(nonzero) / min(nonzero))},
            "training": _training_budget(cfg, len(texts.train)),
        },
    }


def build_datasets(cfg):
    """Batched `(token_ids [batch, sequence_length] int32, label int32)`
    splits, `info` (classes, vocabulary, counts, class weights) and
    `summary` (examples per split and class, lengths in tokens, truncation,
    [UNK] rate, skipped rows, derived settings)."""
    texts = load_text_splits(cfg)
    # Every row read is either an example of a split or a skipped bad row.
    rows_read = len(texts.train) + len(texts.val) + len(texts.test) + len(texts.skipped)
    common_data.check_skipped_share(
        len(texts.skipped), rows_read, cfg.data.max_skipped_fraction, texts.source,
        texts.skipped[0] if texts.skipped else None)
    for name in ("train", "val", "test"):
        if not getattr(texts, name):
            raise DataError(f"{texts.source}: the {name} split is empty")
    vocabulary, origin = vocabulary_for(cfg, [text for text, _ in texts.train])
    configured = cfg.model.sequence_length
    maximum = cfg.data.max_sequence_length
    if cfg.model.vocabulary:
        maximum = 0  # a trained model's tokenisation: keep its length
    elif cfg.model.init:
        maximum = min(maximum, checkpoint_positions(cfg.model.init))
    # Each split is tokenised once, long enough for any length chosen below.
    probe = WordPieceTokenizer(vocabulary, max(configured, maximum))
    measured = {name: measure_texts(probe, [text for text, _ in getattr(texts, name)])
                for name in ("train", "val", "test")}
    length, reason = choose_sequence_length(measured["train"][1], configured, maximum)
    # Written back: the model, the exports and info.json read this length.
    cfg.model.sequence_length = length
    tokenizer = WordPieceTokenizer(vocabulary, length)
    arrays, cut, lengths = {}, {}, {}
    for name in ("train", "val", "test"):
        long_ids, lengths[name] = measured[name]
        ids, cut[name] = cut_measured(long_ids, lengths[name], tokenizer)
        arrays[name] = (ids, [label for _, label in getattr(texts, name)])
    truncated = sum(cut.values())
    train_counts = np.bincount(arrays["train"][1], minlength=len(texts.classes))
    weights = class_weights(cfg.train.class_weight, train_counts, texts.classes)
    test_labels = np.asarray(arrays["test"][1])
    majority = int(train_counts.argmax())
    summary = data_summary(texts, arrays, lengths, cut, tokenizer, cfg, vocabulary,
                           origin, weights, train_counts, (configured, reason))
    notes = [
        f"vocabulary: {len(vocabulary)} WordPiece tokens ({origin})",
        f"majority-class baseline: accuracy "
        f"{float(np.mean(test_labels == majority)):.4f} (always "
        f"{texts.classes[majority]!r})",
    ]
    notes.extend(summary_notes(summary, cfg, texts.classes))
    notes.append(CALIBRATION_NOTE)
    if texts.skipped:
        notes.append(f"skipped {len(texts.skipped)} bad rows (first: "
                     f"{texts.skipped[0]})")
        print(f"[sentiment] skipped {len(texts.skipped)} bad rows; first: "
              f"{texts.skipped[0]}")
    info = {
        "classes": texts.classes,
        "num_classes": len(texts.classes),
        "vocabulary": vocabulary,
        "vocabulary_origin": origin,
        "sequence_length": cfg.model.sequence_length,
        "lowercase": tokenizer.lowercase,
        "num_train": len(texts.train),
        "num_val": len(texts.val),
        "num_test": len(texts.test),
        "train_class_counts": train_counts.tolist(),
        "class_weights": weights,
        "truncated": truncated,
        "skipped": len(texts.skipped),
        "notes": notes,
    }
    return common_data.Splits(
        train=_finish(*arrays["train"], cfg, training=True),
        val=_finish(*arrays["val"], cfg, training=False),
        test=_finish(*arrays["test"], cfg, training=False),
        # Every training text in order: the training split drops its last
        # partial batch, a different one each pass (metrics.training_arrays).
        calibration=finish_arrays(*arrays["train"], cfg),
        info=info,
        notes=notes,
        skipped=len(texts.skipped),
        summary=summary,
    )
