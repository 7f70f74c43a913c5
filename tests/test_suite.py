"""`python -m tasks` lists the tasks and refuses unknown ones. That
`python -m tasks benchmark` runs one and writes its row as JSON, Markdown and
a chart is checked in tests/test_segmentation_end_to_end.py, which also uses
that run as its second run of the same seed."""

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
