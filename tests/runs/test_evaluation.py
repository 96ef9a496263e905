"""zoo.runs.evaluation: progress with the time left, where the result is written."""

import io
import json
import shutil

from tests.conftest import needs_mnist
from zoo.runs import evaluation as run_evaluation


def test_progress_reports_fraction_and_time_left():
    stream = io.StringIO()
    progress = run_evaluation.Progress(200, "binarized_mnist test, k=5000", stream=stream, interval=0.0)
    progress.start -= 30.0  # 30 s ago
    progress.update(50)
    progress.update(200)
    first, last = stream.getvalue().splitlines()
    # 50 examples in 30 s: 150 more take about 90 s.
    assert first == "binarized_mnist test, k=5000: 50/200 examples (25%), 30s elapsed, about 1m30s left"
    assert last.startswith("binarized_mnist test, k=5000: 200/200 examples (100%), 30s elapsed, about 0s left")
    quiet = io.StringIO()
    progress = run_evaluation.Progress(200, "x", stream=quiet, interval=60.0)
    progress.update(50)  # within the interval: nothing, so a log file is not flooded
    assert quiet.getvalue() == ""


@needs_mnist
def test_another_protocol_is_written_beside_the_evaluation_packaging_reads(tiny_runs, tmp_path):
    model_dir = shutil.copytree(tiny_runs["reference"], tmp_path / "run")
    result = run_evaluation.evaluate(str(model_dir), num_samples=2, max_examples=4, progress=False,
                                     result_file="evaluation_k2.json")
    assert json.loads((model_dir / "evaluation_k2.json").read_text()) == result
    assert not (model_dir / run_evaluation.RESULT_FILE).exists()
