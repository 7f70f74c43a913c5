"""`python -m tasks` lists the tasks; `python -m tasks benchmark` runs one
and writes its row as JSON, Markdown and a chart."""

import json
import os
import subprocess
import sys

import pytest

from tasks import suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_listing_names_every_task_with_presets_and_metric():
    listing = subprocess.run([sys.executable, "-m", "tasks"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300, check=True).stdout
    for name in ("segmentation", "detection", "super_resolution", "sentiment"):
        entry = suite.describe(name)
        assert f"{name}\n  presets: {', '.join(entry['presets'])}" in listing
        assert f"primary metric: {entry['primary_metric']}" in listing
        assert "smoke" in entry["presets"] and "default" in entry["presets"]
    assert "oxford_iiit_pet (TFDS)" in listing


def test_unknown_task_is_refused(capsys):
    with pytest.raises(SystemExit):
        suite.main(["benchmark", "--tasks", "speech"])
    assert "unknown task(s) ['speech']" in capsys.readouterr().err


def test_readme_block_is_replaced_and_a_missing_block_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{suite.README_START}\nold table\n{suite.README_END}\nafter\n")
    suite.update_readme(str(readme), "| new |\n")
    assert readme.read_text() == (f"# x\n{suite.README_START}\n| new |\n"
                                  f"{suite.README_END}\nafter\n")
    readme.write_text("# no block\n")
    with pytest.raises(ValueError, match="no '<!-- suite table: start"):
        suite.update_readme(str(readme), "| new |\n")


@pytest.mark.slow
def test_benchmark_row_comes_from_the_task_report(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{suite.README_START}\n{suite.README_END}\n")
    rows = suite.benchmark(["segmentation"], "smoke", str(tmp_path),
                           ["--no-qat", "--set", "export.debug_layers=false"], str(readme))
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
