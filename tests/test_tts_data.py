import numpy as np
import pytest

from common import config
from common.data import BadSampleCounter
from common.errors import DataError, UserError
from tasks.tts import PRESETS, Config, audio, corpus
from tasks.tts import data as tts_data


def _cfg(**overrides):
    cfg = config.from_preset(Config, PRESETS, "smoke")
    config.apply_overrides(cfg, overrides)
    return cfg


def _tone(seconds, rate, pitch=220.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)


def _folder(root, rows=8, rate=16000):
    (root / "wavs").mkdir(parents=True)
    lines = []
    for index in range(rows):
        name = f"LJ{index:03d}"
        audio.write_wav(str(root / "wavs" / f"{name}.wav"), _tone(0.3 + 0.05 * index, rate),
                        rate)
        lines.append(f"{name}|Text {index}, raw|the text number {index}.")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_metadata_rows_use_the_normalized_text_and_read_every_wav(tmp_path):
    folder = _folder(tmp_path / "set")
    rows = tts_data.read_metadata(str(folder))
    assert rows[0] == (1, "LJ000", "the text number 0.")
    examples, resampled = tts_data.load_folder(str(folder), _cfg().audio)
    assert len(examples) == 8 and resampled == 0
    assert abs(len(examples[3]["waveform"]) - 0.45 * 16000) <= 1


def test_malformed_row_missing_and_unreadable_wavs_name_the_line(tmp_path):
    folder = _folder(tmp_path / "set")
    with open(folder / "metadata.csv", "a") as handle:
        handle.write("just one field\n")
    with pytest.raises(DataError, match=r"metadata.csv:9: expected `id\|text"):
        tts_data.read_metadata(str(folder))

    folder = _folder(tmp_path / "other")
    (folder / "wavs" / "LJ002.wav").unlink()
    (folder / "wavs" / "LJ004.wav").write_bytes(b"RIFF not really a wav")
    settings = _cfg().audio
    with pytest.raises(DataError, match=r"metadata.csv:3: .*LJ002.wav: WAV file not found"):
        tts_data.load_folder(str(folder), settings)
    counter = BadSampleCounter(skip_bad=True)
    examples, _ = tts_data.load_folder(str(folder), settings, counter=counter)
    assert len(examples) == 6 and len(counter.skipped) == 2
    assert "metadata.csv:5" in counter.skipped[1] and "unreadable WAV" in counter.skipped[1]


def test_other_sample_rates_are_resampled_or_rejected(tmp_path):
    folder = _folder(tmp_path / "set", rows=3, rate=22050)
    settings = _cfg().audio
    examples, resampled = tts_data.load_folder(str(folder), settings, resample=True)
    assert resampled == 3 and abs(len(examples[0]["waveform"]) - 0.3 * 16000) <= 2
    with pytest.raises(DataError, match="22050 Hz; expected 16000 Hz"):
        tts_data.load_folder(str(folder), settings, resample=False)


def test_folder_becomes_bucketed_training_batches_and_fixed_test_batches(tmp_path):
    folder = _folder(tmp_path / "set", rows=24)
    cfg = _cfg(**{"data.source": str(folder), "data.val_fraction": 0.1, "data.num_train": 100,
                  "data.test_fraction": 0.1, "data.bucket_boundaries": "12,20"})
    splits = tts_data.build_datasets(cfg)
    assert splits.summary["utterances"] == {"train": 20, "val": 2, "test": 2}
    r = cfg.model.reduction
    for inputs, targets in splits.train:
        frames = inputs["teacher_mel"].shape[1]
        assert frames % r == 0 and targets["stop"].shape[1] == frames // r
        assert targets["alignment"].shape[1:] == (frames // r, inputs["text"].shape[1])
    inputs, targets = next(iter(splits.test))
    assert inputs["text"].shape[1] == cfg.model.max_text_length
    stop = targets["stop"].numpy()[0]
    # the stop target turns on at the utterance's last step and stays on
    first = int(np.argmax(stop))
    assert stop[:first].sum() == 0 and stop[first:].min() == 1
    assert set(splits.reference_audio) == {tts_data.text_lib.decode(ids)
                                           for ids in inputs["text"].numpy()}


def test_guide_weights_are_zero_on_the_diagonal_and_outside_the_lengths():
    guide = tts_data.guide_weights(np.array([4]), np.array([8]), 6, 10, 0.2).numpy()[0]
    assert guide.shape == (10, 6)
    assert guide[0, 0] == 0 and guide[4, 2] == pytest.approx(0.0)
    assert guide[7, 0] > 0.9 and guide[0, 3] > 0.9
    assert guide[8:].sum() == 0 and guide[:, 4:].sum() == 0


def test_missing_synthesizer_names_the_install_command(monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install espeak-ng"):
        corpus.builtin_corpus(4, cache_dir="/nonexistent")


def test_builtin_corpus_is_generated_once_and_cached(tmp_path):
    folder = corpus.builtin_corpus(3, cache_dir=str(tmp_path), progress=False)
    rows = tts_data.read_metadata(folder)
    assert [text for _, _, text in rows] == corpus.sentences(3)
    stamp = (tmp_path / folder / "wavs" / "SYN-00000.wav").stat().st_mtime
    assert corpus.builtin_corpus(3, cache_dir=str(tmp_path), progress=False) == folder
    assert (tmp_path / folder / "wavs" / "SYN-00000.wav").stat().st_mtime == stamp
    waveform, rate = audio.read_wav(f"{folder}/wavs/SYN-00001.wav")
    assert rate == 22050 and np.abs(waveform).max() > 0.1


def test_a_folder_larger_than_num_train_reads_only_the_wavs_it_uses(tmp_path, monkeypatch):
    folder = _folder(tmp_path / "set", rows=40)
    reads = []
    real_read = tts_data.audio_lib.read_wav
    monkeypatch.setattr(tts_data.audio_lib, "read_wav",
                        lambda path: reads.append(path) or real_read(path))
    cfg = _cfg(**{"data.source": str(folder), "data.num_train": 10,
                  "data.val_fraction": 0.1, "data.test_fraction": 0.1})
    train, val, test, notes = tts_data.load_examples(cfg, BadSampleCounter(False))
    # The held-out shares are of the whole folder (4 + 4 of 40), and only the
    # 18 WAVs the splits use are read.
    assert (len(train), len(val), len(test)) == (10, 4, 4)
    assert len(reads) == 18
    assert any("10 of the folder's 32 training utterances are used" in note for note in notes)
    # The same seed picks the same utterances for every split.
    again = tts_data.load_examples(cfg, BadSampleCounter(False))
    assert [e["id"] for e in again[0] + again[1] + again[2]] == \
        [e["id"] for e in train + val + test]


def test_skipped_bad_training_rows_are_replaced_from_the_unread_rest(tmp_path):
    folder = _folder(tmp_path / "set", rows=40)
    cfg = _cfg(**{"data.source": str(folder), "data.num_train": 10,
                  "data.val_fraction": 0.1, "data.test_fraction": 0.1,
                  "data.max_skipped_fraction": 0.5})
    clean = tts_data.load_examples(cfg, BadSampleCounter(False))
    # Break two of the ten training rows the clean run used.
    broken = [clean[0][2]["id"], clean[0][7]["id"]]
    for name in broken:
        (folder / "wavs" / f"{name}.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(DataError, match="unreadable WAV"):
        tts_data.load_examples(cfg, BadSampleCounter(False))
    counter = BadSampleCounter(True)
    train, val, test, notes = tts_data.load_examples(cfg, counter)
    assert len(counter.skipped) == 2
    # Still ten training utterances: the eight good ones of before, then
    # the next two rows of the seeded order; the held-out splits unchanged.
    ids = [example["id"] for example in train]
    assert len(train) == 10 and not set(broken) & set(ids)
    assert ids[:8] == [e["id"] for e in clean[0] if e["id"] not in broken]
    assert [e["id"] for e in val + test] == [e["id"] for e in clean[1] + clean[2]]
    assert any("10 of the folder's 32 training utterances are used" in note for note in notes)


def test_the_default_budget_keeps_the_builtin_schedule_and_stretches_a_small_folder():
    from common import training

    cfg = config.from_preset(Config, PRESETS, "default")
    # The built-in corpus: 40 steps an epoch, the preset's 80 epochs.
    assert training.epochs_for_budget(cfg.train, 40) == 80
    # A 100-utterance folder trained alone (data.builtin_voice_share=0): a
    # few steps a pass, many more passes, grouped into epochs of at least 25
    # steps.
    epochs = training.epochs_for_budget(cfg.train, 4)
    passes, grouped = training.group_short_epochs(cfg.train, 4, epochs)
    assert epochs == cfg.train.max_epochs and passes * 4 >= 25
    assert passes * grouped * 4 >= 1000


def test_small_folders_hold_out_a_minimum_up_to_a_tenth():
    options = _cfg().data
    # 3% / 2% alone would give a 217-row folder 7 test and 4 validation rows.
    assert tts_data._held_out_counts(217, options) == (21, 12)
    assert tts_data._held_out_counts(1000, options) == (30, 20)
    assert tts_data._held_out_counts(13100, options) == (393, 262)  # LJSpeech: the shares
    assert tts_data._held_out_counts(5, options) == (1, 1)


def test_small_folders_borrow_the_builtin_voice_up_to_num_train():
    options = config.from_preset(Config, PRESETS, "default").data
    assert options.builtin_voice_share == 0.0  # off: measured no better (README)
    options.builtin_voice_share = 0.5
    # The Asterisk prompts: 172 own utterances x 3 beside 684 built-in ones.
    assert tts_data.builtin_voice_plan(172, options) == (3, 684)
    assert tts_data.builtin_voice_plan(20, options) == (30, 600)
    assert tts_data.builtin_voice_plan(1000, options) == (1, 200)
    assert tts_data.builtin_voice_plan(1200, options) == (1, 0)   # large enough
    options.builtin_voice_share = 0.0
    assert tts_data.builtin_voice_plan(20, options) == (1, 0)      # off


def test_a_small_folder_trains_beside_the_marked_builtin_voice(tmp_path):
    folder = _folder(tmp_path / "set", rows=10)
    cfg = _cfg(**{"data.source": str(folder), "data.num_train": 16,
                  "data.builtin_voice_share": 0.5, "data.cache_dir": str(tmp_path / "cache"),
                  # shapes that fit every built-in sentence
                  "model.max_text_length": 128, "model.max_decoder_steps": 300})
    splits = tts_data.build_datasets(cfg)
    # 10 rows: 1 test, 1 validation, 8 own training rows (half of 16), and
    # 8 built-in sentences.
    own = splits.summary["utterances"]["train"]
    repeats, borrowed = tts_data.builtin_voice_plan(own, cfg.data)
    assert (own, repeats, borrowed) == (8, 1, 8)
    assert splits.summary["builtin_voice"] == {"sentences": 8, "repeats": 1}
    marker = tts_data.text_lib.SYMBOL_TO_ID[tts_data.text_lib.OTHER_VOICE]
    texts = [row for inputs, _ in splits.train for row in inputs["text"].numpy()]
    marked = [row for row in texts if row[0] == marker]
    assert len(texts) == 16 and len(marked) == 8
    # the marked rows are the built-in corpus's sentences, the others the folder's
    builtin = set(corpus.sentences(16 + 4 + 4)[:8])  # the built-in run's corpus
    assert {tts_data.text_lib.decode(row) for row in marked} == \
        {tts_data.text_lib.normalize(sentence, warn=False) for sentence in builtin}
    for split in (splits.val, splits.test):
        for inputs, _ in split:
            assert marker not in inputs["text"].numpy()
    # calibration and the mean-frame baseline read the folder's voice only
    assert len(splits.train_items) == 8 and marker not in np.concatenate(
        [ids for ids, _ in splits.train_items])
    assert any("trained beside 8 sentences of the built-in" in note for note in splits.notes)
