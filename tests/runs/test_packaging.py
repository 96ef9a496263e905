"""zoo.runs.packaging and its app: a user's own run packaged in the zoo's format by one command."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import has_binarized_mnist
from zoo.runs import config as run_config, errors as run_errors, evaluation as run_evaluation, logs as run_logs
from zoo.runs import packaging
from zoo.runs import state as run_state, training as run_training

ROOT = pathlib.Path(__file__).parents[2]
K, EXAMPLES = 5, 20  # the card's test NLL: k = 5 on the first 20 test images
PACKAGE = {"1", "config.json", "model.weights.h5", "metrics.json", "MODEL_CARD.md", "learning_curve.json",
           "learning_curve.png"}
SIGNATURES = {"serving_default", "reconstruct", "encode", "decode", "sample", "log_likelihood"}

pytestmark = pytest.mark.skipif(not has_binarized_mnist(), reason="binarized_mnist is not prepared in TFDS_DATA_DIR")


def _package(*args):
    result = subprocess.run([sys.executable, "-m", "zoo.package", *args], capture_output=True, text=True, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr


def _digest(directory):
    """Every file under `directory` with its MD5: equal digests, the same package."""
    return {str(path.relative_to(directory)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(pathlib.Path(directory).rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch zoo.train run of a tiny VAE (seconds to train), and the directory of its package, made by the
    one command (which evaluates the run first: it has no evaluation yet)."""
    root = tmp_path_factory.mktemp("packaging")
    model_dir, export_dir = str(root / "run"), str(root / "savedmodels" / "tiny")
    config = run_config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", 2, batch_size=20,
                                       overrides={"hidden_units": (8,), "latent_dim": 2}, steps_per_epoch=2,
                                       train_split="train[:100]", validation_split="validation[:40]")
    run_training.train(config, model_dir, verbose=0)
    code, out, err = _package(f"--model_dir={model_dir}", f"--export_dir={export_dir}", f"--num_samples={K}",
                              f"--max_examples={EXAMPLES}", "--limitations=A test model.")
    assert code == 0, err[-3000:]
    return model_dir, export_dir, out


def test_one_command_writes_the_package(run):
    model_dir, export_dir, out = run
    assert set(os.listdir(export_dir)) == PACKAGE
    assert os.path.isfile(os.path.join(export_dir, "1", "saved_model.pb"))
    assert sorted(os.listdir(os.path.dirname(export_dir))) == ["tiny"]  # nothing staged is left beside it
    metrics = json.loads(pathlib.Path(export_dir, "metrics.json").read_text())
    evaluation = json.loads(pathlib.Path(model_dir, run_evaluation.RESULT_FILE).read_text())
    assert (evaluation["num_samples"], evaluation["examples"]) == (K, EXAMPLES)  # evaluated by the packaging
    assert metrics["test"] == {key: evaluation[key] for key in metrics["test"]}
    assert (metrics["name"], metrics["version"], metrics["epochs"], metrics["parameters"]) == ("tiny", 1, 2, 13428)
    assert metrics["train_seconds"] == round(run_logs.training_seconds(model_dir), 1)
    assert metrics["commit"] is None and metrics["machine"] is None and metrics["packaged_at_commit"]
    assert json.loads(pathlib.Path(export_dir, "config.json").read_text()) == {
        key: value for key, value in json.loads(pathlib.Path(model_dir, "config.json").read_text()).items()
        if key != "data_path"}
    curve = json.loads(pathlib.Path(export_dir, "learning_curve.json").read_text())
    assert [row["epoch"] for row in curve["epochs"]] == [1, 2]
    assert curve["test"]["nll_nats"] == metrics["test"]["nll_nats"]
    card = pathlib.Path(export_dir, "MODEL_CARD.md").read_text()
    test = metrics["test"]
    for fact in (f"{test['nll_nats']:.2f} ± {test['nll_stderr']:.2f} nats (k = {K}, {EXAMPLES} test images)",
                 "| commit | not recorded (training code)", "![learning curve](learning_curve.png)",
                 f"from_preset(\"{export_dir}\")", f"--model_base_path={export_dir}`", "Signatures of version 1:",
                 "- `log_likelihood`: `x` float32 [None, 28, 28, 1], `num_samples` int32 [], `seed` int32 [2]",
                 metrics["package_command"], "A test model."):
        assert fact in card, fact
    assert f"as {export_dir}/1: test NLL {test['nll_nats']:.2f}" in out


def test_the_served_log_likelihood_reproduces_the_check(run):
    _, export_dir, _ = run
    check = json.loads(pathlib.Path(export_dir, "metrics.json").read_text())["check"]
    assert (check["examples"], check["num_samples"], check["seed"]) == (100, K, 0)
    images = next(iter(zoo.data.load("binarized_mnist", split="test", batch_size=check["examples"], shuffle=False)))
    served = tf.saved_model.load(os.path.join(export_dir, "1"))
    assert set(served.signatures) == SIGNATURES
    nll = -served.signatures["log_likelihood"](x=images, num_samples=tf.constant(K), seed=tf.constant([0, 0]))[
        "log_likelihood"].numpy()
    np.testing.assert_allclose([nll.mean(), nll.std(ddof=1) / np.sqrt(len(nll))],
                               [check["nll_nats"], check["nll_stderr"]], rtol=1e-5)


def test_only_an_evaluation_of_the_best_weights_at_the_cards_protocol_is_reused(run, tmp_path):
    model_dir = shutil.copytree(run[0], tmp_path / "run")
    path = model_dir / run_evaluation.RESULT_FILE
    result = json.loads(path.read_text())  # the packaging command's own evaluation
    assert (result["weights"], result["num_samples"], result["examples"]) == ("best", K, EXAMPLES)
    assert packaging.matching_evaluation(str(model_dir), K, EXAMPLES) == result
    assert packaging.matching_evaluation(str(model_dir), K + 1, EXAMPLES) is None
    assert packaging.matching_evaluation(str(model_dir), K, EXAMPLES + 1) is None
    path.write_text(json.dumps({**result, "weights": "last"}))
    assert packaging.matching_evaluation(str(model_dir), K, EXAMPLES) is None


def test_a_run_without_a_finite_bound_is_refused_in_one_line(run, tmp_path):
    model_dir = shutil.copytree(run[0], tmp_path / "run")
    shutil.rmtree(model_dir / "logs")
    for subdirectory in ("train", "validation"):  # every epoch's bound NaN, as a diverged run logs them
        with tf.summary.create_file_writer(str(model_dir / "logs" / subdirectory)).as_default():
            for step in range(2):
                tf.summary.scalar("epoch_bound", float("nan"), step=step)
    with pytest.raises(run_errors.UsageError, match="logged no finite validation bound: no epoch's weights were kept"):
        packaging.package(str(model_dir), str(tmp_path / "package"))
    assert not (tmp_path / "package").exists()


def test_from_preset_rebuilds_the_runs_best_model(run):
    model_dir, export_dir, _ = run
    packaged = zoo.LatentVariableModel.from_preset(export_dir)
    trained, _ = run_state.load_trained_model(model_dir, "best")
    assert len(packaged.weights) == len(trained.weights)
    for ours, theirs in zip(packaged.weights, trained.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    images = next(iter(zoo.data.load("binarized_mnist", split="test[:8]", batch_size=8, shuffle=False)))
    np.testing.assert_allclose(packaged.log_likelihood(images, num_samples=K, seed=3).numpy(),
                               trained.log_likelihood(images, num_samples=K, seed=3).numpy(), rtol=1e-6)
    assert np.isfinite(packaged.log_likelihood(images, num_samples=K, seed=3).numpy()).all()


def test_repackaging_is_the_next_version_and_a_failure_keeps_the_old_package(run, tmp_path, monkeypatch):
    model_dir, export_dir, _ = run
    export_dir = shutil.copytree(export_dir, tmp_path / "tiny")
    before = _digest(export_dir)

    def broken(*args, **kwargs):
        raise RuntimeError("the card failed")

    # A failure after the SavedModel, weights and metrics are written: the old package stays as it was.
    with monkeypatch.context() as patch:
        patch.setattr(packaging, "model_card", broken)
        with pytest.raises(RuntimeError, match="the card failed"):
            packaging.package(model_dir, str(export_dir), K, EXAMPLES, progress=False)
    assert _digest(export_dir) == before and sorted(os.listdir(tmp_path)) == ["tiny"]

    evaluation = pathlib.Path(model_dir, run_evaluation.RESULT_FILE)
    evaluated = evaluation.stat().st_mtime_ns
    # A second evaluation, on every test image, is kept beside the card's (it is the caller's to measure).
    full = {**json.loads(evaluation.read_text()), "num_samples": 2, "examples": 10000, "nll_nats": 123.456,
            "command": "python -m zoo.evaluate --num_samples=2"}
    for wrong, got in (({"examples": 20}, "got 20 examples of 'test' with 'best'"),
                       ({"weights": "last"}, "got 10000 examples of 'test' with 'last'")):
        with pytest.raises(ValueError, match=rf"full_split_test must cover the test split \(10000 examples\) with the "
                                             rf"best weights, {got}"):
            packaging.package(model_dir, str(export_dir), K, EXAMPLES, progress=False,
                              metrics={"full_split_test": {**full, **wrong}})
    with pytest.raises(ValueError, match=r"zoo.evaluate result with its command, missing \['command'\]"):
        packaging.package(model_dir, str(export_dir), K, EXAMPLES, progress=False,
                          metrics={"full_split_test": {k: v for k, v in full.items() if k != "command"}})
    leftover = tmp_path / ".tiny.old"  # the package a finished swap replaced, its removal killed half-way
    leftover.mkdir()
    (leftover / "metrics.json").write_text("{}")
    path = packaging.package(model_dir, str(export_dir), K, EXAMPLES, progress=False,
                             metrics={"full_split_test": full})
    assert path == os.path.join(export_dir, "2")
    assert set(os.listdir(export_dir)) == PACKAGE - {"1"} | {"2"} and sorted(os.listdir(tmp_path)) == ["tiny"]
    metrics = json.loads((export_dir / "metrics.json").read_text())
    assert metrics["version"] == 2 and "Signatures of version 2:" in (export_dir / "MODEL_CARD.md").read_text()
    # The run's evaluation fits the protocol: reported, not measured again.
    assert evaluation.stat().st_mtime_ns == evaluated
    assert metrics["test"] == {key: value for key, value in json.loads(evaluation.read_text()).items()
                               if key in metrics["test"]}
    assert metrics["full_split_test"] == {key: full[key] for key in (*packaging.TEST_KEYS, "command")}
    card = (export_dir / "MODEL_CARD.md").read_text()
    assert "| test NLL, every test image | 123.46 ± " in card and "k = 2, 10,000 (all) test images" in card
    assert "\n    python -m zoo.evaluate --num_samples=2\n" in card
    assert set(tf.saved_model.load(path).signatures) == SIGNATURES


def test_bad_input_is_one_line_with_exit_status_2_and_leaves_the_package(run, tmp_path):
    model_dir, export_dir, _ = run
    export_dir = shutil.copytree(export_dir, tmp_path / "tiny")
    before = _digest(export_dir)
    (tmp_path / "empty").mkdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cases = [
        ([f"--model_dir={tmp_path / 'missing'}", f"--export_dir={export_dir}"], "does not exist"),
        ([f"--model_dir={tmp_path / 'empty'}", f"--export_dir={export_dir}"], "holds no config.json"),
        ([f"--model_dir={foreign / 'notes.txt'}", f"--export_dir={export_dir}"], "is a file, not a run directory"),
        ([f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--num_samples=0"],
         "--num_samples must be an int >= 1"),
        ([f"--model_dir={model_dir}", f"--export_dir={foreign}"],
         "holds files that are not a zoo package's (notes.txt)"),
        ([f"--model_dir={model_dir}", f"--export_dir={export_dir / 'metrics.json' / 'x'}"], "metrics.json is a file"),
    ]
    for args, reason in cases:
        code, out, err = _package(*args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("package.py: ") and reason in err, (args, err)
    assert _digest(export_dir) == before and (foreign / "notes.txt").read_text() == "mine"


def test_a_full_disk_is_one_line_before_anything_is_written(run, tmp_path):
    model_dir, export_dir, _ = run
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        target = shutil.copytree(export_dir, disk / "tiny")  # the old package, on a disk too small for the new one
        before = _digest(target)
        code, _, err = _package(f"--model_dir={model_dir}", f"--export_dir={target}", f"--num_samples={K}",
                                f"--max_examples={EXAMPLES}")
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"package.py: --export_dir {str(target)!r}: no space left on device for the package"), err
        assert _digest(target) == before and sorted(os.listdir(disk)) == ["tiny"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_the_learning_curve_names_epochs_missing_from_the_logs(run, tmp_path, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    pretrained = importlib.import_module("pretrained")
    model_dir = run[0]
    name = "vae_mnist_530_530_100"  # a packaged model's metrics and card text, given the tiny run's curve
    metrics = json.loads((ROOT / "savedmodels" / name / "metrics.json").read_text())
    # Three epochs trained, two logged: the third is reported missing.
    metrics["learning_curve"] = packaging.write_learning_curve(model_dir, str(tmp_path), name, 3, metrics["test"])
    written = json.loads((tmp_path / "learning_curve.json").read_text())
    curve = run_logs.learning_curve(model_dir)
    assert written["epochs"] == curve["epochs"] and written["missing_epochs"] == [3]
    assert written["test"] == {"epoch": curve["best_epoch"], **{key: metrics["test"][key] for key in (
        "split", "num_samples", "examples", "nll_nats", "nll_stderr")}}
    assert (tmp_path / "learning_curve.png").read_bytes().startswith(b"\x89PNG")
    card = packaging.model_card(metrics, "- `sample`", **pretrained.card_text(name))
    assert "## Learning curve\n\n![learning curve](learning_curve.png)" in card
    assert "[learning_curve.json](learning_curve.json)" in card and "Not kept" not in card
    assert f"Those weights are epoch {curve['best_epoch']} of 3" in card
    assert "Epoch 3 is not in the logs" in card


@pytest.mark.parametrize("best, trend", [
    (20, "the best epoch is the last one logged, so the bound was still improving when training stopped"),
    (19, "the epoch after the best one did not improve on it"),
    (17, "none of the 3 epochs after the best one improved on it"),
])
def test_the_card_reads_the_learning_curve_after_the_best_epoch(best, trend):
    metrics = json.loads((ROOT / "savedmodels" / "nvae_mnist_small" / "metrics.json").read_text())
    metrics["learning_curve"] = {"json": "learning_curve.json", "png": "learning_curve.png", "epochs": 20,
                                 "missing_epochs": [], "selected_by": "validation_bound", "best_epoch": best,
                                 "best_bound": -89.0, "earlier_epoch": 15, "earlier_bound": -90.5,
                                 "last_epoch": 20, "last_bound": -89.25}
    card = packaging.model_card(metrics, "- `sample`")
    assert (f"Those weights are epoch {best} of 20, the best validation bound (-bound 89.00 nats); from epoch 15 to "
            f"epoch 20 the validation -bound went from 90.50 to 89.25 nats (-1.25); {trend}.") in card
