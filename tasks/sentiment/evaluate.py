"""Score a saved sentiment model (.keras, .tflite or SavedModel) on its test split.

    python -m tasks.sentiment.evaluate runs/sentiment-default/model_int8.tflite
    python -m tasks.sentiment.evaluate runs/sentiment-default/model.keras --data other.csv

The text is tokenised with the model's own vocabulary (found beside the
model, or in a SavedModel's assets.extra/info.json), and other data's labels
are read against the model's class names, so other data is scored exactly as
the model was trained.
"""

import argparse
import json
import os
import sys

import tasks.sentiment as task
from common import cli, pipeline
from tasks.sentiment.data import VOCABULARY_FILE


def run_files(model_path):
    """(vocabulary file, info dict) of a trained model; either may be None."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    vocabulary, info = None, None
    for candidate in (os.path.join(folder, "info.json"),
                      os.path.join(folder, "assets.extra", "info.json")):
        if os.path.isfile(candidate):
            vocabulary = candidate
            with open(candidate) as handle:
                info = json.load(handle)
            break
    if os.path.isfile(os.path.join(folder, VOCABULARY_FILE)):
        vocabulary = os.path.join(folder, VOCABULARY_FILE)
    return vocabulary, info


def with_model_vocabulary(argv):
    """`argv` plus the model's vocabulary and class names as `--set`s (unless
    given), so other data is tokenised as in training and its labels map to
    the model's classes in the model's order."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--config")
    parser.add_argument("--data")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    known, _ = parser.parse_known_args(argv)
    if not known.model:
        return argv
    vocabulary, info = run_files(known.model)
    given = {override.split("=", 1)[0].strip() for override in known.overrides}
    if vocabulary and "model.vocabulary" not in given:
        argv += ["--set", f"model.vocabulary={vocabulary}"]
    classes = (info or {}).get("classes")
    if known.data and classes and "data.classes" not in given and \
            not any("," in name for name in classes):
        argv += ["--set", f"data.classes={','.join(classes)}"]
    return argv


def main(argv=None):
    return cli.main_guard(
        lambda: pipeline.run_evaluate(task, with_model_vocabulary(argv)))


if __name__ == "__main__":
    main()
