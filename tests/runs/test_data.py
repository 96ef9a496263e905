"""zoo.runs.data: a run's training stream is a function of its seed and the epoch only."""

import numpy as np
import tensorflow as tf

from tests.conftest import needs_mnist
from zoo.runs import config as run_config, data as run_data


@needs_mnist
def test_the_training_stream_depends_on_the_seed_and_epoch_only():
    config = run_config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", 3, batch_size=7,
                                       train_split="train[:30]", validation_split="validation[:10]")
    config["steps_per_epoch"] = 6  # 4 full batches a pass: the epoch takes a second pass
    split = next(iter(run_data.load_split(config, "train[:30]", 30, shuffle=False))).numpy().reshape(30, -1)
    tf.random.set_seed(None)
    whole = [batch.numpy().reshape(7, -1) for batch in run_data.training_stream(config, 0)]
    tf.random.set_seed(0)  # a process seed (0 once broke tf.data's tensor-seeded shuffle) changes nothing
    resumed = [batch.numpy().reshape(7, -1) for batch in run_data.training_stream(config, 1)]
    tf.random.set_seed(None)
    assert len(whole) == 18 and len(resumed) == 12
    for a, b in zip(whole[6:], resumed):
        np.testing.assert_array_equal(a, b)
    # Which split rows each batch holds: a pass draws 28 distinct rows of the 30, each pass and epoch anew.
    rows = [[int(np.flatnonzero((split == image).all(axis=1))[0]) for image in batch] for batch in whole]
    first_pass = sum(rows[:4], [])
    assert len(set(first_pass)) == 28
    assert rows[:4] != rows[4:8] and rows[:4] != rows[6:10]
    other = dict(config, seed=1)
    assert not np.array_equal(next(iter(run_data.training_stream(other, 0))).numpy().reshape(7, -1), whole[0])
