"""Where a trained text-to-speech model's speech goes wrong, as JSON: the
recognizer's word error rate on its teacher-forced mels (every previous
frame the true one) beside its free-running mels, and the attention of
both, on the run's test split.

    python benchmarks/tts_exposure.py RUN/model.keras [--set KEY=VALUE ...]

Reading the numbers: free-running attention that stays on the diagonal
while the free-running WER is far above the teacher-forced one points at
exposure bias (the decoder's own frames drift from what it was trained
on); a teacher-forced WER already far above the true mels' points at the
acoustic model itself (what it predicts from the text, given perfect
history).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def diagnose(model_path, overrides=()):
    import tasks.tts as task
    from common import artifacts, training
    from tasks.tts import audio as audio_lib
    from tasks.tts import inference, metrics, recognizer
    from tasks.tts import text as text_lib

    cfg, _ = artifacts.load_run_config(task, model_path, None, list(overrides))
    training.set_seed(cfg.run.seed)
    splits = task.build_datasets(cfg)
    info = splits.info
    audio = metrics.audio_options(info)
    sentences = tuple(info["test_texts"])
    predict = inference.predict_fn_from_raw(artifacts.load_raw_fn(task, model_path, cfg),
                                            cfg, info)
    errors = {"teacher_forced": 0, "free_running": 0, "true_mel": 0}
    attention = {"teacher_forced": [], "free_running": []}
    words = 0

    def heard_errors(mel, reference):
        waveform = audio_lib.griffin_lim(mel, audio)
        heard = recognizer.transcribe(waveform, audio.sample_rate, sentences)
        return recognizer.word_errors(reference, heard)

    for inputs, targets in splits.test:
        inputs = {key: np.asarray(value) for key, value in inputs.items()}
        stops = np.asarray(targets["stop"])
        for index, result in enumerate(predict(inputs)):
            steps = int(np.argmax(stops[index] > 0.5)) + 1
            frames = steps * info["reduction"]
            reference = text_lib.decode(inputs["text"][index])
            mels = {"teacher_forced": result["teacher"]["mel_postnet"][:frames],
                    "free_running": result["free"]["mel_postnet"],
                    "true_mel": inputs["teacher_mel"][index][:frames]}
            for name, mel in mels.items():
                wrong, total = heard_errors(mel, reference)
                errors[name] += wrong
            words += total
            attention["teacher_forced"].append(
                metrics.attention_focus(result["teacher"]["alignment"][:steps]))
            attention["free_running"].append(
                metrics.attention_focus(result["free"]["alignment"]))
    return {
        "model": model_path, "test_utterances": len(attention["free_running"]),
        "words": words,
        "wer": {name: round(count / words, 4) for name, count in errors.items()},
        "attention": {name: {"focus": round(float(np.mean([a[0] for a in values])), 4),
                             "diagonal": round(float(np.mean([a[1] for a in values])), 4)}
                      for name, values in attention.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a TTS run's model.keras")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    parser.add_argument("--name", default=None,
                        help="results/tts_exposure_NAME.json (default: the run folder's name)")
    args = parser.parse_args(argv)
    result = diagnose(args.model, args.overrides)
    name = args.name or os.path.basename(os.path.dirname(os.path.abspath(args.model)))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"tts_exposure_{name}.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
