"""A run's saved state: epoch checkpoints (resume, fallback to an intact one), best weights, loading a trained model."""

import math
import os

from zoo.runs.config import build_model
from zoo.runs.errors import DiskFull, UsageError
from zoo.runs.files import BEST_WEIGHTS, CHECKPOINT_DIR, atomic_write, ensure_space, read_config


class RunState:
    """Everything a resume needs, in one `tf.train.Checkpoint` per finished epoch.

    Variables are checkpointed as flat lists (model, then optimizer): Keras 3 objects do
    not expose BatchNorm statistics and seed-generator states to `tf.train.Checkpoint`'s
    object graph, and losing those would make a resumed run differ. A model without an
    optimizer (evaluation, export) restores only its own variables. A non-chief worker restores
    from `model_dir` and saves into `write_dir` (its scratch directory): every worker must
    save, since saving reads variables that workers synchronise.
    """

    def __init__(self, model, model_dir, config, write_dir=None):
        import tensorflow as tf

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)
        self.model = model
        self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
        tracked = {"model": list(model.variables), "epoch": self.epoch, "best": self.best}
        if getattr(model, "optimizer", None) is not None:
            tracked["optimizer"] = list(model.optimizer.variables)
        checkpoint = tf.train.Checkpoint(**tracked)
        manager = lambda directory: tf.train.CheckpointManager(  # noqa: E731
            checkpoint, directory, max_to_keep=config.get("keep_checkpoints", 3), checkpoint_name="epoch"
        )
        self.manager = manager(os.path.join(write_dir or model_dir, CHECKPOINT_DIR))
        self.source = self.manager if write_dir is None else manager(self.directory)

    def restore(self, epoch=None):
        """Loads the newest intact checkpoint, saying so when it skips damaged ones; False when there is none.

        With `epoch`, that epoch's checkpoint and no other (`UsageError` when it was not kept or is damaged).
        """
        if epoch is not None:
            path = os.path.join(self.directory, f"epoch-{epoch}")
            if path not in self.source.checkpoints:
                kept = ", ".join(os.path.basename(path) for path in self.source.checkpoints) or "none"
                raise UsageError(f"{self.directory} holds no checkpoint of epoch {epoch} (kept: {kept})")
            candidates = [path]
        else:
            candidates = list(reversed(self.source.checkpoints))
        damaged = []
        for path in candidates:
            try:
                status = self.source.checkpoint.read(path)
                status.assert_existing_objects_matched().expect_partial()
            except Exception as error:  # a torn file fails in TF's reader with OpError, IndexError, ValueError ...
                damaged.append(path)
                print(f"Checkpoint {path} is unreadable ({type(error).__name__}: "
                      f"{str(error).splitlines()[0][:120]}); trying the one before", flush=True)
                continue
            if damaged:
                print(f"Restored {path} instead of the damaged {', '.join(damaged)}", flush=True)
            return True
        if damaged:
            raise UsageError(f"every checkpoint in {self.directory} is unreadable ({', '.join(damaged)})")
        return False

    def save(self, epochs_done):
        import tensorflow as tf

        directory = self.manager.directory
        # Room for a checkpoint as large as the last one (or the variables, with the index's overhead), before
        # the older one is deleted.
        previous = self.manager.latest_checkpoint
        needed = (sum(os.path.getsize(path) for path in tf.io.gfile.glob(previous + ".*")) if previous
                  else _variable_bytes(self.manager.checkpoint) + 2**16)
        ensure_space(os.path.join(directory, "checkpoint"), needed)
        self.epoch.assign(epochs_done)
        try:
            self.manager.save(checkpoint_number=epochs_done)
        except (OSError, tf.errors.OpError) as error:
            if "No space left on device" in str(error):
                raise DiskFull(os.path.join(directory, f"epoch-{epochs_done}")) from None
            raise


def _variable_bytes(checkpoint):
    import tensorflow as tf

    variables = tf.nest.flatten([getattr(checkpoint, name) for name in ("model", "optimizer", "epoch", "best")
                                 if hasattr(checkpoint, name)])
    return sum(v.numpy().nbytes for v in variables)


def write_weights(model, path):
    """`model.save_weights(path)` through a temporary file: a kill mid-write never leaves a torn file at `path`.

    Needs room for the temporary file beside the old one: as large as the old one, or the weights plus
    HDF5's overhead (under 16 KiB a variable).
    """
    needed = os.path.getsize(path) if os.path.exists(path) else sum(
        w.numpy().nbytes + 2**14 for w in model.weights)
    ensure_space(path, needed)
    atomic_write(path, model.save_weights)


def check_weights(weights):
    """The epoch `weights` names (`"epoch-N"`), None for `"best"` and `"last"`; `UsageError` for anything else."""
    if weights in ("best", "last"):
        return None
    prefix, _, number = str(weights).partition("-")
    if prefix != "epoch" or not number.isdigit() or int(number) < 1:
        raise UsageError(f'--weights must be "best", "last" or "epoch-N" (a kept checkpoint), got {weights!r}')
    return int(number)


def load_trained_model(model_dir, weights="best"):
    """Rebuilds the model of a `zoo.train` run and loads its weights.

    Args:
        model_dir: str, a directory written by `zoo.train`.
        weights: `"best"` (best validation bound), `"last"` (latest intact epoch checkpoint) or `"epoch-N"` (the
            checkpoint of epoch N, if the run kept it: e.g. to compare two runs at the same budget).

    Returns:
        `(model, config)`.
    """
    epoch = check_weights(weights)
    config = read_config(model_dir)
    model = build_model(config)
    if weights == "best":
        path = os.path.join(model_dir, BEST_WEIGHTS)
        if not os.path.isfile(path):
            raise UsageError(f"--model_dir {model_dir!r} has no {BEST_WEIGHTS} yet: no epoch has finished")
        try:
            model.load_weights(path)
        except Exception as error:  # h5py raises OSError, KeyError, ValueError ... on a damaged file
            raise UsageError(
                f"{path} is unreadable ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
                "use --weights=last or retrain"
            ) from None
    elif not RunState(model, model_dir, config).restore(epoch):
        raise UsageError(f"--model_dir {model_dir!r} has no checkpoint yet: no epoch has finished")
    return model, config
