"""Training stability of the hierarchies: real-data runs stay finite and improve, gradient skipping never
stalls, the NaN guard keeps the last good checkpoint of a hierarchical run."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import has_binarized_mnist
from tests.goldens import binary_images
from zoo import optimizers
from zoo.runs import files as run_files

needs_mnist = pytest.mark.skipif(not has_binarized_mnist(), reason="needs binarized_mnist in TFDS_DATA_DIR")


@pytest.mark.large  # a convergence run: 300 updates of the paper's five-level model on real data
@needs_mnist
def test_ladder_preset_trains_stably_on_binarized_mnist():
    # The paper's five-level model with its defaults (batch norm, warm-up), 2 x 150 updates of batch 100.
    model = zoo.LadderVAE.from_preset("ladder_vae_mnist", seed=0)
    model.compile()
    train = zoo.data.load("binarized_mnist", "train", batch_size=100, seed=0)
    history = model.fit(train, epochs=2, steps_per_epoch=150, verbose=0).history
    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)
    assert history["bound"][1] > history["bound"][0] + 10.0, history["bound"]
    assert history["active_units"][1] >= 1, history["active_units"]


def test_gradient_skipping_never_stalls_training():
    # Every gradient norm exceeds the threshold: 3 skips, then one update rescaled to the threshold, and so on.
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, batch_norm=False, seed=0)
    optimizer = optimizers.ClippedAdam(1e-2, skip_threshold=1e-6, max_consecutive_skips=3)
    model.compile(optimizer=optimizer, steps_per_execution=5)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(binary_images((40, 8, 8, 1)), batch_size=2, epochs=1, verbose=0)  # 20 steps
    assert int(optimizer.iterations.numpy()) == 5 and int(optimizer.skipped_updates.numpy()) == 15
    assert all(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    # Below the threshold nothing is skipped, and an applied update equals plain Adam's.
    plain, guarded = keras_adam_and_guarded(threshold=1e6)
    for optimizer in (plain, guarded):
        optimizer[0].apply([tf.constant([0.5, -2.0])], [optimizer[1]])
    np.testing.assert_allclose(plain[1].numpy(), guarded[1].numpy(), rtol=1e-7)
    assert int(guarded[0].skipped_updates.numpy()) == 0


def keras_adam_and_guarded(threshold):
    import keras

    make = lambda: keras.Variable([1.0, 1.0])  # noqa: E731
    return (keras.optimizers.Adam(0.1), make()), (optimizers.ClippedAdam(0.1, skip_threshold=threshold), make())


def test_gradient_skipping_skips_a_non_finite_update_and_survives_config():
    optimizer = optimizers.ClippedAdam(0.1, skip_threshold=10.0, max_consecutive_skips=2)
    variable = tf.Variable([1.0, 1.0])
    optimizer.apply([tf.constant([np.nan, 1.0])], [variable])
    np.testing.assert_array_equal(variable.numpy(), [1.0, 1.0])
    assert int(optimizer.skipped_updates.numpy()) == 1 and int(optimizer.iterations.numpy()) == 0
    clone = optimizers.ClippedAdam.from_config(optimizer.get_config())
    assert (clone.skip_threshold, clone.max_consecutive_skips) == (10.0, 2)


TINY_LADDER = [
    "--preset=ladder_vae_mnist", "--dataset=binarized_mnist", "--train_split=train[:200]",
    "--validation_split=validation[:50]", "--batch_size=20", "--verbose=0", "--steps_per_execution=1",
    "--override=levels=({'hidden_units': (16,), 'latent_dim': 4}, {'hidden_units': (8,), 'latent_dim': 2})",
]


def _train(*args):
    process = subprocess.run(
        [sys.executable, "-m", "zoo.train", *TINY_LADDER, *args], capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return process.returncode, process.stderr


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


@needs_mnist
def test_nan_guard_keeps_the_last_good_checkpoint_of_a_hierarchy(tmp_path):
    model_dir = str(tmp_path / "ladder")
    code, err = _train("--epochs=1", f"--model_dir={model_dir}")
    assert code == 0, err
    best = _md5(os.path.join(model_dir, run_files.BEST_WEIGHTS))
    checkpoints = sorted(os.listdir(os.path.join(model_dir, run_files.CHECKPOINT_DIR)))
    stamps = {name: _md5(os.path.join(model_dir, run_files.CHECKPOINT_DIR, name)) for name in checkpoints}
    code, err = _train("--epochs=2", "--learning_rate=1e30", f"--model_dir={model_dir}")
    assert code == 1, err
    message = err.strip().splitlines()[-1]
    assert "non-finite training loss" in message and "checkpoint (after epoch 1)" in message, message
    assert _md5(os.path.join(model_dir, run_files.BEST_WEIGHTS)) == best
    for name, stamp in stamps.items():
        assert _md5(os.path.join(model_dir, run_files.CHECKPOINT_DIR, name)) == stamp, name


@needs_mnist
def test_training_with_gradient_skipping_from_the_command_line(tmp_path):
    model_dir = str(tmp_path / "skipping")
    code, err = _train("--epochs=1", "--skip_gradient_norm=1e-6", f"--model_dir={model_dir}")
    assert code == 0, err
    import json

    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["skip_gradient_norm"] == 1e-6
    code, err = _train("--epochs=1", "--skip_gradient_norm=-1", f"--model_dir={model_dir}_bad")
    assert code == 2 and err.strip() == "train.py: --skip_gradient_norm must be a finite number > 0, got -1.0", err
