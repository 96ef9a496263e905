"""zoo.runs.evaluation: progress with the time left, where the result and its per-example estimates are written,
paired differences."""

import io
import json
import os
import shutil

import pytest

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
    examples = run_evaluation.per_example(str(model_dir), "evaluation_k2.json")
    assert examples["protocol"]["num_samples"] == 2 and len(examples["log_likelihood"]) == len(examples["elbo"]) == 4
    assert -sum(examples["log_likelihood"]) / 4 == pytest.approx(result["nll_nats"], rel=1e-9)
    assert -sum(examples["elbo"]) / 4 == pytest.approx(result["bound_nats"], rel=1e-9)
    with pytest.raises(run_evaluation.UsageError, match="evaluation.json.examples does not exist: evaluate the run "
                       "with --result_file=evaluation.json first"):
        run_evaluation.per_example(str(model_dir))


def test_a_paired_difference_is_the_mean_and_standard_error_of_the_differences_image_by_image():
    def examples(log_likelihood, num_samples=100, count=3):
        protocol = {"dataset": "binarized_mnist", "split": "test", "examples": count, "num_samples": num_samples,
                    "weights": "best", "seed": 0}
        return {"protocol": protocol, "log_likelihood": log_likelihood}

    first, second = examples([-80.0, -90.0, -100.0]), examples([-81.0, -92.0, -100.0])
    # NLLs 90 and 91: first is 1 nat lower; differences -1, -2, 0 have standard deviation 1, over sqrt(3) images.
    assert run_evaluation.paired_difference(first, second) == {
        "gap_nats": -1.0, "stderr": pytest.approx(3 ** -0.5, rel=1e-12), "examples": 3}
    assert run_evaluation.paired_difference(second, first)["gap_nats"] == 1.0
    with pytest.raises(ValueError, match="the same examples with the same k; got .*'num_samples': 100.* and "
                                         ".*'num_samples': 1000"):
        run_evaluation.paired_difference(first, examples([-81.0, -92.0, -100.0], num_samples=1000))


@needs_mnist
def test_an_interrupted_evaluation_resumes_to_the_uninterrupted_estimate(tiny_runs, tmp_path, monkeypatch):
    model_dir = str(shutil.copytree(tiny_runs["reference"], tmp_path / "run"))
    protocol = dict(num_samples=3, max_examples=25, batch_size=10, progress=False)
    whole = run_evaluation.evaluate(model_dir, result_file="whole.json", **protocol)
    assert not (tmp_path / "run" / "whole.json.partial").exists()

    from zoo import analysis

    class Stopped(Exception):
        pass

    estimate = analysis.batch_log_likelihoods
    first_batches, interrupt = [], [True]

    def interrupted(model, data, *args, **kwargs):
        first_batches.append(kwargs["first_batch"])
        for i, batch in enumerate(estimate(model, data, *args, **kwargs)):
            if i == 2 and interrupt and interrupt.pop():
                raise Stopped  # the process is stopped after two of its three batches
            yield batch

    monkeypatch.setattr(analysis, "batch_log_likelihoods", interrupted)
    with pytest.raises(Stopped):
        run_evaluation.evaluate(model_dir, result_file="resumed.json", **protocol)
    saved = json.loads((tmp_path / "run" / "resumed.json.partial").read_text())
    assert saved["batches"] == 2 and len(saved["log_likelihood"]) == 20
    assert not (tmp_path / "run" / "resumed.json").exists()
    resumed = run_evaluation.evaluate(model_dir, result_file="resumed.json", **protocol)
    assert first_batches == [0, 2]  # the second process starts at the third batch, seeded as the third
    assert {key: resumed[key] for key in resumed if key != "seconds"} == {
        key: whole[key] for key in whole if key != "seconds"}
    assert not (tmp_path / "run" / "resumed.json.partial").exists()

    # Estimates of another protocol (here k) are not taken up: the evaluation starts afresh.
    interrupt.append(True)
    with pytest.raises(Stopped):
        run_evaluation.evaluate(model_dir, result_file="other.json", **protocol)
    assert (tmp_path / "run" / "other.json.partial").exists()
    first_batches.clear()
    other = run_evaluation.evaluate(model_dir, result_file="other.json", **{**protocol, "num_samples": 4})
    assert first_batches == [0] and other["num_samples"] == 4 and other["examples"] == 25
    # ... nor lost: the first protocol's two batches were set aside, and run again it resumes from them.
    (parked,) = [path for path in os.listdir(model_dir) if path.startswith("other.json.partial.")]
    assert json.loads((tmp_path / "run" / parked).read_text())["batches"] == 2
    first_batches.clear()
    again = run_evaluation.evaluate(model_dir, result_file="other.json", **protocol)
    assert first_batches == [2] and again["nll_nats"] == whole["nll_nats"]
    assert not [path for path in os.listdir(model_dir) if "partial" in path]
