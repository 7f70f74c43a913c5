"""Classify texts with a trained sentiment model; prints label and probability.

    python -m tasks.sentiment.predict "the food was not bad at all" "awful service"
    python -m tasks.sentiment.predict --model runs/sentiment-default/model_int8.tflite "great film"
    python -m tasks.sentiment.predict --model saved_models/sentiment/1 "great film"

A `.keras` or `.tflite` model takes token ids: the texts are tokenised here,
on the host, with the vocabulary saved beside the model (the same core-TF
tokenizer the SavedModel carries inside). A SavedModel takes the raw strings.
"""

import os

import tensorflow as tf

import tasks.sentiment as task
from common import artifacts, cli
from common.arrays import softmax
from common.errors import UserError
from common.wordpiece import WordPieceTokenizer


def classify(model_path, texts, config_path=None):
    """[(label, probability)] for `texts` with the model at `model_path`."""
    if os.path.isdir(model_path):
        if not os.path.exists(os.path.join(model_path, "saved_model.pb")):
            raise UserError(f"{model_path}: a folder but not a SavedModel")
        loaded = tf.saved_model.load(model_path)
        result = loaded.signatures["serving_default"](text=tf.constant(texts))
        return [(label.decode("utf-8"), float(probability)) for label, probability in
                zip(result["label"].numpy(), result["probability"].numpy())]
    cfg, info = artifacts.load_run_config(task, model_path, config_path)
    if info is None:
        raise UserError(f"{model_path}: no info.json beside the model (its vocabulary "
                        "and class names); pass a model from a training run folder")
    # info.json holds the length trained with (possibly derived from the data).
    tokenizer = WordPieceTokenizer(info["vocabulary"],
                                   info.get("sequence_length", cfg.model.sequence_length))
    raw_fn = artifacts.load_raw_fn(task, model_path)
    probabilities = softmax(raw_fn(tokenizer(tf.constant(texts)).numpy()))
    best = probabilities.argmax(-1)
    return [(info["classes"][index], float(probabilities[row, index]))
            for row, index in enumerate(best)]


def run(argv=None):
    parser = cli.predict_parser(task, __doc__.splitlines()[0],
                                default_model="runs/sentiment-default/model.keras",
                                inputs_help="texts to classify", writes_files=False)
    args = parser.parse_args(argv)
    if not os.path.exists(args.model):
        raise UserError(f"{args.model}: model not found (train one with "
                        "`python -m tasks.sentiment.train`, or pass --model)")
    results = classify(args.model, args.inputs, args.config)
    for text, (label, probability) in zip(args.inputs, results):
        print(f"{label}\t{probability:.3f}\t{text}")
    return results


def main(argv=None):
    return cli.command(run, argv)


if __name__ == "__main__":
    main()
