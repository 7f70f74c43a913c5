"""The run folder: one process at a time, a config that resume must match,
no temporaries of killed processes, and a manifest of finished stages.

`manifest.json` records each stage of `common/pipeline.py` when it finishes
(status, seconds, outputs); `--resume` skips every stage recorded there.
"""

import fcntl
import json
import os
import shutil
import time

from common import files
from common.errors import UserError

MANIFEST = "manifest.json"
# Keys that may differ between a run and its resumption.
RESUME_MAY_CHANGE = ("run.resume", "run.verbose")


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        flat = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else key))
        return flat
    return {prefix: value}


def config_differences(saved, current):
    """`key: saved -> current` for every differing dotted key."""
    old, new = _flatten(saved), _flatten(current)
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
            for key in sorted(set(old) | set(new))
            if key not in RESUME_MAY_CHANGE and old.get(key) != new.get(key)]


class RunFolder:
    """Context manager around one training run in `cfg.run.out`."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.path = cfg.run.out
        self.resume = cfg.run.resume
        self.manifest = {"stages": {}}
        self._lock_handle = None

    # --- entering: lock, checks, clean-up -------------------------------------

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        self._lock()
        try:
            removed = files.remove_stale_temporaries(self.path)
            if removed:
                print(f"removed {len(removed)} temporary files of killed runs in {self.path}")
            self._check_previous_run()
            files.write_text_atomic(self.file("config.json"), self.cfg.to_json())
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc_info):
        self._unlock()
        return False

    def _lock(self):
        handle = open(self.file(".lock"), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{self.path} is in use by {owner}; wait for it to finish "
                            "or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} (started {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        self._lock_handle = handle

    def _unlock(self):
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def _check_previous_run(self):
        manifest_path = self.file(MANIFEST)
        stages_dir = self.file("stages")
        started = os.path.exists(manifest_path) or os.path.isdir(stages_dir)
        finished = os.path.exists(self.file("report.json"))
        if not self.resume:
            if started and not finished:
                raise UserError(f"{self.path} holds an interrupted run; pass --resume to "
                                "continue it, or choose another --out")
            # A finished run is replaced by a fresh one in the same folder.
            for name in ("stages", "logs"):
                shutil.rmtree(self.file(name), ignore_errors=True)
            for name in (MANIFEST, "report.json"):
                if os.path.exists(self.file(name)):
                    os.remove(self.file(name))
            return
        config_path = self.file("config.json")
        if os.path.exists(config_path):
            with open(config_path) as handle:
                saved = json.load(handle)
            differences = config_differences(saved, self.cfg.to_dict())
            if differences:
                raise UserError(f"--resume with another configuration than the run in "
                                f"{self.path}: {'; '.join(differences)}")
        if os.path.exists(manifest_path):
            with open(manifest_path) as handle:
                self.manifest = json.load(handle)

    # --- stages ---------------------------------------------------------------

    def file(self, name):
        return os.path.join(self.path, name)

    def finished(self, stage):
        """The outputs recorded for `stage` when resuming, else None."""
        if not self.resume:
            return None
        record = self.manifest["stages"].get(stage)
        return record["outputs"] if record and record.get("status") == "done" else None

    def record(self, stage, seconds, outputs=None):
        self.manifest["stages"][stage] = {"status": "done", "seconds": round(seconds, 2),
                                          "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                          "outputs": outputs or {}}
        files.write_json_atomic(self.file(MANIFEST), self.manifest)

    def seconds(self):
        return {stage: record["seconds"] for stage, record in self.manifest["stages"].items()}
