"""zoo.runs.logs: the learning curve read back from a run's TensorBoard logs (sessions, torn records, epochs logged
again, NLL estimates) and the training wall time."""

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import needs_mnist
from zoo.runs import config as run_config, errors as run_errors, logs as run_logs, training as run_training


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-epoch zoo.train run made in two sessions (1 epoch, then resumed), with the History of each."""
    model_dir = str(tmp_path_factory.mktemp("tiny") / "run")
    config = run_config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", 2, batch_size=20,
                                      overrides={"hidden_units": (8,), "latent_dim": 2}, steps_per_epoch=3,
                                      train_split="train[:100]", validation_split="validation[:40]")
    histories = [run_training.train({**config, "epochs": epochs}, model_dir, verbose=0).history for epochs in (1, 2)]
    return model_dir, {key: histories[0][key] + histories[1][key] for key in ("bound", "val_bound")}


@needs_mnist
def test_the_learning_curve_is_what_training_logged(tiny_run, tmp_path):
    model_dir, history = tiny_run
    curve = run_logs.learning_curve(model_dir)
    assert len(list((pathlib.Path(model_dir) / "logs" / "train").glob("events.out.tfevents.*"))) == 2  # two sessions
    assert [row["epoch"] for row in curve["epochs"]] == [1, 2] and curve["missing_epochs"] == []
    np.testing.assert_allclose([row["train_bound"] for row in curve["epochs"]], history["bound"], rtol=1e-6)
    np.testing.assert_allclose([row["validation_bound"] for row in curve["epochs"]], history["val_bound"], rtol=1e-6)
    assert curve["selected_by"] == "validation_bound"
    assert curve["best_epoch"] == 1 + int(np.argmax(history["val_bound"]))
    assert "validation_nll" not in curve["epochs"][0]  # this run logged no NLL estimate
    assert run_logs.training_seconds(model_dir) > 0

    # A torn last record in the first session's file, an epoch logged again later (re-run after a lost checkpoint)
    # and a validation NLL estimate (zoo.runs.hypermodel.ValidationLogLikelihood's `val_log_likelihood`) of epoch 2.
    copy = str(tmp_path / "run")
    shutil.copytree(model_dir, copy)
    first = sorted((pathlib.Path(copy) / "logs" / "train").glob("events.out.tfevents.*"))[0]
    with open(first, "ab") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00torn")
    writer = tf.summary.create_file_writer(str(pathlib.Path(copy) / "logs" / "validation"))
    with writer.as_default():
        tf.summary.scalar("epoch_bound", 10.0, step=0)
        tf.summary.scalar("epoch_log_likelihood", -123.5, step=1)
    writer.close()
    changed = run_logs.learning_curve(copy)
    assert [row["train_bound"] for row in changed["epochs"]] == [row["train_bound"] for row in curve["epochs"]]
    assert [row["validation_bound"] for row in changed["epochs"]] == [10.0, curve["epochs"][1]["validation_bound"]]
    assert [row["validation_nll"] for row in changed["epochs"]] == [None, 123.5]
    assert changed["best_epoch"] == 1
    with pytest.raises(run_errors.UsageError, match="no TensorBoard epoch logs"):
        run_logs.learning_curve(str(tmp_path))


def test_training_seconds_sums_the_sessions_and_not_the_time_between_them(tmp_path):
    # Two sessions (event files) at hand-set times: 100-130 s and, two hours later, 7300-7350 s.
    directory = tmp_path / "logs" / "train"
    directory.mkdir(parents=True)
    for name, times in (("events.out.tfevents.1", (100.0, 110.0, 130.0)), ("events.out.tfevents.2", (7300.0, 7350.0))):
        with tf.io.TFRecordWriter(str(directory / name)) as writer:
            for step, wall_time in enumerate(times):
                writer.write(tf.compat.v1.Event(wall_time=wall_time, step=step).SerializeToString())
    assert run_logs.training_seconds(str(tmp_path)) == 30.0 + 50.0
