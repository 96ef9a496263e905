"""`python -m zoo.evaluate`: what it prints and writes; a result file outside the run refused in one line. (A damaged
weights file: tests/runs/test_state.py.)"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import zoo
from tests.conftest import MNIST_DIR, needs_mnist
from tests.testing import run_app
from zoo.runs import state as run_state

@needs_mnist
def test_evaluate_cli_prints_progress_what_it_measured_and_writes_json(tiny_runs, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(tiny_runs["reference"], model_dir)  # the shared runs stay as they are
    code, out, err = run_app("zoo.evaluate", f"--model_dir={model_dir}", "--split=test", "--num_samples=20",
                             "--max_examples=30")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert list(result) == ["dataset", "split", "weights", "seed", "num_samples", "examples", "split_examples",
                            "nll_nats", "nll_stderr", "bound_nats", "seconds"]
    assert (result["weights"], result["seed"]) == ("best", 0)
    assert result["examples"] == 30 and result["num_samples"] == 20 and result["dataset"] == "binarized_mnist"
    assert result["split_examples"] == 10_000
    assert "on binarized_mnist test, the first 30 of its 10000 examples, k = 20 importance samples" in out
    # Progress goes to stderr, and nothing else (quiet libraries); the last report is the finished count.
    assert all(line.startswith("binarized_mnist test, k=20: ") for line in err.strip().splitlines()), err
    assert err.strip().splitlines()[-1].startswith("binarized_mnist test, k=20: 30/30 examples (100%), "), err
    # log p(x) >= ELBO in expectation: the importance-sampled NLL is below the bound.
    assert 50 < result["nll_nats"] < result["bound_nats"] < 600
    # It is the best weights' own estimate on the first 30 test images (one batch, seeded (0, 0)).
    model, _ = run_state.load_trained_model(str(model_dir), "best")
    x = next(iter(zoo.data.load("binarized_mnist", split="test[:30]", batch_size=30, shuffle=False)))
    expected = model.importance_sampling(x, num_samples=20, seed=[0, 0])
    assert result["nll_nats"] == pytest.approx(-float(np.mean(expected["log_likelihood"])), rel=1e-5)
    assert result["bound_nats"] == pytest.approx(-float(np.mean(expected["elbo"])), rel=1e-5)
    with open(model_dir / "evaluation.json") as f:
        assert json.load(f) == result


def test_the_result_file_is_a_name_in_the_run_directory(tmp_path):
    code, _, err = run_app("zoo.evaluate", f"--model_dir={tmp_path}", "--result_file=../evaluation.json")
    assert code == 2 and err.strip() == ("evaluate.py: --result_file must be a file name (written in --model_dir), "
                                         "got '../evaluation.json'"), err


@needs_mnist
@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(), reason=f"no MNIST IDX files in {MNIST_DIR}")
def test_evaluate_reads_another_dataset_the_model_takes_from_its_data_path(tiny_runs, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(tiny_runs["reference"], model_dir)
    code, out, err = run_app("zoo.evaluate", f"--model_dir={model_dir}", "--dataset=mnist", f"--data_path={MNIST_DIR}",
                             "--num_samples=2", "--max_examples=20", "--result_file=mnist.json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["dataset"], result["split"], result["examples"], result["split_examples"]) == ("mnist", "test", 20,
                                                                                                  10_000)


@pytest.mark.parametrize("args, reason", [
    (["--num_samples=0"], "--num_samples must be an int >= 1, got 0"),
    (["--seed=4294967296"], "--seed must be an int in [-2**31, 2**31), got 4294967296"),  # estimated seed 0's, said 2**32
    (["--max_examples=-1"], "--max_examples must be an int >= 1, got -1"),
    (["--dataset=cifar"], "unknown dataset 'cifar'; available: binarized_mnist, frey_faces, mnist, omniglot"),
    # The run's model takes 28x28 images (it suggested a path= no flag sets).
    (["--dataset=frey_faces"], "the run's model takes 28x28x1 inputs but dataset 'frey_faces' gives 28x20x1; "
                               "datasets that fit: binarized_mnist, mnist, omniglot"),
    (["--dataset=mnist", "--data_path=/no/such/dir"], "--data_path '/no/such/dir' does not exist"),
    (["--data_path=/tmp"], "dataset 'binarized_mnist' is read from the TFDS data directory ($TFDS_DATA_DIR), "
                           "not --data_path"),
])
def test_bad_options_are_refused_before_tensorflow_loads(tmp_path, args, reason):
    # All a run's config.json needs for these checks (the run's model itself is never loaded).
    (tmp_path / "config.json").write_text(json.dumps(
        {"dataset": "binarized_mnist", "data_path": None, "data_options": {}, "episodes": None,
         "model": {"config": {"input_shape": [28, 28, 1]}}}))
    code, out, err = run_app("zoo.evaluate", f"--model_dir={tmp_path}", *args)
    assert code == 2 and out == "" and err.strip() == f"evaluate.py: {reason}", err
    # They were refused only after TensorFlow's start-up (seconds).
    probe = ("import sys; from zoo import evaluate; sys.argv = ['evaluate.py', *sys.argv[1:]]\n"
             "try:\n    evaluate.run()\nexcept SystemExit as stop:\n    print(stop.code, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe, f"--model_dir={tmp_path}", *args], capture_output=True,
                            text=True)
    assert result.stdout.split() == ["2", "False"], (result.stdout, result.stderr)
