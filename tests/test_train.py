"""`python -m zoo.train` end to end: one-line refusals with exit status 2 before any work, SIGKILL and resume,
the NaN guard's message, a second process. (What the run library does with runs made by earlier code and with a
full disk is tested in-process in tests/runs/test_training.py: the app turns its `UsageError` into the one line.)"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import needs_mnist
from tests.testing import (
    STEPS_PER_EPOCH, TINY, TINY_LADDER, checkpointed_epoch, finish_app, fits, md5,
    preset_dataset_pairs, run_app, saved_state, start_app,
)
from zoo.runs import config as run_config, errors as run_errors, files as run_files, state as run_state


def test_bad_flag_exits_fast_with_one_line_reason():
    start = time.perf_counter()
    code, out, err = run_app("zoo.train", "--preset=no_such_preset", "--dataset=binarized_mnist",
                          "--epochs=1", "--model_dir=/tmp/unused")
    # Flags are checked before TensorFlow is imported (which takes 5-45 s).
    assert time.perf_counter() - start < 5
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("train.py: unknown preset 'no_such_preset'; available: ")


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--learning_rate=inf"], "--learning_rate must be a finite number > 0, got inf"),
        (["--learning_rate=nan"], "--learning_rate must be a finite number > 0, got nan"),
        (["--steps_per_execution=0"], "--steps_per_execution must be an int >= 1, got 0"),
        (["--steps_per_execution=-3"], "--steps_per_execution must be an int >= 1, got -3"),
        (["--dataset=omniglot", "--preset=vae_ocr_letters_200_200_50"],
         "preset 'vae_ocr_letters_200_200_50' takes 16x8x1 inputs but dataset 'omniglot' gives 28x28x1; "
         "datasets that fit: none in zoo.data"),
        (["--dataset=frey_faces", "--data_path=/"],
         "preset 'vae_mnist_500_500_100' takes 28x28x1 inputs but dataset 'frey_faces' gives 28x20x1; "
         "datasets that fit: binarized_mnist, mnist, omniglot"),
        (["--dataset=frey_faces", "--preset=memvae_frey_faces_200_10"],
         "dataset 'frey_faces' is read from a file: pass --data_path=/path/to/frey_rawface.mat"),
        (["--dataset=cifar"], "unknown dataset 'cifar'; available: binarized_mnist, frey_faces, mnist, omniglot"),
        (["--episode_memory=4"], "--episode_memory: only for presets whose memory comes with each batch"),
        (["--override=latent_dim"], "--override expects key=value, got 'latent_dim'"),
        (["--num_importance_samples=0"], "--num_importance_samples must be an int >= 1, got 0"),
        (["--num_importance_samples=3", "--override=num_importance_samples=7"],  # the override was dropped silently
         "--num_importance_samples=3 and --override=num_importance_samples=7 both set K; pass one"),
        # The samplers take int32 seeds: 2**31 failed after every epoch (the sample grid), a wrapped one is another seed.
        (["--seed=2147483648"], "--seed must be an int in [0, 2**31), got 2147483648"),
    ],
)
def test_bad_flag_values_are_refused_in_one_line(tmp_path, args, reason):
    model_dir = tmp_path / "run"
    defaults = {"--preset": "vae_mnist_500_500_100", "--dataset": "binarized_mnist", "--epochs": "1"}
    defaults.update(arg.split("=", 1) for arg in args if arg.split("=", 1)[0] in defaults)
    rest = [arg for arg in args if arg.split("=", 1)[0] not in defaults]
    code, out, err = run_app("zoo.train", *[f"{k}={v}" for k, v in defaults.items()], *rest, f"--model_dir={model_dir}")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and reason in err, err
    assert not model_dir.exists()


def test_model_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    code, _, err = run_app("zoo.train", "--preset=vae_mnist_500_500_100", "--dataset=binarized_mnist", "--epochs=1",
                        f"--model_dir={path}")
    assert code == 2 and err.strip() == f"train.py: --model_dir '{path}' is a file, not a directory; pick a directory"
    with pytest.raises(run_errors.UsageError, match="is a file, not a directory"):
        run_config.check_run_dir(str(path), {})
    # Under a file: a traceback (NotADirectoryError) before.
    code, _, err = run_app("zoo.train", "--preset=vae_mnist_500_500_100", "--dataset=binarized_mnist", "--epochs=1",
                           f"--model_dir={path / 'run'}")
    assert code == 2 and err.strip() == f"train.py: --model_dir '{path / 'run'}' cannot be made: {path} is a file"


@needs_mnist
def test_config_is_written_only_after_every_check(tmp_path):
    model_dir = tmp_path / "run"
    # The flags become a configuration (every check that needs the data runs there) before the directory is made.
    with pytest.raises(run_errors.UsageError, match=r"^--train_split 'train\[:3\]' holds fewer examples than one "
                                                     r"batch of 5"):
        run_config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", 1, batch_size=5, train_split="train[:3]",
                                  overrides={"hidden_units": (32,), "latent_dim": 4})
    small = [*TINY[:4], "--batch_size=5", "--validation_split=validation[:10]", "--epochs=1", f"--model_dir={model_dir}"]
    code, _, err = run_app("zoo.train", *small, "--train_split=train[:10]")  # the corrected retry
    assert code == 0, err
    assert json.loads((model_dir / run_files.CONFIG_FILE).read_text())["train_split"] == "train[:10]"
    assert not (model_dir / run_files.LOCK_FILE).exists()
    # Quiet by default: no TensorFlow start-up lines, CUDA probing or TFDS INFO lines.
    assert err == "", err


@pytest.mark.parametrize("preset, dataset", [(p, d) for p, d in preset_dataset_pairs() if not fits(p, d)])
def test_every_refused_preset_dataset_pair_gets_one_line_before_any_work(preset, dataset, tmp_path):
    model_dir = tmp_path / "run"
    code, out, err = run_app("zoo.train", f"--preset={preset}", f"--dataset={dataset}", "--epochs=1",
                          f"--model_dir={model_dir}", *(["--data_path=/"] if dataset == "frey_faces" else []))
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith(f"train.py: preset '{preset}' takes "), err
    assert f"but dataset '{dataset}' gives" in err
    assert not model_dir.exists()


@needs_mnist
def test_kill_mid_epoch_then_resume_matches_uninterrupted_run(tiny_runs):
    killed_code, killed_at, killed_err = tiny_runs["killed"]
    assert killed_code == -signal.SIGKILL, killed_err
    assert killed_at == 1  # killed during epoch 2: only epoch 1 was checkpointed
    code, out, err = tiny_runs["rerun"]
    assert code == 0, err
    assert "Resuming" in out and "after epoch 1 of 3" in out
    assert tiny_runs["uninterrupted"][0] == 0, tiny_runs["uninterrupted"][2]
    assert checkpointed_epoch(tiny_runs["resumed"]) == checkpointed_epoch(tiny_runs["reference"]) == 3
    reference, resumed = saved_state(tiny_runs["reference"]), saved_state(tiny_runs["resumed"])
    assert reference.keys() == resumed.keys()
    # Same weights, Adam moments, step counter and RNG states as if never interrupted.
    assert any("optimizer" in key for key in reference)
    for key in reference:
        np.testing.assert_allclose(resumed[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert int(resumed[next(k for k in resumed if k.startswith("epoch"))]) == 3


@needs_mnist
def test_run_dir_contents(tiny_runs):
    model_dir = tiny_runs["reference"]
    with open(os.path.join(model_dir, run_files.CONFIG_FILE)) as f:
        config = json.load(f)
    assert config["preset"] == "vae_mnist_500_500_100" and config["epochs"] == 3
    assert config["model"]["config"]["hidden_units"] == [32] and config["model"]["config"]["latent_dim"] == 4
    assert os.path.isfile(os.path.join(model_dir, run_files.BEST_WEIGHTS))
    logs = os.path.join(model_dir, run_files.LOG_DIR)
    assert {"train", "validation", "samples"} <= set(os.listdir(logs))
    model, _ = run_state.load_trained_model(model_dir)
    assert model.latent_dim == 4


@needs_mnist
def test_second_training_process_on_a_model_dir_is_refused(tiny_runs, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(tiny_runs["reference"], model_dir)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (model_dir / run_files.LOCK_FILE).write_text(f"{holder.pid} {socket.gethostname()}\n")
        code, _, err = run_app("zoo.train", *TINY, "--epochs=4", f"--model_dir={model_dir}")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"train.py: --model_dir '{model_dir}' is in use by process {holder.pid} on {socket.gethostname()} "
        f"({model_dir / run_files.LOCK_FILE}); wait for it to finish or pick another directory (delete the lock only "
        "if that process is gone)"
    ]
    assert checkpointed_epoch(str(model_dir)) == 3  # untouched


@needs_mnist
def test_nan_guard_keeps_last_good_checkpoint(tiny_runs, tmp_path):
    model_dir = str(tmp_path / "diverging")
    shutil.copytree(tiny_runs["reference"], model_dir)
    best = md5(os.path.join(model_dir, run_files.BEST_WEIGHTS))
    before = saved_state(model_dir)
    # Adam moves every weight by about the learning rate: 1e30 overflows on the next step.
    code, _, err = finish_app(start_app("zoo.train", *TINY, "--epochs=4", "--learning_rate=1e30", f"--model_dir={model_dir}"))
    assert code == 1
    message = err.strip().splitlines()[-1]
    first_bad_step = 3 * STEPS_PER_EPOCH + 2
    assert "non-finite training loss" in message and f"at step {first_bad_step} " in message, message
    assert "(epoch 4, batch 2 of 400)" in message and "checkpoint (after epoch 3)" in message, message
    assert "Traceback" not in err
    assert checkpointed_epoch(model_dir) == 3
    assert md5(os.path.join(model_dir, run_files.BEST_WEIGHTS)) == best
    after = saved_state(model_dir)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def test_a_bad_gradient_skipping_threshold_is_refused_in_one_line(tmp_path):
    code, _, err = run_app("zoo.train", *TINY_LADDER, "--epochs=1", "--skip_gradient_norm=-1", f"--model_dir={tmp_path}/run")
    assert code == 2 and err.strip() == "train.py: --skip_gradient_norm must be a finite number > 0, got -1.0", err
