"""Translation benchmark: BLEU for greedy, beam and INT8, and decoding speed
(tokens per second at batch 1) of the Keras model, float LiteRT and INT8
LiteRT, as JSON.

    python benchmarks/translation.py                        # trains the default preset
    python benchmarks/translation.py --run runs/translation-default   # a finished run
    python benchmarks/translation.py --run DIR --sentences 200 --speed-sentences 20

BLEU (sacrebleu, detokenized text) is measured on the first `--sentences`
test sentences of the run's own test split, with the run's beam size and
length penalty. Speed is greedy decoding, one sentence at a time (encode +
one decoder step per token, the host loop included), over
`--speed-sentences` test sentences; tokens counted are those generated
([SEP] included). The Keras model runs its parts as graph functions
(`tf.function`), the way a Python host would serve it; LiteRT runs on 2
threads.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np
import tensorflow as tf

import tasks.translation as task
from common import artifacts, cli, litert
from tasks.translation import decoding, metrics, train


def ensure_run(run_dir, preset):
    if not os.path.exists(os.path.join(run_dir, "report.json")):
        train.main(["--preset", preset, "--out", run_dir,
                    "--export-dir", os.path.join(run_dir, "saved_models")])
    return run_dir


def graph_parts(model, cfg):
    """The Keras edge parts as graph functions returning numpy."""
    parts = task.edge_model(model, cfg)
    functions = {key: tf.function(lambda inputs, part=part: part(inputs, training=False))
                 for key, part in parts.items()}
    return {key: (lambda inputs, function=function: {
        name: np.asarray(value) for name, value in function(inputs).items()})
        for key, function in functions.items()}


def bleu(raw, cfg, info, test, decoding_name):
    predict = decoding.predict_fn_from_raw(raw, cfg, info, decoding=decoding_name)
    return metrics.score(predict, test, info)["bleu"]


def tokens_per_second(raw, cfg, info, sources):
    decoder = decoding.EdgeDecoder(raw, cfg, info)
    decoder.decode(sources[:1])  # warm-up (traces the graph functions)
    tokens, started = 0, time.perf_counter()
    for row in range(len(sources)):
        output, _ = decoder.decode(sources[row:row + 1], beam_size=1)
        tokens += int(np.count_nonzero(output))
    return tokens / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-translation",
                        help="a finished run folder (trained here when it has no report)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sentences", type=int, default=0,
                        help="test sentences for BLEU (0: the whole test split)")
    parser.add_argument("--speed-sentences", type=int, default=20)
    args = parser.parse_args(argv)
    run_dir = ensure_run(args.run, args.preset)
    cfg = cli.load_config(task, os.path.join(run_dir, "config.json"))
    with open(os.path.join(run_dir, "info.json"), encoding="utf-8") as handle:
        info = json.load(handle)
    splits = task.build_datasets(cfg)
    test = splits.test.unbatch()
    if args.sentences:
        test = test.take(args.sentences)
    test = test.batch(cfg.train.batch_size)
    model = artifacts.load_keras(task, os.path.join(run_dir, "model.keras"))
    raws = {"keras": graph_parts(model, cfg)}
    for name, file in (("litert_float", "model_float.tflite"), ("litert_int8", "model_int8.tflite"),
                       ("litert_ptq_int8", "model_ptq_int8.tflite")):
        if os.path.exists(os.path.join(run_dir, file)):
            raws[name] = litert.load(os.path.join(run_dir, file))
    result = {"run": run_dir, "beam_size": cfg.model.beam_size,
              "length_penalty": cfg.model.length_penalty, "bleu": {}, "tokens_per_second": {}}
    for name, raw in raws.items():
        for decoding_name in ("greedy", "beam"):
            result["bleu"][f"{name}_{decoding_name}"] = bleu(raw, cfg, info, test, decoding_name)
    result["bleu"]["copy_source_baseline"] = metrics.score(
        task.baseline_predict_fns(splits, info)["copy_source"], test, info)["bleu"]
    inputs, _ = next(iter(splits.test.unbatch().batch(args.speed_sentences)))
    sources = np.asarray(inputs["source_ids"])
    for name in ("keras", "litert_float", "litert_int8"):
        if name in raws:
            result["tokens_per_second"][name] = tokens_per_second(raws[name], cfg, info, sources)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
