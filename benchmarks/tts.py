"""TTS benchmark: real-time factor of the Keras model and of the LiteRT
pipeline (float and INT8), and the recognizer word error rates, as JSON.

    python benchmarks/tts.py                        # trains the default preset first
    python benchmarks/tts.py --run /tmp/tts/default # a finished run folder
    python benchmarks/tts.py --run runs/tts-smoke --sentences 3

Real-time factor = seconds of compute / seconds of audio produced, for
free-running synthesis of held-out sentences at batch 1 on 2 threads:
text -> encoder -> decoder steps (host loop) -> post-net, with and without
Griffin-Lim (the vocoder is the same numpy/tf.signal code for every
model). Below 1 is faster than real time. The word error rates are those
of the run's report: the model (float and INT8) beside the reference
recordings and the ground-truth mels through the same vocoder.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tasks.tts as task
from common import artifacts, litert
from tasks.tts import audio, inference, text, train


def run_preset(run_dir, preset):
    if not os.path.exists(os.path.join(run_dir, "report.json")):
        train.main(["--preset", preset, "--out", run_dir,
                    "--export-dir", os.path.join(run_dir, "saved_models")])
    with open(os.path.join(run_dir, "report.json")) as handle:
        return json.load(handle)


def real_time_factor(raw, cfg, sentences, rounds=3):
    """Median over rounds of (synthesis seconds, with vocoder seconds) /
    audio seconds, over `sentences`."""
    synthesizer = inference.Synthesizer(raw, cfg, seed=0)
    synthesizer.synthesize(text.encode(sentences[0]))  # warm-up (graph tracing)
    acoustic, total = [], []
    for _ in range(rounds):
        model_seconds = vocoder_seconds = audio_seconds = 0.0
        for sentence in sentences:
            started = time.perf_counter()
            result = synthesizer.synthesize(text.encode(sentence))
            model_seconds += time.perf_counter() - started
            started = time.perf_counter()
            waveform = audio.griffin_lim(result["mel_postnet"], cfg.audio)
            vocoder_seconds += time.perf_counter() - started
            audio_seconds += len(waveform) / cfg.audio.sample_rate
        acoustic.append(model_seconds / audio_seconds)
        total.append((model_seconds + vocoder_seconds) / audio_seconds)
    return {"acoustic_model": statistics.median(acoustic),
            "with_griffin_lim": statistics.median(total)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/tts-default", help="run folder")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sentences", type=int, default=5)
    args = parser.parse_args(argv)
    report = run_preset(args.run, args.preset)
    cfg, info = artifacts.load_run_config(task, os.path.join(args.run, "model.keras"))
    sentences = info["test_texts"][:args.sentences]
    raws = {"keras": artifacts.load_raw_fn(task, os.path.join(args.run, "model.keras"), cfg)}
    for name in ("float", "int8"):
        path = os.path.join(args.run, f"model_{name}.tflite")
        if os.path.exists(path):
            raws[f"litert_{name}"] = litert.load(path)
    metrics = report["metrics"]
    result = {
        "run": args.run,
        "real_time_factor": {name: real_time_factor(raw, cfg, sentences)
                             for name, raw in raws.items()},
        "wer": {name: metrics[key].get("wer") for name, key in
                (("float", "float"), ("litert_float", "tflite_float"), ("int8", "int8"))
                if key in metrics},
        "wer_baselines": {name: values.get("wer")
                          for name, values in metrics.get("baselines", {}).items()},
        "mel_l1": {name: metrics[key].get("mel_l1") for name, key in
                   (("float", "float"), ("int8", "int8")) if key in metrics},
        "sizes_bytes": report.get("sizes_bytes"),
        "train_seconds": report["seconds"]["train"],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
