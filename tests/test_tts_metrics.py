import numpy as np

from tasks.tts import audio, corpus, data, metrics, recognizer


def test_recognizer_hears_the_reference_audio_and_not_silence():
    folder = corpus.builtin_corpus(16, progress=False)
    rows = data.read_metadata(folder)[-4:]
    sentences = tuple(text for _, _, text in rows)
    errors = words = 0
    for _, name, text in rows:
        waveform, rate = audio.read_wav(f"{folder}/wavs/{name}.wav")
        wrong, total = recognizer.word_errors(text, recognizer.transcribe(waveform, rate,
                                                                          sentences))
        errors, words = errors + wrong, words + total
    # measured 11 / 31 on these espeak-ng sentences with their bigram LM
    assert errors / words < 0.6
    silent = recognizer.transcribe(np.zeros(16000, np.float32), 16000, sentences)
    assert recognizer.word_errors(rows[0][2], silent) == (len(rows[0][2].split()),) * 2


def test_attention_focus_and_free_running_l1():
    diagonal = np.eye(6, dtype=np.float32)
    assert metrics.attention_focus(diagonal) == (1.0, 1.0)
    stuck = np.zeros((6, 6), np.float32)
    stuck[:, 0] = 1.0
    focus, along = metrics.attention_focus(stuck)
    assert focus == 1.0 and along < 0.6
    blurred = np.full((6, 6), 1 / 6, np.float32)
    assert metrics.attention_focus(blurred)[0] < 0.2
    target = np.zeros((10, 80), np.float32)
    # stopping early costs: the missing frames count as silence (-5)
    assert metrics.free_running_l1(target[:5], target) == 2.5
    assert metrics.free_running_l1(target, target) == 0.0


def test_int8_budget_note_says_within_or_exceeded_with_the_loss():
    import tasks.tts as task
    from common import pipeline

    def metrics(int8_l1):
        return {"float": {"mel_l1": 0.50, "mel_l1_teacher_forced": 0.20},
                "int8": {"mel_l1": int8_l1, "mel_l1_teacher_forced": 0.21}}

    within = pipeline.int8_budget(task, metrics(0.52))
    assert within["within"] and within["note"].startswith("INT8 within its budget")
    assert abs(within["metrics"]["mel_l1"]["relative_loss"] - 0.04) < 1e-9
    exceeded = pipeline.int8_budget(task, metrics(0.60))  # +20% > 10%
    assert not exceeded["within"]
    assert "EXCEEDS" in exceeded["note"] and "+20.0%" in exceeded["note"]
    assert "export.int16_activations" in exceeded["note"]


def test_espeak_ng_is_the_classic_baseline_and_the_recordings_are_ceilings(tmp_path):
    """espeak-ng speaks the test sentences (a rule-based synthesizer, nothing
    trained): the recognizer hears it, unlike the mean frame; the recordings
    and their true mels are ceilings the report does not ask the model to
    beat."""
    import tasks.tts as task
    from common import config, pipeline

    cfg = config.from_preset(task.Config, task.PRESETS, "smoke")
    config.set_value(cfg, "data.cache_dir", str(tmp_path))
    splits = data.build_datasets(cfg)
    fns = metrics.baseline_predict_fns(splits, splits.info)
    assert {"espeak_ng", "mean_frame", "ground_truth_mel", "reference_audio"} <= set(fns)
    scores = {name: metrics.score(fns[name], splits.test, splits.info)["wer"]
              for name in ("espeak_ng", "mean_frame")}
    # Measured 0.33 on these 4 sentences, as on the recordings: the built-in
    # corpus is espeak-ng's own voice.
    assert scores["espeak_ng"] < 0.5 and scores["mean_frame"] == 1.0
    baselines = {name: {"wer": value} for name, value in scores.items()}
    baselines.update({name: {"wer": 0.0} for name in task.REFERENCE_BASELINES})
    assert pipeline.strongest_baseline(baselines, "wer", "min",
                                       task.REFERENCE_BASELINES) == "espeak_ng"


def test_scoring_vocodes_with_the_runs_audio_settings(tmp_path, monkeypatch):
    """The scorer's Griffin-Lim takes the run's vocoder settings (here the
    smoke preset's 8 iterations and a sharpening power), not the defaults."""
    import tasks.tts as task
    from common import config
    from tasks.tts import audio as audio_lib

    cfg = config.from_preset(task.Config, task.PRESETS, "smoke")
    config.set_value(cfg, "data.cache_dir", str(tmp_path))
    config.set_value(cfg, "audio.griffin_lim_power", 1.5)
    splits = data.build_datasets(cfg)
    used = []
    vocode = audio_lib.griffin_lim

    def recording_griffin_lim(frames, audio, *args, **kwargs):
        used.append((audio.griffin_lim_iterations, audio.griffin_lim_power))
        return vocode(frames, audio, *args, **kwargs)

    monkeypatch.setattr(audio_lib, "griffin_lim", recording_griffin_lim)
    fns = metrics.baseline_predict_fns(splits, splits.info)
    metrics.score(fns["ground_truth_mel"], splits.test, splits.info)
    assert used and set(used) == {(8, 1.5)}
    assert metrics.audio_options(splits.info) == cfg.audio
