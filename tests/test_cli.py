"""zoo.train / zoo.evaluate end to end: SIGKILL and resume, the NaN guard, bad flags."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import has_binarized_mnist
from zoo import train as zoo_train

pytestmark = pytest.mark.skipif(not has_binarized_mnist(), reason="needs binarized_mnist in TFDS_DATA_DIR")

# A tiny VAE on real data; batch 5 makes an epoch 400 steps, long enough to kill it midway.
TINY = [
    "--preset=vae_mnist_500_500_100", "--dataset=binarized_mnist", "--override=hidden_units=(32,)",
    "--override=latent_dim=4", "--train_split=train[:2000]", "--validation_split=validation[:200]",
    "--batch_size=5", "--verbose=0", "--steps_per_execution=1",
]
STEPS_PER_EPOCH = 400


def _start(module, *args):
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def _finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _checkpointed_epoch(model_dir):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(model_dir, zoo_train.CHECKPOINT_DIR))
    return 0 if latest is None else int(latest.rsplit("-", 1)[1])


def _saved_state(model_dir):
    """Every variable of the latest checkpoint (model, optimizer, RNG, counters), by key."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, zoo_train.CHECKPOINT_DIR))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in key}


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run killed with SIGKILL mid-epoch 2 and resumed, beside an uninterrupted one."""
    root = tmp_path_factory.mktemp("runs")
    reference, resumed = str(root / "reference"), str(root / "resumed")
    uninterrupted = _start("zoo.train", *TINY, "--epochs=3", f"--model_dir={reference}")
    victim = _start("zoo.train", *TINY, "--epochs=3", f"--model_dir={resumed}")
    deadline = time.time() + 240
    while _checkpointed_epoch(resumed) < 1 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    killed_code, _, killed_err = _finish(victim)
    killed_at = _checkpointed_epoch(resumed)
    rerun = _finish(_start("zoo.train", *TINY, "--epochs=3", f"--model_dir={resumed}"))
    return {
        "reference": reference, "resumed": resumed, "killed": (killed_code, killed_at, killed_err),
        "rerun": rerun, "uninterrupted": _finish(uninterrupted),
    }


def test_kill_mid_epoch_then_resume_matches_uninterrupted_run(runs):
    killed_code, killed_at, killed_err = runs["killed"]
    assert killed_code == -signal.SIGKILL, killed_err
    assert killed_at == 1  # killed during epoch 2: only epoch 1 was checkpointed
    code, out, err = runs["rerun"]
    assert code == 0, err
    assert "Resuming" in out and "after epoch 1 of 3" in out
    assert runs["uninterrupted"][0] == 0, runs["uninterrupted"][2]
    assert _checkpointed_epoch(runs["resumed"]) == _checkpointed_epoch(runs["reference"]) == 3
    reference, resumed = _saved_state(runs["reference"]), _saved_state(runs["resumed"])
    assert reference.keys() == resumed.keys()
    # Same weights, Adam moments, step counter and RNG states as if never interrupted.
    assert any("optimizer" in key for key in reference)
    for key in reference:
        np.testing.assert_allclose(resumed[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert int(resumed[next(k for k in resumed if k.startswith("epoch"))]) == 3


def test_run_dir_contents(runs):
    model_dir = runs["reference"]
    with open(os.path.join(model_dir, zoo_train.CONFIG_FILE)) as f:
        config = json.load(f)
    assert config["preset"] == "vae_mnist_500_500_100" and config["epochs"] == 3
    assert config["model"]["config"]["hidden_units"] == [32] and config["model"]["config"]["latent_dim"] == 4
    assert os.path.isfile(os.path.join(model_dir, zoo_train.BEST_WEIGHTS))
    logs = os.path.join(model_dir, zoo_train.LOG_DIR)
    assert {"train", "validation", "samples"} <= set(os.listdir(logs))
    model, _ = zoo_train.load_trained_model(model_dir)
    assert model.latent_dim == 4


def test_evaluate_cli_prints_and_writes_json(runs):
    code, out, err = _finish(_start(
        "zoo.evaluate", f"--model_dir={runs['reference']}", "--split=test", "--num_samples=20", "--max_examples=30",
    ))
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert list(result) == ["dataset", "split", "num_samples", "examples", "nll_nats", "nll_stderr",
                            "bound_nats", "seconds"]
    assert result["examples"] == 30 and result["num_samples"] == 20 and result["dataset"] == "binarized_mnist"
    # log p(x) >= ELBO in expectation: the importance-sampled NLL is below the bound.
    assert 50 < result["nll_nats"] < result["bound_nats"] < 600
    with open(os.path.join(runs["reference"], "evaluation.json")) as f:
        assert json.load(f) == result


def test_export_cli_writes_a_servable_versioned_savedmodel(runs, tmp_path):
    export_dir = str(tmp_path / "served")
    code, out, err = _finish(_start("zoo.export", f"--model_dir={runs['reference']}", f"--export_dir={export_dir}"))
    assert code == 0, err
    assert os.listdir(export_dir) == ["1"]
    for name in ("serving_default", "encode", "decode", "sample", "log_likelihood"):
        assert f"  {name}(" in out
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", os.path.join(export_dir, "1"), "--all"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for expected in (
        "signature_def['serving_default']", "signature_def['encode']", "signature_def['decode']",
        "signature_def['sample']", "signature_def['log_likelihood']",
        "inputs['x'] tensor_info:", "shape: (-1, 28, 28, 1)", "inputs['num_samples'] tensor_info:",
        "inputs['seed'] tensor_info:", "outputs['reconstruction'] tensor_info:", "outputs['log_likelihood'] tensor_info:",
        "inputs['z'] tensor_info:", "shape: (-1, 4)",
    ):
        assert expected in shown.stdout, expected


def test_nan_guard_keeps_last_good_checkpoint(runs, tmp_path):
    import shutil

    model_dir = str(tmp_path / "diverging")
    shutil.copytree(runs["reference"], model_dir)
    best = _md5(os.path.join(model_dir, zoo_train.BEST_WEIGHTS))
    before = _saved_state(model_dir)
    # Adam moves every weight by about the learning rate: 1e30 overflows on the next step.
    code, _, err = _finish(_start("zoo.train", *TINY, "--epochs=4", "--learning_rate=1e30", f"--model_dir={model_dir}"))
    assert code == 1
    message = err.strip().splitlines()[-1]
    first_bad_step = 3 * STEPS_PER_EPOCH + 2
    assert "non-finite training loss" in message and f"at step {first_bad_step} " in message, message
    assert "Traceback" not in err
    assert _checkpointed_epoch(model_dir) == 3
    assert _md5(os.path.join(model_dir, zoo_train.BEST_WEIGHTS)) == best
    after = _saved_state(model_dir)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def test_bad_flag_exits_with_one_line_reason():
    code, _, err = _finish(_start("zoo.train", "--preset=no_such_preset", "--dataset=binarized_mnist",
                                  "--epochs=1", "--model_dir=/tmp/unused"))
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("train.py: unknown preset 'no_such_preset'; available: ")


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"preset": "nope"}, "unknown preset 'nope'"),
        ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
        ({"epochs": 0}, "--epochs must be an int >= 1"),
        ({"overrides": {"no_such_arg": 1}}, "rejects the overrides"),
        ({"learning_rate": -1.0}, "--learning_rate must be > 0"),
        ({"train_split": "no_such_split"}, "dataset 'binarized_mnist': .*no_such_split"),
        ({"validation_split": "validation[:0]x"}, "dataset 'binarized_mnist'"),
    ],
)
def test_bad_train_config_raises_usage_error(kwargs, reason):
    args = {"preset": "vae_mnist_500_500_100", "dataset": "binarized_mnist", "epochs": 1, **kwargs}
    with pytest.raises(zoo_train.UsageError, match=reason):
        zoo_train.resolve_config(**args)


def test_foreign_and_mismatched_model_dir(runs, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    config = zoo_train.resolve_config("vae_mnist_500_500_100", "binarized_mnist", 1)
    with pytest.raises(zoo_train.UsageError, match="not a zoo.train run"):
        zoo_train.train(config, str(foreign))
    with pytest.raises(zoo_train.UsageError, match="holds a run with different .*model"):
        zoo_train.train(config, runs["reference"])
    with pytest.raises(zoo_train.UsageError, match="holds no config.json"):
        zoo_train.load_trained_model(str(foreign))
    empty = tmp_path / "empty"
    empty.mkdir()
    from zoo import evaluate

    with pytest.raises(zoo_train.UsageError, match="holds no config.json"):
        evaluate.evaluate(str(empty))
    with pytest.raises(zoo_train.UsageError, match="unknown dataset"):
        evaluate.evaluate(runs["reference"], dataset="cifar")
    with pytest.raises(zoo_train.UsageError, match="no_such_split"):
        evaluate.evaluate(runs["reference"], split="no_such_split")


def test_parse_overrides():
    assert zoo_train.parse_overrides(["latent_dim=50", "hidden_units=(200, 200)", "activation=tanh"]) == {
        "latent_dim": 50, "hidden_units": (200, 200), "activation": "tanh"
    }
    with pytest.raises(zoo_train.UsageError, match="key=value"):
        zoo_train.parse_overrides(["latent_dim"])
