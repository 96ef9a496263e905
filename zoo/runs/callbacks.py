"""The Keras callbacks of a training run: the NaN guard, the epoch keeper (checkpoint and best weights), samples."""

import contextlib
import math
import os

import keras
import numpy as np
import tensorflow as tf

from zoo.runs.files import BEST_WEIGHTS, LOG_DIR
from zoo.runs.state import write_weights


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss (or weights after an epoch), saying where and what is kept.

    Args:
        state: the run's `zoo.runs.state.RunState` (its epoch counter and directory name the kept checkpoint).
        steps_per_epoch: int, to name the epoch and batch of a step.

    `failure` is None, or the one-line reason training stopped; callbacks after this one save
    nothing once it is set.
    """

    def __init__(self, state, steps_per_epoch):
        super().__init__()
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.failure = None

    def _where(self, step):
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        return f"epoch {epoch + 1}, batch {batch + 1} of {self.steps_per_epoch}"

    def _kept(self):
        done = int(self.state.epoch.numpy())
        if not done:
            return "no epoch had finished, so there is no checkpoint"
        return f"the last good checkpoint (after epoch {done}) in {self.state.directory} is kept"

    def on_train_begin(self, logs=None):
        self.checked_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras reports every few steps; the logged loss is the
        # epoch's running mean, so the first bad step lies after the previous check.
        loss = (logs or {}).get("loss")
        step = int(self.model.optimizer.iterations.numpy())
        if loss is not None and not math.isfinite(loss):
            span = (f"at step {step} ({self._where(step)})" if step == self.checked_step + 1 else
                    f"between steps {self.checked_step + 1} ({self._where(self.checked_step + 1)}) and {step}")
            self.failure = f"non-finite training loss ({loss}) {span}; stopped without saving, {self._kept()}"
            self.model.stop_training = True
        self.checked_step = step

    def on_epoch_end(self, epoch, logs=None):
        if self.failure is None and not all(np.all(np.isfinite(v.numpy())) for v in self.model.variables):
            self.failure = (
                f"non-finite weights after epoch {epoch + 1} (step {int(self.model.optimizer.iterations.numpy())}); "
                f"stopped without saving, {self._kept()}"
            )
            self.model.stop_training = True


class EpochKeeper(keras.callbacks.Callback):
    """After each epoch the guard passes: the best weights so far (by validation bound, else training bound)
    into `<write_dir>/best.weights.h5`, then the epoch's checkpoint.

    Args:
        state: the run's `zoo.runs.state.RunState`.
        guard: the run's `NanGuard`, placed before this callback.
        write_dir: str, the directory the run writes.
    """

    def __init__(self, state, guard, write_dir):
        super().__init__()
        self.state, self.guard, self.write_dir = state, guard, write_dir

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.failure is not None:
            return
        bound = logs.get("val_bound", logs.get("bound"))
        if bound is not None and bound > self.state.best.numpy():
            self.state.best.assign(bound)
            write_weights(self.model, os.path.join(self.write_dir, BEST_WEIGHTS))
        self.state.save(epoch + 1)


class SampleGrid(keras.callbacks.Callback):
    """Logs an 8x8 grid of samples from fixed latents each epoch (TensorBoard, `logs/samples`), to watch them sharpen.

    Args:
        guard: the run's `NanGuard` (no samples from a diverged model).
        write_dir: str, the directory the run writes.
        seed: int, the fixed latents' seed.
    """

    def __init__(self, guard, write_dir, seed):
        super().__init__()
        self.guard, self.seed = guard, seed
        self.writer = tf.summary.create_file_writer(os.path.join(write_dir, LOG_DIR, "samples"))

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.failure is not None:
            return
        images = np.asarray(self.model.sample(64, seed=self.seed), np.float32)  # [64, H, W, C]
        _, height, width, channels = images.shape
        grid = images.reshape(8, 8, height, width, channels).transpose(0, 2, 1, 3, 4)
        grid = grid.reshape(1, 8 * height, 8 * width, channels)
        with self.writer.as_default():
            tf.summary.image("samples", np.clip(grid, 0.0, 1.0), step=epoch + 1)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


def close_writers(callbacks):
    """Ends the callbacks that write event files, after a `fit` that failed: Keras ends them only when `fit`
    returns, and until the failure's traceback is collected their files would stay open (on a full disk, the
    space of a deleted file stays taken)."""
    for callback in callbacks:
        if isinstance(callback, (keras.callbacks.TensorBoard, SampleGrid)):
            with contextlib.suppress(Exception):  # closing flushes, which may fail too: the fit's error is the one
                callback.on_train_end()


def training_callbacks(model, state, config, write_dir):
    """The guard, keeper, TensorBoard and (for models that sample on their own) sample-grid callbacks of a run.

    Returns `(guard, callbacks)`.
    """
    guard = NanGuard(state, config["steps_per_epoch"])
    callbacks = [guard, EpochKeeper(state, guard, write_dir),
                 keras.callbacks.TensorBoard(os.path.join(write_dir, LOG_DIR), write_graph=False)]
    # Models whose memory comes with each batch have nothing to sample from on their own.
    if not config["episodes"] and hasattr(model, "sample"):
        callbacks.append(SampleGrid(guard, write_dir, config["seed"]))
    return guard, callbacks
