"""zoo.runs.state: a resume falls back past a damaged checkpoint to an intact one."""

import os
import shutil

import numpy as np

from tests.conftest import needs_mnist
from tests.testing import checkpointed_run, saved_state
from zoo.runs import files as run_files


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
