"""TTS metrics: mel L1 (teacher-forced and free-running), stop-token
accuracy, attention focus and diagonality, and the recognizer's word error
rate on the vocoded speech.

`score(predict_fn, dataset, info)` takes a predict function that maps a
batch of {"text", "teacher_mel"} to one dict per example: {"free": ...,
"teacher": ...} synthesis results (see inference.py), or, for the
baselines, {"waveform": ...} or {"free": {"mel_postnet": ...}}.
"""

import os
import tempfile

import numpy as np

from tasks.tts import audio as audio_lib
from tasks.tts import corpus
from tasks.tts import recognizer
from tasks.tts import text as text_lib
from tasks.tts.audio import SILENCE
from tasks.tts.config import AudioOptions

PRIMARY_METRIC = "wer"
PRIMARY_METRIC_MODE = "min"
# Ceilings, not baselines to beat: the recordings and their true mels through
# the vocoder. The report's "does NOT beat the baseline" note compares the
# model with the strongest of the others (espeak-ng, the mean frame).
REFERENCE_BASELINES = ("reference_audio", "ground_truth_mel")


def audio_options(info):
    """The run's audio settings (vocoder included) from its dataset info;
    info written before they were kept there has the rate and mel count only."""
    if "audio" in info:
        return AudioOptions(**info["audio"])
    return AudioOptions(sample_rate=info["sample_rate"], n_mels=info["n_mels"])


def _pad(mel, length):
    if len(mel) >= length:
        return mel[:length]
    return np.concatenate([mel, np.full((length - len(mel), mel.shape[1]), SILENCE,
                                        np.float32)])


def free_running_l1(predicted, target):
    """Mean |difference| over the longer of the two lengths (the shorter is
    padded with silence): stopping early or late costs."""
    length = max(len(predicted), len(target))
    return float(np.abs(_pad(predicted, length) - _pad(target, length)).mean())


def attention_focus(alignment):
    """(focus, diagonal): the mean largest attention weight per step (1 =
    one symbol at a time), and 1 - the mean distance between the attended
    position and the diagonal (both as fractions of their lengths)."""
    if alignment.size == 0:
        return 0.0, 0.0
    steps, symbols = alignment.shape
    focus = float(alignment.max(axis=1).mean())
    attended = alignment.argmax(axis=1) / max(symbols - 1, 1)
    expected = np.arange(steps) / max(steps - 1, 1)
    return focus, float(1.0 - np.abs(attended - expected).mean())


def score(predict_fn, dataset, info):
    audio = audio_options(info)
    r = info["reduction"]
    sentences = tuple(info["test_texts"])
    sums = {}
    counts = {}
    errors = words = 0

    def add(name, value, weight=1.0):
        sums[name] = sums.get(name, 0.0) + value * weight
        counts[name] = counts.get(name, 0.0) + weight

    for inputs, targets in dataset:
        inputs = {key: np.asarray(value) for key, value in inputs.items()}
        results = predict_fn(inputs)
        stop_targets = np.asarray(targets["stop"])
        for index, result in enumerate(results):
            steps = int(np.argmax(stop_targets[index] > 0.5)) + 1
            target = inputs["teacher_mel"][index][:steps * r]
            reference_text = text_lib.decode(inputs["text"][index])
            if "teacher" in result:
                teacher = result["teacher"]
                add("mel_l1_teacher_forced",
                    float(np.abs(teacher["mel_postnet"][:len(target)] - target).mean()))
                predicted_stop = teacher["stop"][:steps] > 0.5
                add("stop_accuracy", float((predicted_stop == (stop_targets[index][:steps]
                                                               > 0.5)).mean()))
                focus, diagonal = attention_focus(teacher["alignment"][:steps])
                add("attention_focus", focus)
                add("attention_diagonal", diagonal)
            waveform = result.get("waveform")
            if "free" in result:
                free = result["free"]
                add("mel_l1", free_running_l1(free["mel_postnet"], target))
                add("length_ratio", len(free["mel_postnet"]) / max(len(target), 1))
                if waveform is None:
                    waveform = audio_lib.griffin_lim(free["mel_postnet"], audio)
            if waveform is not None:
                heard = recognizer.transcribe(waveform, audio.sample_rate, sentences)
                wrong, total = recognizer.word_errors(reference_text, heard)
                errors, words = errors + wrong, words + total
    metrics = {name: sums[name] / counts[name] for name in sums}
    if words:
        metrics["wer"] = errors / words
    return metrics


def baseline_predict_fns(splits, info):
    """The recognizer on the reference recordings and on their true mels
    through the same vocoder (the ceilings: what the model's speech could
    reach at best), on espeak-ng's speech of the same sentences (the classic
    baseline, when espeak-ng is installed), and the mean training frame for
    every frame (the trivial mel baseline)."""
    audio = audio_options(info)
    references = getattr(splits, "reference_audio", {})
    r = info["reduction"]
    mean_frame = np.asarray(info["mel_mean"], np.float32)

    def true_mel(inputs, index):
        mel = inputs["teacher_mel"][index]
        silent = np.all(mel <= SILENCE + 1e-6, axis=1)
        loud = np.flatnonzero(~silent)
        length = (loud[-1] + 1) if loud.size else len(mel)
        return mel[:int(np.ceil(length / r) * r)]

    def reference_audio(inputs):
        return [{"waveform": references[text_lib.normalize(text_lib.decode(ids), warn=False)]
                 if text_lib.normalize(text_lib.decode(ids), warn=False) in references
                 else np.zeros(1, np.float32)} for ids in inputs["text"]]

    def ground_truth_mel(inputs):
        return [{"waveform": audio_lib.griffin_lim(true_mel(inputs, index), audio)}
                for index in range(len(inputs["text"]))]

    def mean_frame_fn(inputs):
        return [{"free": {"mel_postnet": np.tile(mean_frame, (len(true_mel(inputs, i)), 1))}}
                for i in range(len(inputs["text"]))]

    def espeak_ng(inputs):
        # The classic text-to-speech a practitioner tries first: a rule-based
        # formant synthesizer, nothing trained on the data.
        results = []
        with tempfile.TemporaryDirectory() as folder:
            for index, ids in enumerate(inputs["text"]):
                path = os.path.join(folder, f"{index}.wav")
                corpus.speak(text_lib.decode(ids), path)
                waveform, rate = audio_lib.read_wav(path)
                results.append({"waveform": audio_lib.resample(waveform, rate,
                                                               audio.sample_rate)})
        return results

    fns = {"ground_truth_mel": ground_truth_mel, "mean_frame": mean_frame_fn}
    if corpus.find_espeak():
        fns["espeak_ng"] = espeak_ng
    if references:
        fns["reference_audio"] = reference_audio
    return fns
