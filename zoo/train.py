"""Trains a zoo model from the command line; resumable, with a NaN guard.

    python -m zoo.train --preset=vae_mnist_500_500_100 --dataset=binarized_mnist --epochs=10 \\
        --model_dir=runs/vae [--batch_size --learning_rate --num_importance_samples --seed \\
        --override=key=value ...]

What lands in `--model_dir`:

    config.json          the resolved configuration (preset, data, optimisation, full model config)
    checkpoints/         one per finished epoch: weights, optimizer state, RNG state, epoch counter
    best.weights.h5      the weights with the best validation bound so far
    logs/                TensorBoard: per-epoch scalars (train and validation), a grid of samples

Running the same command again after an interruption (even SIGKILL mid-epoch) resumes
from the last finished epoch: epoch e always sees the same data order (a function of
`--seed` and e), and the optimizer and random-number state come back from the checkpoint,
so the resumed run ends where an uninterrupted one would.

The model never sees flags: flags become a plain configuration dict (`resolve_config`),
which `train(config, model_dir)` runs; both are usable from Python.
"""

import ast
import json
import math
import os
import random
import sys

from absl import app, flags

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_WEIGHTS = "best.weights.h5"
LOG_DIR = "logs"

# (train split, validation split) per dataset. Frey faces has no held-out split besides
# its test set, which must not pick the model: there the best epoch is by training bound.
DATASET_SPLITS = {
    "binarized_mnist": ("train", "validation"),
    "mnist": ("train[:50000]", "train[50000:]"),
    "frey_faces": ("train", None),
}
# Keys of the resolved configuration that must match to resume a run in the same model_dir.
_RUN_IDENTITY = ("preset", "dataset", "train_split", "batch_size", "seed", "overrides")


class UsageError(ValueError):
    """A bad command line or model_dir: reported as one line, exit status 2."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf: reported as one line, exit status 1."""


def parse_overrides(pairs):
    """`["latent_dim=50", "hidden_units=(200, 200)"]` -> `{"latent_dim": 50, "hidden_units": (200, 200)}`.

    Values are Python literals; anything that does not parse as one is kept as a string.
    """
    overrides = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--override expects key=value, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides[key.strip()] = value
    return overrides


def resolve_config(
    preset,
    dataset,
    epochs,
    batch_size=None,
    learning_rate=None,
    num_importance_samples=None,
    seed=0,
    overrides=None,
    train_split=None,
    validation_split=None,
    steps_per_execution=None,
    keep_checkpoints=3,
):
    """Turns command-line choices into the complete, JSON-ready run configuration.

    Unset optimisation choices come from the preset's `recipe` (the paper's schedule),
    then from the zoo's defaults (Adam 1e-3, batch 100). Raises `UsageError` naming the
    bad value and the valid ones.
    """
    import zoo

    if preset not in zoo.presets.PRESETS:
        raise UsageError(f"unknown preset {preset!r}; available: {', '.join(sorted(zoo.presets.PRESETS))}")
    if dataset not in zoo.data.LOADERS:
        raise UsageError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(zoo.data.LOADERS))}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("keep_checkpoints", keep_checkpoints)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UsageError(f"--{name} must be an int >= 1, got {value!r}")
    if learning_rate is not None and not learning_rate > 0:
        raise UsageError(f"--learning_rate must be > 0, got {learning_rate!r}")
    recipe = zoo.presets.PRESETS[preset].get("recipe", {})
    default_train, default_validation = DATASET_SPLITS[dataset]
    model_overrides = dict(overrides or {})
    model_overrides.setdefault("seed", seed)
    if num_importance_samples is not None:
        model_overrides["num_importance_samples"] = num_importance_samples
    config = {
        "preset": preset,
        "dataset": dataset,
        "train_split": train_split or default_train,
        "validation_split": validation_split if validation_split is not None else default_validation,
        "epochs": epochs,
        "batch_size": batch_size or recipe.get("batch_size", 100),
        "learning_rate": learning_rate or recipe.get("learning_rate", 1e-3),
        "decay_start_epoch": recipe.get("decay_start_epoch"),
        "decay_per_epoch": recipe.get("decay_per_epoch"),
        "seed": seed,
        "steps_per_execution": steps_per_execution,
        "keep_checkpoints": keep_checkpoints,
        "overrides": model_overrides,
    }
    for split in (config["train_split"], config["validation_split"]):
        if split:
            _count_examples(config, split)  # a bad split fails here, before anything is written
    config["model"] = _serialize(build_model(config))
    return json.loads(json.dumps(config))  # tuples -> lists: what config.json will hold


def build_model(config):
    """The model a resolved configuration describes (untrained)."""
    import keras

    import zoo

    if "model" in config:
        return keras.saving.deserialize_keras_object(config["model"])
    try:
        return zoo.LatentVariableModel.from_preset(config["preset"], **config["overrides"])
    except (TypeError, ValueError) as error:
        raise UsageError(f"preset {config['preset']!r} rejects the overrides {config['overrides']}: {error}") from None


def _serialize(model):
    import keras

    return keras.saving.serialize_keras_object(model)


def read_config(model_dir):
    """The configuration `zoo.train` wrote into `model_dir`; `UsageError` if there is none."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isdir(model_dir):
        raise UsageError(f"--model_dir {model_dir!r} does not exist; train into it with python -m zoo.train first")
    if not os.path.isfile(path):
        raise UsageError(
            f"--model_dir {model_dir!r} holds no {CONFIG_FILE}: it is empty or not a zoo.train run directory"
        )
    with open(path) as f:
        return json.load(f)


def load_trained_model(model_dir, weights="best"):
    """Rebuilds the model of a `zoo.train` run and loads its weights.

    Args:
        model_dir: str, a directory written by `zoo.train`.
        weights: `"best"` (best validation bound) or `"last"` (latest epoch checkpoint).

    Returns:
        `(model, config)`.
    """
    config = read_config(model_dir)
    model = build_model(config)
    if weights == "best":
        path = os.path.join(model_dir, BEST_WEIGHTS)
        if not os.path.isfile(path):
            raise UsageError(f"--model_dir {model_dir!r} has no {BEST_WEIGHTS} yet: no epoch has finished")
        model.load_weights(path)
    elif weights == "last":
        state = _RunState(model, model_dir, config)
        if not state.restore():
            raise UsageError(f"--model_dir {model_dir!r} has no checkpoint yet: no epoch has finished")
    else:
        raise UsageError(f'weights must be "best" or "last", got {weights!r}')
    return model, config


def _learning_rate(config, steps_per_epoch):
    """Constant, or the recipe's per-epoch exponential decay after `decay_start_epoch`."""
    import keras
    import tensorflow as tf

    if not config["decay_start_epoch"]:
        return config["learning_rate"]

    class EpochDecay(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            epoch = tf.cast(step // steps_per_epoch, tf.float32)
            decayed_epochs = tf.maximum(0.0, epoch - config["decay_start_epoch"])
            return config["learning_rate"] * config["decay_per_epoch"] ** decayed_epochs

        def get_config(self):
            return {}

    return EpochDecay()


def load_split(dataset, split, batch_size, **kwargs):
    """`zoo.data.load`, with a bad split or dataset option reported as a `UsageError`."""
    import zoo

    try:
        return zoo.data.load(dataset, split=split, batch_size=batch_size, **kwargs)
    except ValueError as error:
        raise UsageError(f"dataset {dataset!r}: {str(error).splitlines()[0]}") from None


def _count_examples(config, split):
    ds = load_split(config["dataset"], split, 1, shuffle=False)
    count = int(ds.cardinality())
    return count if count >= 0 else sum(1 for _ in ds)


def training_stream(config, first_epoch):
    """Batches of epochs `first_epoch .. epochs-1`; epoch e's order depends only on (seed, e).

    That makes a resumed run see exactly the batches the interrupted one would have.
    Incomplete final batches are dropped so every step has the same shape (one XLA program).
    """
    import tensorflow as tf

    import zoo

    examples = load_split(config["dataset"], config["train_split"], config["batch_size"], shuffle=False).unbatch()
    num_examples = _count_examples(config, config["train_split"])

    def epoch(e):
        seed = tf.cast(config["seed"], tf.int64) * 1_000_003 + e
        return examples.shuffle(num_examples, seed=seed).batch(config["batch_size"], drop_remainder=True)

    return tf.data.Dataset.range(first_epoch, config["epochs"]).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


class _RunState:
    """Everything a resume needs, in one `tf.train.Checkpoint` per finished epoch.

    Variables are checkpointed as flat lists (model, then optimizer): Keras 3 objects do
    not expose BatchNorm statistics and seed-generator states to `tf.train.Checkpoint`'s
    object graph, and losing those would make a resumed run differ.
    """

    def __init__(self, model, model_dir, config):
        import tensorflow as tf

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)
        self.model = model
        self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
        tracked = {"model": list(model.variables), "epoch": self.epoch, "best": self.best}
        if model.optimizer is not None:
            tracked["optimizer"] = list(model.optimizer.variables)
        self.manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(**tracked), self.directory, max_to_keep=config.get("keep_checkpoints", 3),
            checkpoint_name="epoch",
        )

    def restore(self):
        """Loads the latest checkpoint; returns False when there is none."""
        if not self.manager.latest_checkpoint:
            return False
        status = self.manager.checkpoint.read(self.manager.latest_checkpoint)
        status.assert_existing_objects_matched().expect_partial()
        return True

    def save(self, epochs_done):
        self.epoch.assign(epochs_done)
        self.manager.save(checkpoint_number=epochs_done)


def _check_run_dir(model_dir, config):
    """A model_dir is new (absent or empty), or a run of the same configuration to resume."""
    if not os.path.isdir(model_dir) or not os.listdir(model_dir):
        return
    try:
        previous = read_config(model_dir)
    except UsageError:
        raise UsageError(
            f"--model_dir {model_dir!r} is not empty and holds no {CONFIG_FILE}: not a zoo.train run; "
            "pick a new or empty directory"
        ) from None
    changed = [key for key in _RUN_IDENTITY + ("model",) if previous.get(key) != config.get(key)]
    if changed:
        raise UsageError(
            f"--model_dir {model_dir!r} holds a run with different {', '.join(changed)}; "
            "resume it with the same flags or pick a new directory"
        )


def _make_callbacks(model, state, config, model_dir):
    import keras
    import numpy as np
    import tensorflow as tf

    class Keeper(keras.callbacks.Callback):
        """Checkpoints finite states only; stops at the first non-finite loss."""

        failure = None

        def on_train_begin(self, logs=None):
            self.checked_step = int(self.model.optimizer.iterations.numpy())

        def on_train_batch_end(self, batch, logs=None):
            # With steps_per_execution > 1 Keras reports every few steps; the logged loss is the
            # epoch's running mean, so the first bad step lies after the previous check.
            loss = (logs or {}).get("loss")
            step = int(self.model.optimizer.iterations.numpy())
            if loss is not None and not math.isfinite(loss):
                where = f"at step {step}" if step == self.checked_step + 1 else (
                    f"between steps {self.checked_step + 1} and {step}")
                self.failure = (
                    f"non-finite training loss ({loss}) {where} (epoch {self.epoch + 1}, batch {batch + 1}); "
                    f"stopped without saving, the last good checkpoint (epoch {int(state.epoch.numpy())}) "
                    f"in {state.directory} is kept"
                )
                self.model.stop_training = True
            self.checked_step = step

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if self.failure is None and not all(np.all(np.isfinite(v.numpy())) for v in self.model.variables):
                self.failure = (
                    f"non-finite weights after epoch {epoch + 1} (step {int(self.model.optimizer.iterations.numpy())}); "
                    f"stopped without saving, the last good checkpoint (epoch {int(state.epoch.numpy())}) is kept"
                )
                self.model.stop_training = True
            if self.failure is not None:
                return
            bound = logs.get("val_bound", logs.get("bound"))
            if bound is not None and bound > state.best.numpy():
                state.best.assign(bound)
                # Write then rename: a kill mid-write never leaves a torn best.weights.h5.
                tmp = os.path.join(model_dir, "best.tmp.weights.h5")
                self.model.save_weights(tmp)
                os.replace(tmp, os.path.join(model_dir, BEST_WEIGHTS))
            state.save(epoch + 1)

    class SampleGrid(keras.callbacks.Callback):
        """Logs an 8x8 grid of samples from fixed latents each epoch, to watch them sharpen."""

        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(os.path.join(model_dir, LOG_DIR, "samples"))

        def on_epoch_end(self, epoch, logs=None):
            if not hasattr(self.model, "sample") or keeper.failure is not None:
                return
            images = np.asarray(self.model.sample(64, seed=config["seed"]), np.float32)  # [64, H, W, C]
            _, height, width, channels = images.shape
            grid = images.reshape(8, 8, height, width, channels).transpose(0, 2, 1, 3, 4)
            grid = grid.reshape(1, 8 * height, 8 * width, channels)
            with self.writer.as_default():
                tf.summary.image("samples", np.clip(grid, 0.0, 1.0), step=epoch + 1)
            self.writer.flush()

    keeper = Keeper()
    tensorboard = keras.callbacks.TensorBoard(os.path.join(model_dir, LOG_DIR), write_graph=False)
    return keeper, [keeper, tensorboard, SampleGrid()]


def train(config, model_dir, verbose="auto"):
    """Trains (or resumes) the run `config` (from `resolve_config`) in `model_dir`.

    Returns the Keras `History` of the epochs run now (None if the run was already
    complete). Raises `TrainingDiverged` on a non-finite loss, after keeping the last
    good checkpoint.
    """
    import keras

    import zoo

    _check_run_dir(model_dir, config)
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)

    # Keras draws the seeds of unseeded initializers from Python's `random`: seeding it makes the
    # initial weights a function of --seed. (Not `keras.utils.set_random_seed`: a global TF seed
    # of 0 breaks the tensor-seeded per-epoch shuffle of `training_stream`.)
    random.seed(config["seed"])
    model = build_model(config)
    steps_per_epoch = _count_examples(config, config["train_split"]) // config["batch_size"]
    if steps_per_epoch < 1:
        raise UsageError(
            f"--train_split {config['train_split']!r} holds fewer examples than one batch of {config['batch_size']}"
        )
    compile_kwargs = {}
    if config["steps_per_execution"]:
        compile_kwargs["steps_per_execution"] = config["steps_per_execution"]
    model.compile(optimizer=keras.optimizers.Adam(_learning_rate(config, steps_per_epoch)), **compile_kwargs)
    model.optimizer.build(model.trainable_variables)
    state = _RunState(model, model_dir, config)
    if state.restore():
        print(f"Resuming {model_dir} after epoch {int(state.epoch.numpy())} of {config['epochs']}", flush=True)
    first_epoch = int(state.epoch.numpy())
    if first_epoch >= config["epochs"]:
        print(f"{model_dir} already finished {first_epoch} epochs (asked for {config['epochs']})", flush=True)
        return None
    validation = None
    if config["validation_split"]:
        validation = load_split(config["dataset"], config["validation_split"], config["batch_size"], shuffle=False)
    keeper, callbacks = _make_callbacks(model, state, config, model_dir)
    history = model.fit(
        training_stream(config, first_epoch),
        epochs=config["epochs"],
        initial_epoch=first_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation,
        callbacks=callbacks,
        verbose=verbose,
    )
    if keeper.failure is not None:
        raise TrainingDiverged(keeper.failure)
    return history


def define_flags():
    """Defines the command-line flags (only when run as a program, never on import)."""
    flags.DEFINE_string("preset", None, "Preset name (see zoo.presets.PRESETS).", required=True)
    flags.DEFINE_string("dataset", None, "Dataset name (see zoo.data.LOADERS).", required=True)
    flags.DEFINE_integer("epochs", None, "Total number of epochs to reach.", required=True)
    flags.DEFINE_string("model_dir", None, "Run directory: config, checkpoints, logs.", required=True)
    flags.DEFINE_integer("batch_size", None, "Examples per step (default: preset recipe, else 100).")
    flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: preset recipe, else 1e-3).")
    flags.DEFINE_integer("num_importance_samples", None, "K of the training bound (default: the preset's).")
    flags.DEFINE_integer("seed", 0, "Seeds the model and the data order.")
    flags.DEFINE_multi_string("override", [], "Model config override key=value (Python literal), repeatable.")
    flags.DEFINE_string("train_split", None, "Training split (default per dataset, e.g. 'train').")
    flags.DEFINE_string("validation_split", None, "Split that picks the best epoch ('' for none).")
    flags.DEFINE_integer("steps_per_execution", None, "Steps per compiled call (default: the model's).")
    flags.DEFINE_integer("keep_checkpoints", 3, "Epoch checkpoints to keep.")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras verbosity (1: progress bar).")


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    config = resolve_config(
        f.preset, f.dataset, f.epochs, f.batch_size, f.learning_rate, f.num_importance_samples, f.seed,
        parse_overrides(f.override), f.train_split, f.validation_split, f.steps_per_execution,
        f.keep_checkpoints,
    )
    train(config, f.model_dir, verbose=f.verbose if f.verbose == "auto" else int(f.verbose))


def run_app(main_fn, define_fn):
    """Runs an absl app whose flag errors, `UsageError`s and `TrainingDiverged` end in one line."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            _fail(f"{os.path.basename(argv[0])}: {error}", 2)

    def guarded(argv):
        try:
            main_fn(argv)
        except UsageError as error:
            _fail(f"{os.path.basename(sys.argv[0])}: {error}", 2)
        except TrainingDiverged as error:
            _fail(f"{os.path.basename(sys.argv[0])}: training diverged: {error}", 1)

    define_fn()
    app.run(guarded, flags_parser=parse)


def _fail(message, status):
    print(message, file=sys.stderr, flush=True)
    sys.exit(status)


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
