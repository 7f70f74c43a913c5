"""What a trained translation model needs to be scored as it was trained:
its vocabularies, found in the info.json beside it."""

import os


def run_info_path(model_path):
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    for candidate in (os.path.join(folder, "info.json"),
                      os.path.join(folder, "assets.extra", "info.json")):
        if os.path.isfile(candidate):
            return candidate
    return None


def evaluation_overrides(model_path, args):
    """Tokenize with the model's own vocabularies (from its info.json), so
    that other data (`--data`) is scored exactly as the model was trained."""
    path = run_info_path(model_path)
    given = {override.split("=", 1)[0].strip() for override in args.overrides}
    if path is None or "model.source_vocabulary" in given:
        return []
    return [f"model.source_vocabulary={path}", f"model.target_vocabulary={path}"]
