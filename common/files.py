"""Atomic file writes: every file the suite writes appears whole or not at all.

A file is written under `<path>.tmp-<pid>` and renamed over `path`; a kill
leaves at most a temporary, which `remove_stale_temporaries` deletes on the
next run (the pid in its name tells whether its writer is still alive).
"""

import contextlib
import json
import os
import re
import shutil

import numpy as np

TEMPORARY_PATTERN = re.compile(r".*\.tmp-(\d+)(\..*)?$")


def temporary_path(path, suffix=""):
    """The name a file is written under before it is renamed to `path`."""
    return f"{path}.tmp-{os.getpid()}{suffix}"


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path to write; rename it to `path` on success.

    `suffix` keeps an extension that a writer checks (Keras wants `.keras`
    or `.weights.h5`). On an exception the temporary is removed.
    """
    temporary = temporary_path(path, suffix)
    try:
        yield temporary
        if os.path.isfile(temporary):
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.exists(temporary):
            os.remove(temporary)


def write_bytes_atomic(path, data):
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)


def write_text_atomic(path, text):
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)


def jsonable(value):
    """`value` with numpy scalars and arrays turned into plain Python."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def json_text(data):
    return json.dumps(jsonable(data), indent=2) + "\n"


def write_json_atomic(path, data):
    write_text_atomic(path, json_text(data))


def save_keras_atomic(model, path):
    with atomic_path(path, ".keras") as temporary:
        model.save(temporary)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder, recursive=True):
    """Delete `*.tmp-<pid>*` files and folders whose writer process is dead.

    Returns the removed paths.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    for root, directories, names in os.walk(folder):
        for name in list(directories) + names:
            match = TEMPORARY_PATTERN.fullmatch(name)
            if not match or process_alive(int(match.group(1))):
                continue
            path = os.path.join(root, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
                directories.remove(name)
            else:
                os.remove(path)
            removed.append(path)
        if not recursive:
            break
    return removed
