"""zoo.runs.state: a resume falls back past a damaged checkpoint to an intact one; a damaged best-weights file is named
with the way out; a kept epoch's weights load."""

import os
import shutil

import numpy as np
import pytest

from tests.conftest import needs_mnist
from tests.testing import checkpointed_run, saved_state
from zoo.runs import errors as run_errors, files as run_files, state as run_state


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@needs_mnist
def test_resume_falls_back_past_a_truncated_newest_checkpoint(tiny_runs, tmp_path, capsys):
    model_dir = str(tmp_path / "damaged")
    shutil.copytree(tiny_runs["reference"], model_dir)
    checkpoints = os.path.join(model_dir, run_files.CHECKPOINT_DIR)
    newest = os.path.join(checkpoints, "epoch-3.data-00000-of-00001")
    _truncate(newest)
    model, state = checkpointed_run(model_dir)
    assert state.restore()
    assert int(state.epoch.numpy()) == 2
    out = capsys.readouterr().out
    assert f"Checkpoint {os.path.join(checkpoints, 'epoch-3')} is unreadable" in out
    assert f"Restored {os.path.join(checkpoints, 'epoch-2')} instead of the damaged" in out
    # The weights are epoch 2's, intact.
    reader_two = saved_state(os.path.join(checkpoints, "epoch-2"))
    model_values = [v.numpy() for v in model.variables]
    assert all(any(np.array_equal(m, r) for r in reader_two.values() if np.shape(r) == m.shape) for m in model_values)


@needs_mnist
def test_the_weights_of_a_kept_epoch_load_and_others_are_refused(tiny_runs):
    model_dir = tiny_runs["reference"]  # three epochs, every checkpoint kept
    checkpoints = os.path.join(model_dir, run_files.CHECKPOINT_DIR)
    model, _ = run_state.load_trained_model(model_dir, "epoch-2")
    epoch_two, epoch_three = (list(saved_state(os.path.join(checkpoints, f"epoch-{e}")).values()) for e in (2, 3))
    kernel = model.trainable_variables[0].numpy()
    assert any(np.array_equal(kernel, value) for value in epoch_two)
    assert not any(np.array_equal(kernel, value) for value in epoch_three)  # epoch 2's, not the newest
    with pytest.raises(run_errors.UsageError) as missing:
        run_state.load_trained_model(model_dir, "epoch-7")
    assert str(missing.value) == f"{checkpoints} holds no checkpoint of epoch 7 (kept: epoch-1, epoch-2, epoch-3)"
    for weights in ("epoch-0", "epoch-", "epoch-x", "Epoch-2", "first"):
        with pytest.raises(run_errors.UsageError) as refused:
            run_state.check_weights(weights)
        assert str(refused.value) == f'--weights must be "best", "last" or "epoch-N" (a kept checkpoint), got {weights!r}'


@needs_mnist
def test_a_truncated_best_weights_file_is_named_with_the_way_out(tiny_runs, tmp_path):
    model_dir = str(tmp_path / "damaged")
    shutil.copytree(tiny_runs["reference"], model_dir)
    path = os.path.join(model_dir, run_files.BEST_WEIGHTS)
    _truncate(path)
    with pytest.raises(run_errors.UsageError) as unreadable:
        run_state.load_trained_model(model_dir)
    message = str(unreadable.value)
    assert "\n" not in message and message.startswith(f"{path} is unreadable ("), message
    assert message.endswith("use --weights=last or retrain")
    model, _ = run_state.load_trained_model(model_dir, "last")  # the way out works
    assert model.latent_dim == 4
