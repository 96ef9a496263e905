"""zoo.runs.callbacks: the NaN guard stops a diverging hierarchy and the keeper's last good checkpoint survives."""

import os

import pytest

from tests.conftest import needs_mnist
from tests.testing import TINY_LADDER, md5, run_app
from zoo.runs import files as run_files


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
