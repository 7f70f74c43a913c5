"""`--init`: a pre-trained BERT by keras-hub preset name, or a preset folder.

`--init bert_tiny_en_uncased` looks for the preset in the local kagglehub
cache first (where `keras_hub.models.BertBackbone.from_preset` and
`kagglehub.model_download` put it: `$KAGGLEHUB_CACHE`, by default
`~/.cache/kagglehub`, then `models/<owner>/<model>/keras/<variant>/<version>`).
When it is not there and Kaggle can be reached, kagglehub downloads it. When
Kaggle cannot be reached, the run stops within seconds with one message
saying how to fetch the preset on a connected machine and where to put it
(kagglehub's own client would otherwise end in a long traceback of retried
connections).

`--init FOLDER` takes a preset folder on disk as before: `config.json`,
`model.weights.h5` and `assets/tokenizer/vocabulary.txt`.
"""

import os
import threading

from common.errors import UserError

# The files of a keras-hub BERT preset this task reads.
PRESET_FILES = ("config.json", "model.weights.h5",
                os.path.join("assets", "tokenizer", "vocabulary.txt"))
# The host kagglehub downloads from, and how long to wait for an answer
# (name resolution included) before calling the machine offline.
DOWNLOAD_URL = "https://api.kaggle.com"
REACH_TIMEOUT_SECONDS = 5.0


def bert_presets():
    """{preset name: Kaggle handle without the scheme} of keras-hub's BERTs."""
    import keras_hub

    return {name: preset["kaggle_handle"].removeprefix("kaggle://")
            for name, preset in keras_hub.models.BertBackbone.presets.items()
            if preset.get("kaggle_handle", "").startswith("kaggle://")}


def missing_files(folder):
    return [name for name in PRESET_FILES
            if not os.path.isfile(os.path.join(folder, name))]


def cache_folder(handle):
    """Where kagglehub keeps `handle` (owner/model/framework/variant/version)."""
    from kagglehub import config as kagglehub_config

    return os.path.join(kagglehub_config.get_cache_folder(), "models", *handle.split("/"))


def cached_preset(handle):
    """The cached folder of `handle` with every preset file, else None. Another
    cached version of the same variant serves too (newest first): a preset
    copied from a machine with a different keras-hub is still usable."""
    folder = cache_folder(handle)
    if not missing_files(folder):
        return folder
    variant = os.path.dirname(folder)
    if not os.path.isdir(variant):
        return None
    versions = sorted((name for name in os.listdir(variant) if name.isdigit()),
                      key=int, reverse=True)
    for version in versions:
        candidate = os.path.join(variant, version)
        if not missing_files(candidate):
            return candidate
    return None


def unreachable_reason(url=None, timeout=REACH_TIMEOUT_SECONDS):
    """None when `url` answers (any HTTP status) within `timeout` seconds,
    else why not. The request runs in a daemon thread, so a name lookup that
    hangs (no DNS timeout in the resolver) cannot stall the run."""
    import requests

    url = url or DOWNLOAD_URL
    outcome = {}

    def attempt():
        try:
            requests.head(url, timeout=timeout, allow_redirects=False)
            outcome["reason"] = None
        except requests.RequestException as error:
            # The innermost cause says what failed (name resolution, refused).
            cause = error
            while cause.__cause__ is not None or cause.__context__ is not None:
                cause = cause.__cause__ or cause.__context__
            outcome["reason"] = f"{type(cause).__name__}: {cause}"[:200]

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if "reason" not in outcome:
        return f"no answer within {timeout:.0f} s"
    return outcome["reason"]


def fetch_instructions(name, handle):
    target = cache_folder(handle)
    return (
        "On a machine with internet, run\n"
        f"    python -c \"import kagglehub; print(kagglehub.model_download('{handle}'))\"\n"
        f"and copy the folder it prints to {target} on this machine (the kagglehub "
        "cache; set KAGGLEHUB_CACHE to use another cache folder), or copy it "
        f"anywhere and pass --init /path/to/that/folder. `pip install keras-hub` "
        "brings kagglehub; public presets need no Kaggle account.")


def resolve(init):
    """The preset folder `--init` names: a folder on disk, a cached keras-hub
    preset, or one downloaded now. Raises UserError with what to do."""
    path = os.path.expanduser(init)
    if os.path.isdir(path):
        missing = missing_files(path)
        if missing:
            raise UserError(
                f"--init {init}: not a keras-hub BERT preset folder (missing "
                f"{', '.join(missing)}; expected {', '.join(PRESET_FILES)}, as "
                "save_to_preset or kagglehub.model_download writes them)")
        return path
    presets = bert_presets()
    if init not in presets:
        raise UserError(
            f"--init {init}: no such folder, and not a keras-hub BERT preset name "
            f"(known: {', '.join(sorted(presets))})")
    handle = presets[init]
    cached = cached_preset(handle)
    if cached:
        return cached
    reason = unreachable_reason()
    if reason is not None:
        raise UserError(
            f"--init {init}: the preset is not in the local kagglehub cache "
            f"({cache_folder(handle)}) and {DOWNLOAD_URL} cannot be reached "
            f"({reason}).\n{fetch_instructions(init, handle)}")
    import kagglehub

    print(f"[sentiment] downloading the keras-hub preset {init} ({handle})")
    try:
        folder = kagglehub.model_download(handle)
    except Exception as error:  # noqa: BLE001 (kagglehub raises HTTP, OS and its own errors)
        raise UserError(
            f"--init {init}: downloading {handle} failed ({type(error).__name__}: "
            f"{str(error)[:300]}).\n{fetch_instructions(init, handle)}") from None
    missing = missing_files(folder)
    if missing:
        raise UserError(f"--init {init}: the downloaded preset {folder} lacks "
                        f"{', '.join(missing)}")
    return folder


def vocabulary_path(init):
    return os.path.join(resolve(init), PRESET_FILES[2])
