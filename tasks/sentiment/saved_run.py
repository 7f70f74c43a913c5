"""What a trained sentiment model needs to be scored as it was trained:
its vocabulary and class names, found beside the model."""

import json
import os

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


def evaluation_overrides(model_path, args):
    """Config overrides so that a saved model is scored as it was trained:
    its vocabulary and sequence length, and, for other data, its class names
    in its order."""
    vocabulary, info = run_files(model_path)
    given = {override.split("=", 1)[0].strip() for override in args.overrides}
    overrides = []
    if vocabulary and "model.vocabulary" not in given:
        overrides.append(f"model.vocabulary={vocabulary}")
    # The length it was trained with (build_datasets may derive it from the
    # training text, so the run's config.json can hold the preset's).
    length = (info or {}).get("sequence_length")
    if length and "model.sequence_length" not in given:
        overrides.append(f"model.sequence_length={int(length)}")
    classes = (info or {}).get("classes")
    if args.data and classes and "data.classes" not in given and \
            not any("," in name for name in classes):
        overrides.append(f"data.classes={','.join(classes)}")
    return overrides
