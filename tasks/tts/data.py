"""Speech data: the built-in espeak-ng corpus, LJSpeech (TFDS) or an
LJSpeech-format folder, turned into length-bucketed Tacotron batches.

An LJSpeech-format folder holds `metadata.csv` (`id|text|normalized text`,
no header, `|`-separated, no quoting) and `wavs/<id>.wav`. A row whose WAV is
missing or unreadable is a DataError naming the row (or, with --skip-bad,
counted and skipped); a WAV at another sample rate is resampled to
`audio.sample_rate` (or rejected with `data.resample=false`).

Batches are `({"text", "teacher_mel"}, {"mel", "mel_postnet", "stop", "alignment"})`:
`teacher_mel` is the teacher-forcing input and `mel` the same frames as target; `alignment`'s target
is the guided-attention weight matrix, zero outside each example's lengths.
"""

import dataclasses
import os
import random

import numpy as np
import tensorflow as tf

from common import data as data_lib
from common.data import BadSampleCounter, Splits
from common.errors import DataError
from tasks.tts import audio as audio_lib
from tasks.tts import corpus
from tasks.tts import text as text_lib

# --- reading ------------------------------------------------------------------

def read_metadata(folder):
    """[(line number, id, text)] of `folder`/metadata.csv; malformed rows are
    DataErrors naming the line."""
    path = os.path.join(folder, "metadata.csv")
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder (expected an LJSpeech-format folder "
                        "with metadata.csv and wavs/)")
    if not os.path.exists(path):
        raise DataError(f"{folder}: no metadata.csv (expected rows `id|text|normalized "
                        "text` and WAV files in wavs/<id>.wav)")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) < 2 or not fields[0].strip():
                raise DataError(f"{path}:{number}: expected `id|text|normalized text`, "
                                f"got {line[:60]!r}")
            text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
            if not text.strip():
                raise DataError(f"{path}:{number}: row {fields[0]!r} has no text")
            rows.append((number, fields[0].strip(), text.strip()))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def load_folder(folder, audio, resample=True, counter=None, rows=None):
    """[{id, text, waveform}] of an LJSpeech-format folder and the number of
    files resampled."""
    counter = counter or BadSampleCounter(False)
    metadata = os.path.join(folder, "metadata.csv")
    examples, resampled = [], 0
    for number, name, text in rows if rows is not None else read_metadata(folder):
        try:
            path = data_lib.resolve_inside(os.path.join(folder, "wavs"), f"{name}.wav",
                                           f"{metadata}:{number}")
            try:
                waveform, rate = audio_lib.read_wav(path)
            except DataError as error:
                raise DataError(f"{metadata}:{number}: {error}") from None
            if rate != audio.sample_rate:
                if not resample:
                    raise DataError(
                        f"{metadata}:{number}: {path} is {rate} Hz; expected "
                        f"{audio.sample_rate} Hz (or set data.resample=true)")
                waveform = audio_lib.resample(waveform, rate, audio.sample_rate)
                resampled += 1
            examples.append({"id": name, "text": text, "waveform": waveform})
        except DataError as error:
            counter.handle(error)
    return examples, resampled


def load_tfds(cfg, count):
    """The first `count` LJSpeech utterances from TFDS (fails fast offline)."""
    dataset = data_lib.tfds_load("ljspeech", split="train")
    examples = []
    for item in dataset.take(count):
        waveform = item["speech"].numpy().astype(np.float32) / 32768.0
        examples.append({"id": str(len(examples)),
                         "text": item["text_normalized"].numpy().decode("utf-8"),
                         "waveform": audio_lib.resample(waveform, 22050,
                                                        cfg.audio.sample_rate)})
    return examples


# --- features and batches -------------------------------------------------------

def trim_silence(waveform, sample_rate, threshold=0.01, margin_seconds=0.05):
    """`waveform` without its leading and trailing silence (samples below
    `threshold`), keeping a short margin: silence costs decoder steps."""
    loud = np.flatnonzero(np.abs(waveform) > threshold)
    if loud.size == 0:
        return waveform
    margin = int(margin_seconds * sample_rate)
    return waveform[max(0, loud[0] - margin):loud[-1] + margin]


def features(example, cfg):
    """Symbol ids and log-mel frames (silence trimmed, padded with silence
    to a multiple of the reduction factor) of one example."""
    ids = np.asarray(text_lib.encode(example["text"], warn=False), np.int32)
    waveform = trim_silence(example["waveform"], cfg.audio.sample_rate)
    mel = audio_lib.log_mel(waveform, cfg.audio).numpy()
    r = cfg.model.reduction
    extra = (-len(mel)) % r
    if extra:
        mel = np.concatenate([mel, np.full([extra, mel.shape[1]], audio_lib.SILENCE,
                                           np.float32)])
    return ids, mel


def guide_weights(text_lengths, steps, text_width, step_width, sigma):
    """(B, step_width, text_width) guided-attention weights
    1 - exp(-(s/S - t/T)^2 / (2 sigma^2)), zero outside each example's
    S steps and T symbols: attention far from the diagonal costs more."""
    text_lengths = tf.cast(text_lengths, tf.float32)[:, None, None]
    steps = tf.cast(steps, tf.float32)[:, None, None]
    s = tf.range(step_width, dtype=tf.float32)[None, :, None]
    t = tf.range(text_width, dtype=tf.float32)[None, None, :]
    weights = 1.0 - tf.exp(-tf.square(s / steps - t / text_lengths) / (2.0 * sigma ** 2))
    inside = tf.logical_and(s < steps, t < text_lengths)
    return tf.where(inside, weights, 0.0)


def make_batch_fn(cfg):
    r, sigma = cfg.model.reduction, cfg.model.guided_attention_sigma

    def to_batch(ids, mel, text_length, frames):
        steps = frames // r
        step_width = tf.shape(mel)[1] // r
        stop = tf.cast(tf.range(step_width)[None, :] >= (steps[:, None] - 1), tf.float32)
        guide = guide_weights(text_length, steps, tf.shape(ids)[1], step_width, sigma)
        return ({"text": ids, "teacher_mel": mel},
                {"mel": mel, "mel_postnet": mel, "stop": stop, "alignment": guide})
    return to_batch


def _dataset(items, n_mels):
    def generator():
        for ids, mel in items:
            yield ids, mel, np.int32(len(ids)), np.int32(len(mel))
    return tf.data.Dataset.from_generator(generator, output_signature=(
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, n_mels], tf.float32),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)))


PADDING = (np.int32(0), np.float32(audio_lib.SILENCE), np.int32(0), np.int32(0))


def training_batches(items, cfg, seed=0):
    """Shuffled batches grouped by length (`data.bucket_boundaries`, mel
    frames), so short sentences are not padded to the longest."""
    boundaries = [int(b) for b in cfg.data.bucket_boundaries.split(",") if b.strip()]
    batch = cfg.train.batch_size
    dataset = _dataset(items, cfg.audio.n_mels).cache().shuffle(
        max(len(items), 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.bucket_by_sequence_length(
        lambda ids, mel, text_length, frames: frames, boundaries,
        [batch] * (len(boundaries) + 1), padding_values=PADDING, drop_remainder=False)
    return dataset.map(make_batch_fn(cfg), num_parallel_calls=data_lib.AUTOTUNE) \
        .prefetch(data_lib.AUTOTUNE)


def fixed_batches(items, cfg, text_width, frame_width):
    """Evaluation batches of one fixed shape, in the split's order."""
    dataset = _dataset(items, cfg.audio.n_mels).padded_batch(
        cfg.train.batch_size, padded_shapes=([text_width], [frame_width, cfg.audio.n_mels],
                                             [], []), padding_values=PADDING)
    return dataset.map(make_batch_fn(cfg)).cache().prefetch(data_lib.AUTOTUNE)


# --- splits -----------------------------------------------------------------------

def load_examples(cfg, counter):
    """(train, val, test example lists, notes, source description)."""
    source = cfg.data.source
    notes = []
    total = cfg.data.num_train + cfg.data.num_val + cfg.data.num_test
    if source == "synthetic":
        folder = _builtin_folder(cfg)
        examples, resampled = load_folder(folder, cfg.audio, True, counter)
        notes.append(f"data: the built-in corpus, {total} sentences spoken by espeak-ng "
                     f"(voice {cfg.data.voice}, {cfg.data.words_per_minute} words per "
                     f"minute), cached in {folder}.")
        n_train, n_val = cfg.data.num_train, cfg.data.num_val
        return (examples[:n_train], examples[n_train:n_train + n_val],
                examples[n_train + n_val:], notes)
    if source != "ljspeech":
        return _load_folder_splits(cfg, counter, notes)
    examples = load_tfds(cfg, total)
    random.Random(cfg.run.seed).shuffle(examples)
    n_test, n_val = _held_out_counts(len(examples), cfg.data)
    if len(examples) < n_test + n_val + 1:
        raise DataError(f"{source}: {len(examples)} usable utterances; need at least "
                        f"{n_test + n_val + 1} for train, validation and test")
    test, val, train = (examples[:n_test], examples[n_test:n_test + n_val],
                        examples[n_test + n_val:])
    return train[:cfg.data.num_train], val, test, notes


def _builtin_folder(cfg):
    """The built-in corpus's cached folder (generated on first use): the
    same one for the built-in run and for borrowing its voice."""
    total = cfg.data.num_train + cfg.data.num_val + cfg.data.num_test
    return corpus.builtin_corpus(total, cfg.data.voice, cfg.data.words_per_minute,
                                 cfg.data.cache_dir)


def _load_folder_splits(cfg, counter, notes):
    """A folder's splits: rows in a seeded order, the first ones held out
    (shares of the whole folder), then training rows read in order until
    data.num_train are usable, so a bad row skipped with --skip-bad is
    replaced by the next one. Only the WAVs read are loaded: a whole
    LJSpeech folder (13,100 utterances) is gigabytes of audio."""
    source = cfg.data.source
    rows = read_metadata(source)
    random.Random(cfg.run.seed).shuffle(rows)
    n_test, n_val = _held_out_counts(len(rows), cfg.data)
    resample = cfg.data.resample
    test, resampled_test = load_folder(source, cfg.audio, resample, counter, rows[:n_test])
    val, resampled_val = load_folder(source, cfg.audio, resample, counter,
                                     rows[n_test:n_test + n_val])
    train_rows, train, resampled = rows[n_test + n_val:], [], resampled_test + resampled_val
    read = 0
    while len(train) < cfg.data.num_train and read < len(train_rows):
        chunk = train_rows[read:read + cfg.data.num_train - len(train)]
        loaded, resampled_now = load_folder(source, cfg.audio, resample, counter, chunk)
        train.extend(loaded)
        resampled += resampled_now
        read += len(chunk)
    counter.check_share(n_test + n_val + read, cfg.data.max_skipped_fraction, source)
    if resampled:
        notes.append(f"data: {resampled} WAV files were resampled to "
                     f"{cfg.audio.sample_rate} Hz.")
    if read < len(train_rows):
        notes.append(f"data: {len(train)} of the folder's {len(train_rows)} training "
                     f"utterances are used (data.num_train={cfg.data.num_train}; raise "
                     "it to train on more).")
    for name, split in (("train", train), ("validation", val), ("test", test)):
        if not split:
            raise DataError(f"{source}: no usable utterance left for the {name} split "
                            f"({len(rows)} rows, {len(counter.skipped)} skipped as bad)")
    return train, val, test, notes


def _held_out_counts(count, data_config):
    """(test, validation) utterances of a folder or TFDS source of `count`:
    their shares of it, at least their minimums up to a tenth of it each."""
    def held_out(fraction, minimum):
        return max(1, round(count * fraction), min(minimum, count // 10))
    return (held_out(data_config.test_fraction, data_config.min_test),
            held_out(data_config.val_fraction, data_config.min_val))


# --- the built-in voice beside a small folder ----------------------------------------

def builtin_voice_plan(own_count, data_config):
    """(repeats of each of a folder's `own_count` training utterances,
    built-in sentences trained beside them). Tacotron learns to attend and
    to speak from a few hundred utterances poorly; below data.num_train the
    built-in corpus fills the training split up to data.num_train, marked
    as another voice, and the folder's utterances are repeated to make about
    data.builtin_voice_share of it. (1, 0): off, or the folder is large enough."""
    share, total = data_config.builtin_voice_share, data_config.num_train
    if share <= 0 or own_count >= total:
        return 1, 0
    repeats = max(1, round(share * total / own_count))
    return repeats, max(0, total - own_count * repeats)


def load_builtin_voice(cfg, count):
    """The first `count` training sentences of the built-in corpus."""
    folder = _builtin_folder(cfg)
    examples, _ = load_folder(folder, cfg.audio, True, None, read_metadata(folder)[:count])
    return examples


def mark_other_voice(ids):
    """`ids` with the other-voice marker in front."""
    return np.concatenate([[text_lib.SYMBOL_TO_ID[text_lib.OTHER_VOICE]], ids]).astype(np.int32)


def build_datasets(cfg):
    counter = BadSampleCounter(cfg.run.skip_bad)
    train, val, test, notes = load_examples(cfg, counter)
    is_folder = cfg.data.source not in ("synthetic", "ljspeech")
    repeats, borrowed = builtin_voice_plan(len(train), cfg.data) if is_folder else (1, 0)
    max_frames = cfg.model.max_decoder_steps * cfg.model.reduction
    featured, dropped = {}, {}
    splits_in = [("train", train), ("val", val), ("test", test)]
    if borrowed:
        splits_in.append(("builtin", load_builtin_voice(cfg, borrowed)))
    for name, examples in splits_in:
        kept, kept_examples = [], []
        for example in examples:
            try:
                ids, mel = features(example, cfg)
            except DataError as error:  # e.g. a WAV too short for one STFT frame
                counter.handle(DataError(f"{cfg.data.source}: utterance {example['id']!r}: "
                                         f"{error}"))
                continue
            if name == "builtin":
                ids = mark_other_voice(ids)
            if len(ids) > cfg.model.max_text_length or len(mel) > max_frames:
                dropped[name] = dropped.get(name, 0) + 1
                continue
            kept.append((ids, mel))
            kept_examples.append(example)
        if not kept:
            raise DataError(f"{cfg.data.source}: no {name} utterance fits the model "
                            f"(model.max_text_length={cfg.model.max_text_length}, "
                            f"model.max_decoder_steps={cfg.model.max_decoder_steps} x "
                            f"reduction {cfg.model.reduction})")
        featured[name] = (kept, kept_examples)
    if dropped:
        notes.append(f"data: utterances longer than the model's fixed shapes were left "
                     f"out: {dropped}.")
    builtin_items = featured.pop("builtin", ([], []))[0]
    train_items = featured["train"][0]
    if borrowed:
        notes.append(
            f"data: the folder's {len(train_items)} training utterances (each repeated "
            f"{repeats}x) were trained beside {len(builtin_items)} sentences of the "
            "built-in espeak-ng corpus, marked as another voice "
            f"(data.builtin_voice_share={cfg.data.builtin_voice_share}): attention and "
            "pronunciation learnt from more text; the model speaks in the folder's voice.")
    all_mels = np.concatenate([mel for _, mel in train_items])
    info = {
        "symbols": text_lib.SYMBOLS,
        "sample_rate": cfg.audio.sample_rate,
        "n_mels": cfg.audio.n_mels,
        # All of them: scoring and samples vocode with the run's settings.
        "audio": dataclasses.asdict(cfg.audio),
        "reduction": cfg.model.reduction,
        "max_text_length": cfg.model.max_text_length,
        "max_decoder_steps": cfg.model.max_decoder_steps,
        "mel_mean": all_mels.mean(axis=0).round(4).tolist(),
        "num_test": len(featured["test"][0]),
        "test_texts": [example["text"] for example in featured["test"][1]],
    }
    text_width = cfg.model.max_text_length

    def frame_width(items):
        return max(len(mel) for _, mel in items)

    val_width = max(frame_width(featured["val"][0]), frame_width(featured["test"][0]))
    splits = Splits(
        train=training_batches(train_items * repeats + builtin_items, cfg, cfg.run.seed),
        val=fixed_batches(featured["val"][0], cfg, text_width, val_width),
        test=fixed_batches(featured["test"][0], cfg, text_width, val_width),
        info=info, notes=notes, skipped=len(counter.skipped),
        summary={
            "utterances": {name: len(featured[name][0]) for name in featured},
            "seconds": {name: round(sum(len(e["waveform"]) for e in featured[name][1])
                                    / cfg.audio.sample_rate, 1) for name in featured},
            "mean_frames": round(float(np.mean([len(m) for _, m in train_items])), 1),
            "max_text_symbols": int(max(len(i) for i, _ in train_items)),
            **({"builtin_voice": {"sentences": len(builtin_items), "repeats": repeats}}
               if borrowed else {}),
        })
    # Not JSON: the test utterances' own audio, for the reference-audio
    # recognizer baseline.
    splits.reference_audio = {text_lib.normalize(example["text"], warn=False):
                              example["waveform"]
                              for example in featured["test"][1]}
    splits.train_items = train_items
    return splits
