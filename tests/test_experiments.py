"""RESULTS.md's experiment tables are generated from the committed raw results, never edited by hand."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "script, results",
    [
        ("vimco_baseline_variance.py", "vimco_baseline_variance.json"),
        ("vma_untied_recall.py", "vma_untied_recall.json"),
        ("hierarchies.py", "hierarchies.json"),
    ],
)
def test_results_tables_are_the_scripts_output(script, results):
    assert os.path.exists(os.path.join(ROOT, "experiments", "results", results)), results
    table = subprocess.run(
        [sys.executable, os.path.join("experiments", script), "--table"], capture_output=True, text=True, check=True,
        cwd=ROOT,
    ).stdout.strip()
    assert table.startswith("|"), table
    with open(os.path.join(ROOT, "RESULTS.md")) as f:
        assert table in f.read(), f"RESULTS.md does not hold the table of python experiments/{script} --table"
