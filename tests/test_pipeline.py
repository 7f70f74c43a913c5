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
