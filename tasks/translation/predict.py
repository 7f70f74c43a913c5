"""Translate sentences with a trained model; prints one translation per line.

    python -m tasks.translation.predict "the red car is here." "i see her."
    python -m tasks.translation.predict --model runs/translation-default/model_int8.tflite "i eat an apple."
    python -m tasks.translation.predict --model saved_models/translation/1 "i eat an apple."
    python -m tasks.translation.predict --decoding greedy "i eat an apple."

A `.keras` or `.tflite` model is driven here: the sentences are tokenized on
the host with the vocabularies saved beside the model (the same core-TF
tokenizer the SavedModel carries inside), then decoded with the run's
`model.decoding` (beam search by default). A SavedModel takes the strings
and decodes greedily inside its graph.
"""

import os

import numpy as np
import tensorflow as tf

import tasks.translation as task
from common import artifacts, cli
from common.errors import UserError
from tasks.translation import decoding
from tasks.translation import text as text_lib


def translate(model_path, sentences, config_path=None, decoding_name=None, beam_size=None):
    """Translations of `sentences` with the model at `model_path`."""
    if os.path.isdir(model_path):
        if not os.path.exists(os.path.join(model_path, "saved_model.pb")):
            raise UserError(f"{model_path}: a folder but not a SavedModel")
        loaded = tf.saved_model.load(model_path)
        result = loaded.signatures["serving_default"](text=tf.constant(sentences, tf.string))
        return [value.decode("utf-8") for value in result["translation"].numpy()]
    cfg, info = artifacts.load_run_config(task, model_path, config_path)
    if info is None:
        raise UserError(f"{model_path}: no info.json beside the model (its vocabularies); "
                        "pass a model from a training run folder")
    source_tokenizer, _ = text_lib.tokenizers(info, cfg)
    raw_fn = artifacts.load_raw_fn(task, model_path, cfg)
    predict = decoding.predict_fn_from_raw(raw_fn, cfg, info, decoding=decoding_name,
                                           beam_size=beam_size)
    source_ids = source_tokenizer(tf.constant(sentences, tf.string)).numpy()
    outputs = predict({"source_ids": np.asarray(source_ids)})
    return ["" if not sentence.strip() else output
            for sentence, output in zip(sentences, outputs)]


def run(argv=None):
    parser = cli.predict_parser(task, __doc__.splitlines()[0],
                                default_model="runs/translation-default/model.keras",
                                inputs_help="sentences to translate", writes_files=False)
    parser.add_argument("--decoding", choices=["greedy", "beam"], default=None,
                        help="default: the run's model.decoding (.keras / .tflite only)")
    parser.add_argument("--beam-size", type=int, default=None)
    args = parser.parse_args(argv)
    if not os.path.exists(args.model):
        raise UserError(f"{args.model}: model not found (train one with "
                        "`python -m tasks.translation.train`, or pass --model)")
    results = translate(args.model, args.inputs, args.config, args.decoding, args.beam_size)
    for translation in results:
        print(translation)
    return results


def main(argv=None):
    return cli.command(run, argv)


if __name__ == "__main__":
    main()
