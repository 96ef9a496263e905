"""Training a run: strategies, then `train(config, model_dir)` (resumable, NaN-guarded, lock held)."""

import os
import random
import shutil
import tempfile

from zoo.runs import data
from zoo.runs.config import build_model, build_optimizer, check_run_dir
from zoo.runs.errors import TrainingDiverged, UsageError
from zoo.runs.files import CONFIG_FILE, run_dir_lock, write_json
from zoo.runs.state import RunState


def make_strategy(name):
    """The `tf.distribute` strategy `name` names (see BUILD.md), `UsageError` when it cannot be had.

    `default`: this process's default device; `mirrored`: every local GPU (else the CPU);
    `multi_worker`: the workers `$TF_CONFIG` lists, each with its local GPUs; `tpu`: the TPU
    `TPUClusterResolver` finds (a Cloud TPU VM's, or `$TPU_NAME`'s).
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise UsageError(f"--strategy=tpu found no TPU ({type(error).__name__}: {str(error).splitlines()[0][:160]})"
                         ) from None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """Whether this process writes the run directory: always, but for the non-chief workers of a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def train(config, model_dir, verbose="auto", strategy=None):
    """Trains (or resumes) the run `config` (from `resolve_config`) in `model_dir`.

    Holds `<model_dir>/lock` while it runs: a second process on the same directory is refused.
    Under `--strategy=multi_worker` only the chief writes `model_dir` (and holds the lock); the
    other workers restore from it (it must be on a file system they share) and write into a
    scratch directory they delete at the end. Returns the Keras `History` of the epochs run
    now (None if the run was already complete). Raises `TrainingDiverged` on a non-finite
    loss, after keeping the last good checkpoint. `strategy` is `make_strategy(config["strategy"])`
    unless given (multi-worker and TPU strategies must be made before TensorFlow runs anything).
    """
    check_run_dir(model_dir, config)
    strategy = strategy or make_strategy(config.get("strategy", "default"))
    if not is_chief(strategy):
        scratch = tempfile.mkdtemp(prefix=f"zoo-worker-{strategy.cluster_resolver.task_id}-")
        try:
            return _train_locked(config, model_dir, verbose, strategy, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(model_dir, exist_ok=True)
    with run_dir_lock(model_dir):
        check_run_dir(model_dir, config)  # again, now that no other process can write it
        write_json(os.path.join(model_dir, CONFIG_FILE), config, indent=2)
        return _train_locked(config, model_dir, verbose, strategy, model_dir)


def _train_locked(config, model_dir, verbose, strategy, write_dir):
    import keras
    import tensorflow as tf

    from zoo.models.base import STEPS_PER_EXECUTION, steps_per_execution_for
    # Imports Keras: not before a run's options are checked.
    from zoo.runs.callbacks import close_writers, training_callbacks

    # Keras draws the seeds of unseeded initializers from Python's `random`: seeding it makes the
    # initial weights a function of --seed. (Not `keras.utils.set_random_seed`: a global TF seed
    # of 0 breaks the tensor-seeded per-epoch shuffle of `training_stream`.)
    random.seed(config["seed"])
    steps_per_epoch = config["steps_per_epoch"]
    # A compiled call never runs past the end of an epoch: the epoch's data and checks stay its own.
    steps_per_execution = steps_per_execution_for(steps_per_epoch,
                                                  config["steps_per_execution"] or STEPS_PER_EXECUTION)
    if isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)):
        steps_per_execution = 1  # keras-team/keras#19246: a multi-step call fails under these strategies
    with strategy.scope():  # the variables of the model, its metrics and the optimizer live on every replica
        model = build_model(config)
        model.compile(optimizer=build_optimizer(config), steps_per_execution=steps_per_execution)
        model.optimizer.build(model.trainable_variables)
    state = RunState(model, model_dir, config, write_dir=None if write_dir == model_dir else write_dir)
    if state.restore():
        print(f"Resuming {model_dir} after epoch {int(state.epoch.numpy())} of {config['epochs']}", flush=True)
        if isinstance(model.optimizer.learning_rate, keras.Variable):
            # A constant rate is an optimizer variable, restored with the others: the run's (possibly
            # changed) --learning_rate wins over the checkpoint's.
            model.optimizer.learning_rate = config["learning_rate"]
    first_epoch = int(state.epoch.numpy())
    if first_epoch >= config["epochs"]:
        print(f"{model_dir} already finished {first_epoch} epochs (asked for {config['epochs']})", flush=True)
        return None
    validation = data.sharded(data.validation_stream(config)) if config["validation_split"] else None
    guard, callbacks = training_callbacks(model, state, config, write_dir)
    try:
        history = model.fit(
            data.sharded(data.training_stream(config, first_epoch)),
            epochs=config["epochs"],
            initial_epoch=first_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose,
        )
    except BaseException:
        close_writers(callbacks)
        raise
    if guard.failure is not None:
        raise TrainingDiverged(guard.failure)
    return history
