"""The whole flow on the smoke preset: train, QAT, export, evaluate, serve, predict.

Four checks share this file's runs instead of training the smoke model again:
the same-seed check compares the QAT run with the suite benchmark's run (the
same seed, no QAT, in a child process), and mirrored training over two
logical CPUs and multi-worker training with two worker processes are
compared with the QAT run's float model (the float stage does not depend on
what follows it)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import training
from tasks.segmentation import evaluate as evaluate_cli
from tasks.segmentation import export as export_cli
from tasks.segmentation import predict as predict_cli
from tasks import suite
from tasks.segmentation import train

pytestmark = pytest.mark.slow
SUBPROCESS_TIMEOUT = 600
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_argv(root):
    return ["--preset", "smoke", "--out", str(root / "run"),
            "--export-dir", str(root / "saved_models")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation")
    # The per-layer INT8 error (off in the smoke preset) is checked here.
    report = train.main(smoke_argv(root) + ["--set", "export.debug_layers=true"])
    return report, str(root / "run"), str(root / "saved_models")


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """`python -m tasks benchmark` of segmentation at smoke without QAT: a
    second run of the same seed, in a child process."""
    root = tmp_path_factory.mktemp("benchmark")
    readme = root / "README.md"
    readme.write_text(f"{suite.README_START}\n{suite.README_END}\n")
    # The efficiency columns' child process is tested in tests/test_efficiency.py.
    rows = suite.benchmark(["segmentation"], "smoke", str(root),
                           ["--no-qat", "--set", "export.debug_layers=false"], str(readme),
                           efficiency=False)
    return rows, root, readme


def saved_model_path(report, out):
    return os.path.join(out, report["artifacts"]["saved_model"])


def test_report_follows_the_contract(run):
    report, out, _ = run
    for key in ("task", "preset", "data", "primary_metric", "metrics", "artifacts",
                "sizes_bytes", "latency_ms", "seconds"):
        assert key in report
    assert set(report["metrics"]) >= {"float", "int8", "ptq_int8", "baseline"}
    assert set(report["seconds"]) >= {"train", "qat", "export", "total"}
    with open(os.path.join(out, "report.json")) as handle:
        assert json.load(handle)["primary_metric"] == "dice"
    for picture in ("training_curves.png", "metrics.png", "samples.png"):
        assert os.path.getsize(os.path.join(out, picture)) > 5000
    assert os.path.exists(os.path.join(out, "report.md"))


def test_smoke_run_learns(run):
    report, out, _ = run
    metrics = report["metrics"]
    # The smoke preset is seconds of training: it must clearly beat the
    # all-background baseline, not reach the default preset's quality.
    assert metrics["float"]["dice"] > metrics["baseline"]["dice"] + 0.1
    assert metrics["float"]["pixel_accuracy"] > metrics["baseline"]["pixel_accuracy"] + 0.02
    with open(os.path.join(out, "stages", "float", "history.csv")) as handle:
        losses = [float(line.split(",")[1]) for line in handle.readlines()[1:]]
    assert losses[-1] < 0.6 * losses[0]


def test_int8_is_integer_small_and_close_to_float(run):
    report, _, _ = run
    ops = report["int8_ops"]["tflite_int8"]
    assert ops["float_compute_ops"] == [] and ops["ops"]["CONV_2D/int8"] >= 10
    assert report["sizes_bytes"]["tflite_int8"] < 0.5 * report["sizes_bytes"]["tflite_float"]
    quantization = report["quantization"]["tflite_ptq_int8"]
    assert quantization["tflite"]["mac_share_int8"] == 1.0
    worst = quantization["worst_layers"]
    assert len(worst) == 5 and all(0 < layer["rmse_over_scale"] < 5 for layer in worst)
    assert worst == sorted(worst, key=lambda layer: -layer["rmse_over_scale"])
    float_dice = report["metrics"]["float"]["dice"]
    assert abs(report["metrics"]["tflite_float"]["dice"] - float_dice) < 1e-3
    assert report["metrics"]["int8"]["dice"] > float_dice - 0.1
    assert report["metrics"]["ptq_int8"]["dice"] > float_dice - 0.1


def test_saved_model_serves_uint8_images_of_any_size(run):
    report, out, _ = run
    serving = tf.saved_model.load(saved_model_path(report, out)).signatures["serving_default"]
    for height, width in ((17, 45), (64, 64)):
        images = tf.constant(np.random.randint(0, 255, (2, height, width, 3), np.uint8))
        result = serving(images=images)
        assert result["classes"].shape == (2, height, width)
        assert result["classes"].dtype == tf.int32
        assert int(tf.reduce_max(result["classes"])) < 4


def test_evaluate_cli_reproduces_the_report(run, capsys):
    report, out, _ = run
    for artifact, key in (("model_int8.tflite", "int8"), ("model.keras", "float")):
        capsys.readouterr()
        evaluate_cli.main([os.path.join(out, artifact)])
        scored = json.loads(capsys.readouterr().out)
        assert scored["metrics"]["dice"] == pytest.approx(report["metrics"][key]["dice"], abs=1e-6)
    capsys.readouterr()
    evaluate_cli.main([saved_model_path(report, out)])
    scored = json.loads(capsys.readouterr().out)
    assert scored["metrics"]["dice"] == pytest.approx(report["metrics"]["float"]["dice"], abs=1e-3)


def test_predict_writes_masks_at_the_image_size(run, tmp_path):
    _, out, _ = run
    image = np.random.randint(0, 255, (30, 50, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    written = predict_cli.run([str(tmp_path / "photo.png"), "--model",
                               os.path.join(out, "model_int8.tflite"), "--out", str(tmp_path)])
    mask = np.asarray(Image.open(written[0]))
    assert mask.shape == (30, 50) and mask.max() < 4
    assert os.path.exists(tmp_path / "photo_overlay.png")


def test_a_second_export_makes_a_new_version(run, tmp_path):
    _, out, export_dir = run
    before = sorted(os.listdir(os.path.join(export_dir, "segmentation")))
    export_cli.main([os.path.join(out, "model.keras"), "--out", str(tmp_path)])
    after = sorted(os.listdir(os.path.join(export_dir, "segmentation")))
    assert before == ["1"] and after == ["1", "2"]


def test_unknown_preset_and_key_fail_with_one_line(tmp_path):
    for argv, message in ((["--preset", "huge"], "unknown preset 'huge'"),
                          (["--set", "model.filterz=3"], "unknown config key 'model.filterz'")):
        result = subprocess.run([sys.executable, "-m", "tasks.segmentation.train", *argv,
                                 "--out", str(tmp_path / "x")], capture_output=True, text=True,
                                timeout=SUBPROCESS_TIMEOUT)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
        assert "Traceback" not in result.stderr


def test_killed_training_resumes_where_it_stopped(tmp_path):
    out = str(tmp_path / "run")
    argv = ["--preset", "smoke", "--out", out, "--export-dir", str(tmp_path / "sm"),
            "--epochs", "12", "--no-qat", "--set", "data.num_train=128",
            # a backup at every epoch's end, so the kill lands between two
            # (by default they are spaced to take 2% of the time: test_training)
            "--set", "train.checkpoint_share=1"]
    process = subprocess.Popen([sys.executable, "-m", "tasks.segmentation.train", *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = os.path.join(out, "stages", "float", "backup", "training_metadata.json")
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(metadata):
            with open(metadata) as handle:
                if json.load(handle).get("epoch", 0) >= 2:
                    break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with open(metadata) as handle:
        done = json.load(handle)["epoch"]
    assert 2 <= done < 12
    refused = subprocess.run([sys.executable, "-m", "tasks.segmentation.train", *argv],
                             capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert refused.returncode == 2 and "pass --resume" in refused.stderr
    report = train.main(argv + ["--resume"])
    with open(os.path.join(out, "stages", "float", "history.csv")) as handle:
        epochs = [int(line.split(",")[0]) for line in handle.readlines()[1:]]
    assert epochs[-1] == 11 and len(epochs) <= 12 + 1  # continued, not restarted
    assert report["metrics"]["float"]["dice"] > report["metrics"]["baseline"]["dice"]


def test_the_same_seed_gives_the_same_report(run, benchmark_run):
    first, _, _ = run
    # The benchmark's run: the same seed without QAT (minutes of tracing the
    # fake-quant graph; its determinism rests on the same seeds), so the
    # post-training file is the INT8 one; trained in another process.
    _, root, _ = benchmark_run
    run_dir = next(root.glob("runs-smoke-*/segmentation-smoke"))
    second = json.loads((run_dir / "report.json").read_text())
    assert second["metrics"]["float"]["dice"] == first["metrics"]["float"]["dice"]
    assert second["metrics"]["int8"]["dice"] == first["metrics"]["ptq_int8"]["dice"]
    assert second["sizes_bytes"]["tflite_float"] == first["sizes_bytes"]["tflite_float"]
    assert second["sizes_bytes"]["tflite_int8"] == first["sizes_bytes"]["tflite_ptq_int8"]


def test_benchmark_row_comes_from_the_task_report(benchmark_run):
    rows, tmp_path, readme = benchmark_run
    saved = json.loads((tmp_path / "suite-smoke.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    row = rows[0]
    run_dir = next(p for p in (tmp_path).glob("runs-smoke-*/segmentation-smoke"))
    report = json.loads((run_dir / "report.json").read_text())
    assert row["float"] == report["metrics"]["float"]["dice"]
    assert row["baseline"] == report["metrics"]["baseline"]["dice"]
    assert row["INT8 .tflite KB"] * 1024 == report["sizes_bytes"]["tflite_int8"]
    # --no-qat: the INT8 file is post-training, and the table says so.
    assert row["QAT INT8"] is None and row["PTQ INT8"] == report["metrics"]["int8"]["dice"]
    # The child's own peak (TensorFlow alone needs hundreds of MiB), not ours.
    assert 300 < row["peak MiB"] < 8000
    assert row["train examples/s"] > 0
    table = (tmp_path / "suite-smoke.md").read_text()
    assert "| segmentation | dice |" in table
    assert "All tasks in" in table and table in readme.read_text()
    assert (tmp_path / "suite-smoke.png").stat().st_size > 1000


# The `prepare` and `float` stages of the segmentation smoke run in a child
# process (the strategy's logical devices must exist before TensorFlow
# starts), scored on the test split: QAT and export do not depend on the
# strategy and cost minutes.
FLOAT_STAGE = """
import json, sys
import tasks.segmentation as task
from common import artifacts, pipeline
cfg, splits, model = pipeline.run_float_stage(task, sys.argv[1:])
info = splits.info
fns = dict(task.baseline_predict_fns(splits, info),
           float=pipeline.predict_fn_from_raw(task, artifacts.keras_raw_fn(model), cfg, info))
print(json.dumps({name: task.score(fn, splits.test, info)["dice"] for name, fn in fns.items()}))
"""


def test_mirrored_over_two_logical_cpus_matches_one_device(run, tmp_path):
    # One device: the float model of this file's smoke run (same preset and
    # seed), scored on the same test split by the evaluate stage.
    report, _, _ = run
    single = report["metrics"]["float"]["dice"]
    result = subprocess.run(
        [sys.executable, "-c", FLOAT_STAGE, "--preset", "smoke", "--out",
         str(tmp_path / "mirrored"), "--export-dir", str(tmp_path / "sm"),
         "--strategy", "mirrored"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=900)
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    mirrored = scores.pop("float")
    assert max(scores.values()) == report["metrics"]["baseline"]["dice"]
    assert mirrored > max(scores.values()) + 0.1
    assert abs(mirrored - single) < 0.1


def test_two_workers_on_loopback_match_one_device(run, tmp_path):
    # MultiWorkerMirroredStrategy with two worker processes started by the
    # cluster helper (TF_CONFIG on loopback ports); each worker prints its
    # float model's scores on the test split.
    report, _, _ = run
    single = report["metrics"]["float"]["dice"]
    out = tmp_path / "multi_worker"
    result = subprocess.run(
        [sys.executable, "-m", "common.cluster", "--workers", "2", "--timeout", "840", "--",
         sys.executable, "-c", FLOAT_STAGE, "--preset", "smoke", "--out", str(out),
         "--export-dir", str(tmp_path / "sm"), "--strategy", "multi_worker"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    workers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(workers) == 2
    # The chief writes the run folder, the other worker below it.
    assert (out / "manifest.json").exists()
    assert (out / "workers" / "worker-1" / "manifest.json").exists()
    baseline = report["metrics"]["baseline"]["dice"]
    for scores in workers:
        assert scores["majority_class"] == baseline
        assert scores["float"] > baseline + 0.1
        assert abs(scores["float"] - single) < 0.1
    # Both workers chose the same best epoch (the validation score is agreed).
    record = f"stages/float/{training.BEST_WEIGHTS}.json"
    chosen = [json.loads((folder / record).read_text())["epoch"]
              for folder in (out, out / "workers" / "worker-1")]
    assert chosen[0] == chosen[1]


def test_startup_noise_is_hidden_and_errors_stay_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tasks.segmentation.train", "--preset",
                             "nope", "--out", str(tmp_path / "x")], capture_output=True,
                            text=True, timeout=SUBPROCESS_TIMEOUT,
                            env={k: v for k, v in os.environ.items()
                                 if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.stderr.strip() == ("error: unknown preset 'nope'; expected one of: "
                                     "default, smoke, unet")
    assert result.stdout == ""


def test_resume_of_a_finished_run_skips_every_stage(run, capsys):
    report, out, export_dir = run
    with open(os.path.join(out, "manifest.json")) as handle:
        before = json.load(handle)["stages"]
    versions = sorted(os.listdir(os.path.join(export_dir, "segmentation")))
    capsys.readouterr()
    again = train.main(["--preset", "smoke", "--out", out, "--export-dir", export_dir,
                        "--set", "export.debug_layers=true", "--resume"])
    printed = capsys.readouterr().out
    assert "float training already finished" in printed and "QAT already finished" in printed
    assert "exporting" not in printed and "evaluating" not in printed
    with open(os.path.join(out, "manifest.json")) as handle:
        after = json.load(handle)["stages"]
    assert after == before
    assert sorted(os.listdir(os.path.join(export_dir, "segmentation"))) == versions
    assert again["metrics"]["int8"] == report["metrics"]["int8"]


def test_mobile_file_scores_through_mediapipe_like_the_qat_file(run):
    report, out, _ = run
    assert report["artifacts"]["tflite_mobile"] == "model_mobile.tflite"
    assert os.path.exists(os.path.join(out, "model_mobile.tflite"))
    ops = report["int8_ops"]["tflite_mobile"]
    assert ops["float_compute_ops"] == []
    metrics = report["metrics"]
    qat = metrics.get("qat_int8", metrics["int8"])
    # Scored by MediaPipe's ImageSegmenter on the same test split (issue 14's
    # budget: Dice within 0.005 of the INT8 file).
    assert abs(metrics["mobile"]["dice"] - qat["dice"]) <= 0.005
