"""The sentiment command line end to end at the smoke size: train (float,
INT8, SavedModel, report), evaluate the INT8 file, predict, distil a student."""

import json
import os
import subprocess
import sys

import pytest

from tasks.sentiment import predict, train


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    out, export_dir = str(root / "run"), str(root / "saved_models")
    report = train.main(["--preset", "smoke", "--out", out, "--export-dir", export_dir])
    return out, export_dir, report


def test_train_writes_float_int8_savedmodel_and_report(smoke_run):
    out, export_dir, report = smoke_run
    with open(os.path.join(out, "report.json")) as handle:
        assert json.load(handle)["task"] == "sentiment"
    for name in ("float", "tflite_float", "int8", "baseline"):
        scores = report["metrics"][name]
        assert 0.0 <= scores["accuracy"] <= 1.0 and 0.0 <= scores["macro_f1"] <= 1.0
        assert sum(map(sum, scores["confusion_matrix"])) == report["test_examples"]
    for key in ("keras", "tflite_float", "tflite_int8"):
        assert os.path.isfile(os.path.join(out, report["artifacts"][key]))
    assert report["sizes_bytes"]["tflite_int8"] < report["sizes_bytes"]["tflite_float"]
    assert not report["int8_ops"]["tflite_int8"]["float_compute_ops"]
    assert report["artifacts"]["saved_model"].startswith(os.path.abspath(export_dir))
    assert "confusion_matrix.png" in report["pictures"]
    assert os.path.isfile(os.path.join(out, "vocabulary.txt"))
    assert any("majority-class baseline" in note for note in report["notes"])


def evaluate_cli(*argv):
    """`python -m tasks.sentiment.evaluate ...` in a subprocess, as users run
    it (importing the module here would rebind the package's `evaluate`
    function to the module)."""
    process = subprocess.run(
        [sys.executable, "-m", "tasks.sentiment.evaluate", *argv],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.returncode == 0, process.stderr[-2000:]
    return json.loads(process.stdout[process.stdout.index("{"):])


def test_evaluate_scores_the_int8_file_on_the_same_test_split(smoke_run):
    out, _, report = smoke_run
    result = evaluate_cli(os.path.join(out, "model_int8.tflite"))
    assert result["metrics"]["accuracy"] == pytest.approx(
        report["metrics"]["int8"]["accuracy"])
    assert result["metrics"]["examples"] == report["test_examples"]


def test_evaluate_other_data_with_the_models_vocabulary(smoke_run, tmp_path):
    out, _, _ = smoke_run
    rows = ["review,sentiment"] + [f"the food was great {i},positive\n"
                                   f"the film was awful {i},negative" for i in range(25)]
    (tmp_path / "other.csv").write_text("\n".join(rows) + "\n")
    result = evaluate_cli(os.path.join(out, "model.keras"), "--data",
                          str(tmp_path / "other.csv"))
    assert result["metrics"]["examples"] == 5  # test_fraction 0.1 of 50 rows
    assert set(result["metrics"]["f1_per_class"]) == {"negative", "positive"}


def test_predict_prints_label_and_probability(smoke_run, capsys):
    out, _, report = smoke_run
    texts = ["the food was not bad at all", "the film was awful"]
    from_keras = predict.run(["--model", os.path.join(out, "model.keras")] + texts)
    from_saved_model = predict.run(["--model", report["artifacts"]["saved_model"]] + texts)
    from_int8 = predict.run(["--model", os.path.join(out, "model_int8.tflite")] + texts)
    # The SavedModel tokenises inside; the others on the host: same answer.
    assert [label for label, _ in from_saved_model] == [label for label, _ in from_keras]
    for (_, host), (_, served) in zip(from_keras, from_saved_model):
        assert host == pytest.approx(served, abs=1e-4)
    for label, probability in from_int8:
        assert label in ("negative", "positive") and 0.5 <= probability <= 1.0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].split("\t")[2] == "the film was awful"


def test_a_student_distils_from_the_smoke_teacher(smoke_run, tmp_path):
    out, _, _ = smoke_run
    report = train.main([
        "--preset", "smoke", "--out", str(tmp_path / "student"),
        "--export-dir", str(tmp_path / "saved_models"),
        "--teacher", os.path.join(out, "model.keras"), "--alpha", "0.3",
        "--temperature", "3", "--set", "model.hidden_dim=16"])
    assert os.path.isfile(tmp_path / "student" / "stages" / "distill" / "history.csv")
    assert any(note.endswith("WordPiece tokens (teacher)") for note in report["notes"])
    with open(tmp_path / "student" / "vocabulary.txt") as mine, \
            open(os.path.join(out, "vocabulary.txt")) as teachers:
        assert mine.read() == teachers.read()
