"""zoo.runs.callbacks: the NaN guard names the real epoch and batch of a divergence, stops a diverging hierarchy, and
the keeper's last good checkpoint survives."""

import os

import pytest

from tests.conftest import needs_mnist
from tests.testing import TINY_LADDER, md5, run_app
from zoo.runs import config as run_config, errors as run_errors, files as run_files, training as run_training


@needs_mnist
def test_a_divergence_in_the_first_epoch_names_its_batch_and_that_no_checkpoint_exists(tmp_path):
    # A fresh run that diverges in its first epoch: no checkpoint exists yet, and the 10-step epoch is
    # not overrun by the default 25 steps per execution.
    config = run_config.resolve_config(
        "vae_mnist_500_500_100", "binarized_mnist", 1, batch_size=5, learning_rate=1e30,
        overrides={"hidden_units": (32,), "latent_dim": 4}, train_split="train[:50]", validation_split="validation[:10]")
    with pytest.raises(run_errors.TrainingDiverged) as diverged:
        run_training.train(config, str(tmp_path / "fresh"), verbose=0)
    message = str(diverged.value)
    assert "epoch 0" not in message and "no epoch had finished, so there is no checkpoint" in message, message
    batches = [int(word) for word in message.replace(",", " ").split() if word.isdigit()]
    assert "of 10)" in message and max(batches) <= 10, message
    assert not os.path.exists(tmp_path / "fresh" / run_files.LOCK_FILE)


# The NaN guard is the same callback for every model (tests/test_train.py runs it by default on a VAE); this
# runs it through a whole hierarchy.
@pytest.mark.large
@needs_mnist
def test_nan_guard_keeps_the_last_good_checkpoint_of_a_hierarchy(tmp_path):
    model_dir = str(tmp_path / "ladder")
    code, _, err = run_app("zoo.train", *TINY_LADDER, "--epochs=1", f"--model_dir={model_dir}")
    assert code == 0, err
    best = md5(os.path.join(model_dir, run_files.BEST_WEIGHTS))
    checkpoints = sorted(os.listdir(os.path.join(model_dir, run_files.CHECKPOINT_DIR)))
    stamps = {name: md5(os.path.join(model_dir, run_files.CHECKPOINT_DIR, name)) for name in checkpoints}
    code, _, err = run_app("zoo.train", *TINY_LADDER, "--epochs=2", "--learning_rate=1e30", f"--model_dir={model_dir}")
    assert code == 1, err
    message = err.strip().splitlines()[-1]
    assert "non-finite training loss" in message and "checkpoint (after epoch 1)" in message, message
    assert md5(os.path.join(model_dir, run_files.BEST_WEIGHTS)) == best
    for name, stamp in stamps.items():
        assert md5(os.path.join(model_dir, run_files.CHECKPOINT_DIR, name)) == stamp, name
