"""The paper experiments of experiments/ train through the run library and measure the trained run.

Each runs as its command does, in its own process, on a tiny budget (one or two updates, a few
importance samples): what is checked is the run directory and the numbers the JSON records. The runs are all `large`
(each trains in a process of its own); the default suite checks the scripts' refusals of bad flags here and the
tables generated from their committed results (tests/test_results_md.py).
"""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import OMNIGLOT_DIR, needs_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, "experiments")


def run_experiment(script, *args):
    out = subprocess.run([sys.executable, os.path.join(EXPERIMENTS, script), *args], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.parametrize("script, args, reason", [
    ("vimco_baseline_variance.py", ["--draws=1"], "flag --draws=1: 1 is not integer >= 2"),  # was NaN over the JSON
    ("vma_omniglot.py", ["--sweep_classes=1,x"], "flag --sweep_classes=['1', 'x']: must be a comma-separated list of "
                                                 "ints >= 1"),  # was a traceback after training
    ("vma_omniglot.py", ["--epochs=0"], "flag --epochs=0: 0 is not a positive integer"),
    ("hierarchies.py", ["--only=nope"], "--only: unknown configurations ['nope']; known: ['iwae_2layer_k5', "),
    ("pretrained.py", ["--only=nope"], "--only: unknown models ['nope']; known: ['iwae_mnist_2layer', "),
])
def test_bad_flags_are_one_line_with_exit_status_2(script, args, reason):
    out = subprocess.run([sys.executable, os.path.join(EXPERIMENTS, script), *args], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 2 and out.stderr.startswith(f"{script}: {reason}"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def read_json(*path):
    with open(os.path.join(*path)) as f:
        return json.load(f)


@needs_mnist
@pytest.mark.large
def test_vma_recall_trains_a_run_and_its_result_is_what_vma_untied_recall_gathers(tmp_path, monkeypatch):
    model_dir = str(tmp_path / "recall")
    run_experiment("vma_recall.py", f"--model_dir={model_dir}", "--epochs=2", "--steps_per_epoch=1",
                   "--memory_size=16", "--num_samples=2", "--test_episodes=1", "--noshared_embedding", "--seed=3")
    config = read_json(model_dir, "config.json")  # a zoo.train run directory
    assert (config["preset"], config["dataset"], config["epochs"], config["steps_per_epoch"]) == (
        "vma_mnist_recall", "binarized_mnist", 2, 1)
    assert config["episodes"] == {"kind": "recall", "num_memory": 16, "num_targets": 16}
    assert config["overrides"] == {"shared_embedding": False, "seed": 3} and config["learning_rate"] == 1e-3
    assert os.path.isfile(os.path.join(model_dir, "best.weights.h5"))

    result = read_json(model_dir, "recall.json")
    assert result["log_memory_size"] == pytest.approx(math.log(16))
    assert result["test_examples"] == 16 and result["num_samples"] == 2 and result["seed"] == 3
    assert 0 <= result["test_address_kl"] <= math.log(16) + 1e-5 and 0 <= result["test_recall_accuracy"] <= 1
    assert math.isfinite(result["test_nll_nats"]) and result["test_nll_nats"] <= result["test_bound_nats"] + 1e-3
    by_epoch = result["train_by_epoch"]
    assert len(by_epoch["address_kl"]) == len(by_epoch["bound"]) == 2
    assert result["final_epoch_train"] == {metric: values[-1] for metric, values in by_epoch.items()}
    assert result["train_seconds"] > 0 and len(result["commit"]) >= 7 and result["cpu"] and result["cores"] >= 1

    monkeypatch.syspath_prepend(EXPERIMENTS)
    import vma_untied_recall

    run, = vma_untied_recall.gather([model_dir])["runs"]
    assert run["train_address_kl_by_epoch"] == by_epoch["address_kl"]
    assert run["train_address_kl_last_epoch"] == by_epoch["address_kl"][-1]
    assert run["first_epoch_address_kl_above_5"] is None  # two updates stay far from a lookup's log 16 = 2.8
    assert (run["residual_scale"], run["seed"], run["test_recall"]) == (0.1, 3, result["test_recall_accuracy"])
    assert run["success"] == (result["test_recall_accuracy"] >= vma_untied_recall.SUCCESS_RECALL)


@needs_mnist
@pytest.mark.large
def test_memvae_experiment_trains_each_preset_as_a_run_and_evaluates_its_best_weights(tmp_path):
    out = str(tmp_path)
    printed = run_experiment("memvae_experiment.py", "--presets=vae_mnist_530_530_100", "--epochs=1",
                             "--steps_per_epoch=2", "--num_samples=3", "--max_examples=20", f"--out={out}")
    result = read_json(out, "vae_mnist_530_530_100", "result.json")
    assert json.loads(printed.stdout.strip().splitlines()[-1]) == result
    config = read_json(out, "vae_mnist_530_530_100", "config.json")
    assert config["recipe"]["epsilon"] == 1e-4  # the preset's recipe, as python -m zoo.train runs it
    assert result["parameters"] == 1_559_184  # README's count of vae_mnist_530_530_100
    assert (result["split"], result["examples"], result["num_samples"], result["epochs"]) == ("test", 20, 3, 1)
    assert result["nll_nats"] <= result["bound_nats"] + 1e-3
    assert result["training"]["best_epoch"] == 1 and result["training"]["last_epoch"]["epoch"] == 1
    assert result["training"]["train_seconds"] > 0 and result["cores"] >= 1


@pytest.mark.large
@pytest.mark.skipif(not OMNIGLOT_DIR.is_dir(), reason=f"no Omniglot archives in {OMNIGLOT_DIR}")
def test_vma_omniglot_trains_a_run_and_measures_the_sweep_and_few_shot_accuracy(tmp_path):
    model_dir = str(tmp_path / "omniglot")
    run_experiment("vma_omniglot.py", f"--model_dir={model_dir}", f"--data_path={OMNIGLOT_DIR}",
                   "--epochs=1", "--steps_per_epoch=1", "--num_classes=2", "--targets_per_class=1",
                   "--memory_per_class=1", "--sweep_classes=1,2", "--sweep_per_class=1", "--sweep_targets=2",
                   "--num_samples=2", "--few_shot_episodes=1")
    assert read_json(model_dir, "config.json")["episodes"] == {"kind": "classes", "num_classes": 2, "num_targets": 1,
                                                               "num_memory": 1}
    result = read_json(model_dir, "vma_omniglot.json")
    assert [(row["num_classes"], row["memory_entries"], row["examples"]) for row in result["memory_size_sweep"]] == [
        (1, 1, 2), (2, 2, 2)]
    assert [(row["ways"], row["shots"], row["queries"]) for row in result["few_shot"]] == [
        (5, 1, 5), (5, 5, 5), (20, 1, 20), (20, 5, 20)]
    assert all(0 <= row["accuracy"] <= 1 for row in result["few_shot"])
    assert result["train_seconds"] > 0 and len(result["commit"]) >= 7 and result["cores"] >= 1


@needs_mnist
@pytest.mark.large
def test_hierarchies_compares_a_run_with_another_runs_same_epoch_image_by_image(tmp_path, monkeypatch):
    # Two tiny Ladder VAEs in experiments/hierarchies.py's place: "ablation" (1 epoch) against "seed"'s epoch 1.
    from tests.testing import TINY_LADDER

    train = [a for a in TINY_LADDER if not a.startswith("--dataset")] + ["--keep_checkpoints=5"]
    configurations = {
        "seed": dict(train=train + ["--epochs=2"], evaluate=dict(num_samples=2, max_examples=20), paper="-"),
        "ablation": dict(train=train + ["--epochs=1", "--override=seed=7"],
                         evaluate=dict(num_samples=2, max_examples=20, weights="epoch-1"),
                         equal_budget=dict(run="seed", epoch=1), paper="-"),
    }
    out, runs = tmp_path / "hierarchies.json", tmp_path / "runs"
    driver = (f"import sys; sys.path.insert(0, {EXPERIMENTS!r}); import hierarchies; from absl import app; "
              f"hierarchies.CONFIGURATIONS = {configurations!r}; "
              f"app.run(hierarchies.main, argv=['hierarchies.py', '--runs={runs}', '--out={out}'])")
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = read_json(out)["configurations"]
    seed_epoch_1 = read_json(runs, "seed", "evaluation_epoch-1.json")
    ablation, budget = result["ablation"]["evaluation"], result["ablation"]["equal_budget"]
    assert (ablation["weights"], seed_epoch_1["weights"], result["seed"]["evaluation"]["weights"]) == (
        "epoch-1", "epoch-1", "best")
    assert budget["evaluation"] == seed_epoch_1 and budget["run"] == "seed" and budget["epoch"] == 1
    assert budget["paired"]["examples"] == 20 and budget["paired"]["stderr"] > 0
    assert budget["paired"]["gap_nats"] == pytest.approx(ablation["nll_nats"] - seed_epoch_1["nll_nats"], abs=1e-6)
    assert (tmp_path / "kl_ablation.png").is_file()  # beside --out, not in the repository

    monkeypatch.syspath_prepend(EXPERIMENTS)
    import results_md

    assert "k = 2 on the first 20 test images): seed at its epoch 1" in results_md._equal_budget(
        "ablation", result["ablation"])
