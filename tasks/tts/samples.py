"""Report pictures and sounds: mel spectrograms (target, free-running
float, INT8) and alignments of a few test sentences, and their WAV files."""

import os

import numpy as np

from tasks.tts import audio as audio_lib
from tasks.tts import metrics
from tasks.tts import text as text_lib


def save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None, count=3):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    audio = metrics.audio_options(info)
    folder = os.path.join(out_dir, "samples")
    os.makedirs(folder, exist_ok=True)
    inputs, targets = next(iter(splits.test))
    inputs = {key: np.asarray(value)[:count] for key, value in inputs.items()}
    stop_targets = np.asarray(targets["stop"])[:count]
    results = predict_fn(inputs)
    int8_results = int8_predict_fn(inputs) if int8_predict_fn else [None] * len(results)
    written = []
    for index, (result, int8_result) in enumerate(zip(results, int8_results)):
        steps = int(np.argmax(stop_targets[index] > 0.5)) + 1
        target = inputs["teacher_mel"][index][:steps * info["reduction"]]
        sentence = text_lib.decode(inputs["text"][index])
        panels = [("target", target), ("float, free-running", result["free"]["mel_postnet"])]
        if int8_result is not None:
            panels.append(("INT8 LiteRT, free-running", int8_result["free"]["mel_postnet"]))
        figure, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 2.2 * (len(panels) + 1)))
        for axis, (title, mel) in zip(axes, panels):
            axis.imshow(mel.T, origin="lower", aspect="auto", vmin=audio_lib.SILENCE, vmax=1.0)
            axis.set_title(title, fontsize=9)
        axes[-1].imshow(result["teacher"]["alignment"].T, origin="lower", aspect="auto")
        axes[-1].set_title("alignment (teacher-forced): decoder step vs symbol", fontsize=9)
        figure.suptitle(sentence, fontsize=10)
        figure.tight_layout()
        path = os.path.join(folder, f"sample_{index}.png")
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
        audio_lib.write_wav(os.path.join(folder, f"sample_{index}_float.wav"),
                            audio_lib.griffin_lim(result["free"]["mel_postnet"], audio),
                            audio.sample_rate)
        if int8_result is not None:
            audio_lib.write_wav(os.path.join(folder, f"sample_{index}_int8.wav"),
                                audio_lib.griffin_lim(int8_result["free"]["mel_postnet"], audio),
                                audio.sample_rate)
        reference = getattr(splits, "reference_audio", {}).get(sentence)
        if reference is not None:
            audio_lib.write_wav(os.path.join(folder, f"sample_{index}_reference.wav"),
                                reference, audio.sample_rate)
    return written
