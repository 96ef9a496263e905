"""Trains a zoo model from the command line; resumable, with a NaN guard.

    python -m zoo.train --preset=vae_mnist_500_500_100 --dataset=binarized_mnist --epochs=10 \\
        --model_dir=runs/vae [--batch_size --learning_rate --num_importance_samples --seed \\
        --override=key=value ...]

What lands in `--model_dir`:

    config.json          the resolved configuration (preset, data, optimisation, full model config)
    checkpoints/         one per finished epoch: weights, optimizer state, RNG state, epoch counter
    best.weights.h5      the weights with the best validation bound so far
    logs/                TensorBoard: per-epoch scalars (train and validation), a grid of samples
    lock                 while training: the pid and host of the process that owns the directory

Running the same command again after an interruption (even SIGKILL mid-epoch) resumes
from the last finished epoch: epoch e always sees the same data order (a function of
`--seed` and e), and the optimizer and random-number state come back from the checkpoint,
so the resumed run ends where an uninterrupted one would.

The model never sees flags: flags become a plain configuration dict (`resolve_config`),
which `train(config, model_dir)` runs; both are usable from Python.
"""

import ast
import contextlib
import json
import math
import os
import random
import shutil
import tempfile

from absl import flags

from zoo.cli import (
    LOCK_FILE, DiskFull, TrainingDiverged, UsageError, atomic_write, ensure_space, quiet_libraries, run_app,
    run_dir_lock, write_json,
)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_WEIGHTS = "best.weights.h5"
LOG_DIR = "logs"

# Per dataset: (train split, validation split, test split, shape of one example). Frey faces and
# Omniglot have no held-out split besides their test set, which must not pick the model: there
# the best epoch is by training bound.
DATASETS = {
    "binarized_mnist": ("train", "validation", "test", (28, 28, 1)),
    "mnist": ("train[:50000]", "train[50000:]", "test", (28, 28, 1)),
    "frey_faces": ("train", None, "test", (28, 20, 1)),
    "omniglot": ("train", None, "test", (28, 28, 1)),
}
# Other example shapes a dataset gives, with the loader options that give them: Omniglot at 26x26 is the
# 104x104 crop max-pooled 4x4 (Bornschein et al. 2017; zoo.data.omniglot.preprocess).
DATASET_VARIANTS = {"omniglot": {(26, 26, 1): {"image_size": 26}}}
# Keys of the resolved configuration that must match to resume a run in the same model_dir. Not the
# strategy: a run may resume on other devices, and its global batch (batch_size) keeps the steps the same.
_RUN_IDENTITY = ("preset", "dataset", "data_path", "train_split", "batch_size", "episodes", "seed", "overrides",
                 "mixed_precision", "recipe")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# Keras dtype policies: compute in 16 bits, variables (and the zoo's distribution parameters) in float32.
MIXED_PRECISION = ("mixed_float16", "mixed_bfloat16")
# Evaluation episodes drawn for validation when a memory comes with each batch.
VALIDATION_EPISODES = 20


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
    data_path=None,
    episode_classes=None,
    episode_targets=None,
    episode_memory=None,
    steps_per_epoch=None,
    skip_gradient_norm=None,
    strategy="default",
    mixed_precision=None,
):
    """Turns command-line choices into the complete, JSON-ready run configuration.

    Unset optimisation choices come from the preset's `recipe` (the paper's schedule),
    then from the zoo's defaults (Adam 1e-3, batch 100). Every check that can fail runs here,
    before anything is written. Raises `UsageError` naming the bad value and the valid ones.

    Models whose memory comes with each batch (`memory_size=None`: the recall and Omniglot
    VMA and soft-attention presets) train on episodes `zoo.data.load_episodes` builds:
    `episode_classes` x (`episode_targets` + `episode_memory`) drawings on Omniglot,
    `episode_targets` of `episode_memory` stored images on (binarized) MNIST.

    `strategy` (see `make_strategy`) and `mixed_precision` (a Keras dtype policy or None) say
    where and in what precision the steps run; `batch_size` is the global batch, split
    between the replicas.
    """
    import zoo

    check_flags(preset, dataset, epochs, batch_size, learning_rate, steps_per_execution, keep_checkpoints,
                steps_per_epoch, episode_classes, episode_targets, episode_memory, data_path=data_path,
                overrides=overrides, skip_gradient_norm=skip_gradient_norm, strategy=strategy,
                mixed_precision=mixed_precision)
    recipe = zoo.presets.PRESETS[preset].get("recipe", {})
    try:
        zoo.recipes.check_recipe(preset, recipe)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if skip_gradient_norm is not None and recipe.get("optimizer", "adam") != "adam":
        raise UsageError(f"--skip_gradient_norm is built for adam only; preset {preset!r} trains with "
                         f"{recipe['optimizer']!r}")
    default_train, default_validation, _, _ = DATASETS[dataset]
    model_overrides = dict(overrides or {})
    model_overrides.setdefault("seed", seed)
    if num_importance_samples is not None:
        model_overrides["num_importance_samples"] = num_importance_samples
    model = build_model({"preset": preset, "overrides": model_overrides, "mixed_precision": mixed_precision})
    config = {
        "preset": preset,
        "dataset": dataset,
        "data_path": data_path,
        "train_split": train_split or default_train,
        "validation_split": validation_split if validation_split is not None else default_validation,
        "epochs": epochs,
        "batch_size": batch_size or recipe.get("batch_size", 100),
        "episodes": _episode_config(model, dataset, episode_classes, episode_targets, episode_memory),
        "data_options": _data_options(dataset, model.input_shape),
        "learning_rate": learning_rate or recipe.get("learning_rate", 1e-3),
        # The optimizer and schedule the recipe names (zoo.recipes.APPLIED_KEYS).
        "recipe": {key: value for key, value in recipe.items()
                   if key in zoo.recipes.APPLIED_KEYS and key not in ("batch_size", "learning_rate")},
        "skip_gradient_norm": skip_gradient_norm,
        "seed": seed,
        "steps_per_epoch": steps_per_epoch,
        "steps_per_execution": steps_per_execution,
        "keep_checkpoints": keep_checkpoints,
        "overrides": model_overrides,
        "strategy": strategy,
        "mixed_precision": mixed_precision,
    }
    # Bad or too small splits fail here, before anything is written.
    if config["episodes"]:
        config["batch_size"] = None  # an episode is a batch
        if strategy != "default":
            raise UsageError(f"--strategy={strategy}: preset {preset!r} trains on episodes whose memory is shared by "
                             "the whole batch, which cannot be split between replicas; use --strategy=default")
    if _count_examples(config, config["train_split"]) < (config["batch_size"] or 1):
        raise UsageError(f"--train_split {config['train_split']!r} holds fewer examples than one batch of "
                         f"{config['batch_size'] or 1}")
    if config["validation_split"] and not _count_examples(config, config["validation_split"]):
        raise UsageError(f"--validation_split {config['validation_split']!r} is empty")
    config["steps_per_epoch"] = _steps_per_epoch(config)
    config["model"] = _serialize(model)
    return json.loads(json.dumps(config))  # tuples -> lists: what config.json will hold


def check_flags(preset, dataset, epochs, batch_size=None, learning_rate=None, steps_per_execution=None,
                keep_checkpoints=3, steps_per_epoch=None, *episode_sizes, data_path=None, overrides=None,
                skip_gradient_norm=None, strategy="default", mixed_precision=None):
    """The checks that need no TensorFlow: run first, so that a bad flag is reported at once."""
    from zoo.presets import PRESETS

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown --strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    if mixed_precision is not None and mixed_precision not in MIXED_PRECISION:
        raise UsageError(f"unknown --mixed_precision {mixed_precision!r}; available: {', '.join(MIXED_PRECISION)}")
    if strategy == "multi_worker":
        _check_tf_config()
    if strategy in ("mirrored", "multi_worker") and steps_per_execution not in (None, 1):
        raise UsageError(f"--steps_per_execution > 1 fails under --strategy={strategy} in Keras 3.15 "
                         "(keras-team/keras#19246); leave it unset")

    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; available: {', '.join(sorted(PRESETS))}")
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(DATASETS))}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("keep_checkpoints", keep_checkpoints),
                        ("steps_per_execution", steps_per_execution), ("steps_per_epoch", steps_per_epoch),
                        *zip(("episode_classes", "episode_targets", "episode_memory"), episode_sizes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"--{name} must be an int >= 1, got {value!r}")
    if learning_rate is not None and not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < math.inf):
        raise UsageError(f"--learning_rate must be a finite number > 0, got {learning_rate!r}")
    if skip_gradient_norm is not None and not (
        isinstance(skip_gradient_norm, (int, float)) and 0 < skip_gradient_norm < math.inf
    ):
        raise UsageError(f"--skip_gradient_norm must be a finite number > 0, got {skip_gradient_norm!r}")
    input_shape = (overrides or {}).get("input_shape", PRESETS[preset]["config"]["input_shape"])
    if isinstance(input_shape, (tuple, list)) and _data_options(dataset, input_shape) is None:
        input_shape = tuple(input_shape)
        fitting = sorted(name for name in DATASETS if _data_options(name, input_shape) is not None)
        raise UsageError(
            f"preset {preset!r} takes {'x'.join(map(str, input_shape))} inputs but dataset {dataset!r} gives "
            f"{'x'.join(map(str, DATASETS[dataset][3]))}; datasets that fit: {', '.join(fitting) or 'none in zoo.data'}"
        )
    if dataset == "frey_faces" and not data_path:
        raise UsageError("dataset 'frey_faces' is read from a file: pass --data_path=/path/to/frey_rawface.mat "
                         "(https://cs.nyu.edu/~roweis/data/frey_rawface.mat)")
    if dataset == "binarized_mnist" and data_path:
        raise UsageError("dataset 'binarized_mnist' is read from the TFDS data directory ($TFDS_DATA_DIR), "
                         "not --data_path")
    if data_path and not os.path.exists(data_path):
        raise UsageError(f"--data_path {data_path!r} does not exist")


def _data_options(dataset, input_shape):
    """The loader options that give `dataset` in `input_shape` (`{}`: its own shape), None if it has no such shape."""
    if tuple(input_shape) == DATASETS[dataset][3]:
        return {}
    return DATASET_VARIANTS.get(dataset, {}).get(tuple(input_shape))


def _check_tf_config():
    """`$TF_CONFIG` (the cluster and this process's task, as `MultiWorkerMirroredStrategy` reads it) is usable."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UsageError("--strategy=multi_worker reads the cluster from $TF_CONFIG, which is not set (see BUILD.md)")
    try:
        tf_config = json.loads(text)
        workers = tf_config["cluster"]["worker"]
        task_type, task_index = tf_config["task"]["type"], tf_config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"$TF_CONFIG is not a cluster spec with a task ({type(error).__name__}: {error}); "
                         'expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}'
                         ) from None
    tasks = tf_config["cluster"].get(task_type)
    if not isinstance(workers, list) or not isinstance(tasks, list) or not 0 <= task_index < len(tasks):
        raise UsageError(f"$TF_CONFIG: task {task_type} {task_index} is not in the cluster {tf_config['cluster']}")


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


def _episode_config(model, dataset, classes, targets, memory):
    """The episode sizes of a model whose memory comes with each batch, None for any other model."""
    if getattr(model, "memory_size", 0) is not None:
        given = [f"--{n}" for n, v in (("episode_classes", classes), ("episode_targets", targets),
                                       ("episode_memory", memory)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for presets whose memory comes with each batch "
                             "(memory_size=None), not for this one")
        return None
    if dataset == "omniglot":
        return {"kind": "classes", "num_classes": classes or 8, "num_targets": targets or 4,
                "num_memory": memory or 4}
    if dataset in ("binarized_mnist", "mnist"):
        if classes is not None:
            raise UsageError(f"--episode_classes applies to omniglot episodes; {dataset} gives recall episodes "
                             "(--episode_memory stored images, --episode_targets of them as targets)")
        memory = memory or 256
        if targets is not None and targets > memory:
            raise UsageError(f"--episode_targets ({targets}) must be <= --episode_memory ({memory}): "
                             "recall targets are stored images")
        return {"kind": "recall", "num_memory": memory, "num_targets": targets or memory}
    raise UsageError(f"dataset {dataset!r} has no episodes for a memory given with each batch")


@contextlib.contextmanager
def _dtype_policy(name):
    """Keras's global dtype policy set to `name` (None: float32) while layers are built, restored after.

    Layers take the global policy when they are made, so a model built here keeps it.
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name or "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(config):
    """The model a resolved configuration describes (untrained), in its dtype policy."""
    with _dtype_policy(config.get("mixed_precision")):
        return _build_model(config)


def _build_model(config):
    import keras

    import zoo.models  # registers the zoo classes with Keras

    if "model" in config:
        return keras.saving.deserialize_keras_object(config["model"])
    try:
        return zoo.LatentVariableModel.from_preset(config["preset"], **config["overrides"])
    except (TypeError, ValueError) as error:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    # Name the culprit: the first override the preset rejects on its own.
    for key, value in config["overrides"].items():
        try:
            zoo.LatentVariableModel.from_preset(config["preset"], **{key: value})
        except (TypeError, ValueError) as error:
            raise UsageError(
                f"--override {key}={value!r} is rejected by preset {config['preset']!r}: {str(error).splitlines()[0]}"
            ) from None
    raise UsageError(f"preset {config['preset']!r} rejects the overrides {config['overrides']}: {reason}")


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
        weights: `"best"` (best validation bound) or `"last"` (latest intact epoch checkpoint).

    Returns:
        `(model, config)`.
    """
    if weights not in ("best", "last"):
        raise UsageError(f'weights must be "best" or "last", got {weights!r}')
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
    elif not _RunState(model, model_dir, config).restore():
        raise UsageError(f"--model_dir {model_dir!r} has no checkpoint yet: no epoch has finished")
    return model, config



def _events(model_dir, subdirectory):
    """The TensorBoard events in `<model_dir>/logs/<subdirectory>`, from every event file (one per training session)."""
    import glob

    import tensorflow as tf

    events = []
    for path in sorted(glob.glob(os.path.join(model_dir, LOG_DIR, subdirectory, "events.out.tfevents.*"))):
        # File by file: a session killed mid-write leaves a torn last record, which costs that record, not the files after.
        for record in tf.data.TFRecordDataset(path).ignore_errors():
            events.append(tf.compat.v1.Event.FromString(record.numpy()))
    return events


def _scalars(model_dir, subdirectory):
    """`{tag: {step: value}}` of the scalar summaries in `<model_dir>/logs/<subdirectory>`."""
    import tensorflow as tf

    scalars = {}
    # In the order written: an epoch logged twice (re-run after a lost checkpoint) keeps the value training went on from.
    for event in sorted(_events(model_dir, subdirectory), key=lambda event: event.wall_time):
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                number = value.simple_value
            elif kind == "tensor" and value.metadata.plugin_data.plugin_name == "scalars":
                number = float(tf.make_ndarray(value.tensor))
            else:
                continue
            scalars.setdefault(value.tag, {})[event.step] = number
    return scalars


def learning_curve(model_dir):
    """The per-epoch bounds a `zoo.train` run logged to TensorBoard (`logs/train`, `logs/validation`).

    Args:
        model_dir: str, a directory written by `zoo.train`.

    Returns:
        dict: `epochs`, one dict per epoch found in the logs, in order: `epoch` (from 1), `train_bound`
        and `validation_bound` (the mean bound per example in nats, a lower bound on log p(x) that
        Keras logged as `bound` and `val_bound`; None where not logged) and, when the run logged
        `val_log_likelihood` (`zoo.tuning.ValidationLogLikelihood`), `validation_nll` (-log p(x),
        importance-sampled); `missing_epochs`, epochs before the last one found that have no
        training bound in the logs (a session killed before TensorBoard flushed them);
        `selected_by`, `"validation_bound"` or, for runs without a validation split,
        `"train_bound"`; `best_epoch`, the epoch whose weights `best.weights.h5` holds (the first
        with the highest finite `selected_by`, as training keeps them).

    Raises:
        UsageError: the directory holds no per-epoch training bound.
    """
    train_bounds = _scalars(model_dir, "train").get("epoch_bound")
    if not train_bounds:
        raise UsageError(f"--model_dir {model_dir!r} holds no TensorBoard epoch logs ({LOG_DIR}/train): "
                         "no epoch has finished, or the logs were not kept")
    validation = _scalars(model_dir, "validation")
    # Keras logs epoch e (from 0) at step e.
    epochs = []
    for step in sorted(train_bounds):
        row = {"epoch": step + 1, "train_bound": train_bounds[step],
               "validation_bound": validation.get("epoch_bound", {}).get(step)}
        if "epoch_log_likelihood" in validation:
            log_likelihood = validation["epoch_log_likelihood"].get(step)
            row["validation_nll"] = None if log_likelihood is None else -log_likelihood
        epochs.append(row)
    selected_by = "validation_bound" if validation.get("epoch_bound") else "train_bound"
    finite = [row for row in epochs if row[selected_by] is not None and math.isfinite(row[selected_by])]
    best = max(finite, key=lambda row: row[selected_by], default=None)  # max keeps the first of equal values
    logged = {row["epoch"] for row in epochs}
    return {"epochs": epochs, "missing_epochs": [e for e in range(1, max(logged) + 1) if e not in logged],
            "selected_by": selected_by, "best_epoch": None if best is None else best["epoch"]}


def training_seconds(model_dir):
    """Training wall time from the run's TensorBoard event times: from the opening of its first event
    file (training start) to the last epoch's event; it includes any time between resumptions."""
    # The first event of a file is written when training opens it, the last after the last epoch.
    times = [event.wall_time for event in _events(model_dir, "train")]
    return max(times) - min(times)

def build_optimizer(config):
    """The run's optimizer: its recipe's (see `zoo.recipes.build_optimizer`), with loss scaling for float16."""
    import keras

    from zoo import recipes

    optimizer = recipes.build_optimizer(config["recipe"], config["learning_rate"], config["steps_per_epoch"],
                                        config["epochs"], skip_threshold=config["skip_gradient_norm"])
    if config.get("mixed_precision") == "mixed_float16":
        # float16 gradients underflow without loss scaling (bfloat16 has float32's range and needs none).
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def load_split(config, split, batch_size, dataset=None, **kwargs):
    """`zoo.data.load` for the run's dataset (or `dataset`), with bad splits and missing data as `UsageError`."""
    import zoo

    dataset = dataset or config["dataset"]
    if config.get("data_path"):
        kwargs["path"] = config["data_path"]
    if dataset == config["dataset"]:
        kwargs.update(config.get("data_options") or {})
    try:
        return zoo.data.load(dataset, split=split, batch_size=batch_size, **kwargs)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"dataset {dataset!r}: {str(error).splitlines()[0]}") from None


def load_episodes(config, split, num_episodes, seed):
    """The run's episodes of `split` (see `zoo.data.load_episodes`), errors as `UsageError`."""
    import zoo

    options = {key: value for key, value in config["episodes"].items() if key != "kind"}
    if config.get("data_path"):
        options["path"] = config["data_path"]
    options.update(config.get("data_options") or {})
    try:
        return zoo.data.load_episodes(config["dataset"], split, num_episodes=num_episodes, seed=seed, **options)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"dataset {config['dataset']!r}: {str(error).splitlines()[0]}") from None


def targets_per_episode(config):
    episodes = config["episodes"]
    return episodes["num_targets"] * episodes.get("num_classes", 1)


def _count_examples(config, split):
    ds = load_split(config, split, 1, shuffle=False)
    count = int(ds.cardinality())
    return count if count >= 0 else sum(1 for _ in ds)


def _steps_per_epoch(config):
    """`--steps_per_epoch`, else one pass over the training split (episodes: its size in targets)."""
    if config["steps_per_epoch"]:
        return config["steps_per_epoch"]
    batch = targets_per_episode(config) if config["episodes"] else config["batch_size"]
    return max(1, _count_examples(config, config["train_split"]) // batch)


def training_stream(config, first_epoch):
    """Batches of epochs `first_epoch .. epochs-1`; epoch e's order depends only on (seed, e).

    That makes a resumed run see exactly the batches the interrupted one would have.
    Incomplete final batches are dropped so every step has the same shape (one XLA program).
    Episodes come from one stream seeded by `--seed`, of which epoch e takes its slice.
    """
    import tensorflow as tf

    steps = config["steps_per_epoch"]
    if config["episodes"]:
        stream = load_episodes(config, config["train_split"], None, config["seed"])
        return stream.skip(first_epoch * steps).take((config["epochs"] - first_epoch) * steps)
    examples = load_split(config, config["train_split"], config["batch_size"], shuffle=False).unbatch()
    num_examples = _count_examples(config, config["train_split"])

    def epoch(e):
        seed = tf.cast(config["seed"], tf.int64) * 1_000_003 + e
        batches = examples.shuffle(num_examples, seed=seed).batch(config["batch_size"], drop_remainder=True)
        return batches.repeat().take(steps)  # --steps_per_epoch may ask for more than one pass

    return tf.data.Dataset.range(first_epoch, config["epochs"]).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def _sharded(dataset):
    """`dataset` (global batches) set to be split by element between workers.

    Keras's `fit` hands it to the strategy's `experimental_distribute_dataset`, which splits each
    global batch between the replicas. Sharding by data (not by file, the default) keeps the
    batches exactly those of a single-device run: every worker reads the whole pipeline,
    seeded alike, and keeps its replicas' parts.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def validation_stream(config):
    """The data that picks the best epoch: the validation split, or fixed episodes drawn from it."""
    if config["episodes"]:
        return load_episodes(config, config["validation_split"], VALIDATION_EPISODES, config["seed"])
    return load_split(config, config["validation_split"], config["batch_size"], shuffle=False)


class _RunState:
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

    def restore(self):
        """Loads the newest intact checkpoint, saying so when it skips damaged ones; False when there is none."""
        damaged = []
        for path in reversed(self.source.checkpoints):
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


def _identity(config, key):
    """What must match to resume: the value, but for the model its architecture, not Keras's automatic name
    (`vae_3` in a process that built three models before), and for the recipe the optimizer it builds."""
    value = config.get(key)
    if key == "model" and value:
        value = {**value, "config": {k: v for k, v in value["config"].items() if k != "name"}}
    if key == "recipe":  # the optimizer whose state the checkpoint holds
        if value is None:  # a config.json written before runs recorded their recipe
            value = {k: v for k, v in config.get("optimizer", {}).items() if k != "skip_threshold"}
            if config.get("decay_start_epoch"):
                value.update(decay_start_epoch=config["decay_start_epoch"], decay_per_epoch=config["decay_per_epoch"])
        value = {"optimizer": "adam", **value}
    return value


def _check_run_dir(model_dir, config):
    """A model_dir is new (absent or empty), or a run of the same configuration to resume."""
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UsageError(f"--model_dir {model_dir!r} is a file, not a directory; pick a directory")
    if not os.path.isdir(model_dir) or not set(os.listdir(model_dir)) - {LOCK_FILE}:
        return
    try:
        previous = read_config(model_dir)
    except UsageError:
        raise UsageError(
            f"--model_dir {model_dir!r} is not empty and holds no {CONFIG_FILE}: not a zoo.train run; "
            "pick a new or empty directory"
        ) from None
    changed = [key for key in _RUN_IDENTITY + ("model",) if _identity(previous, key) != _identity(config, key)]
    if changed:
        raise UsageError(
            f"--model_dir {model_dir!r} holds a run with different {', '.join(changed)}; "
            "resume it with the same flags or pick a new directory"
        )


def _make_callbacks(model, state, config, model_dir, write_dir):
    import keras
    import numpy as np
    import tensorflow as tf

    steps_per_epoch = config["steps_per_epoch"]

    def where(step):
        epoch, batch = divmod(step - 1, steps_per_epoch)
        return f"epoch {epoch + 1}, batch {batch + 1} of {steps_per_epoch}"

    def kept():
        done = int(state.epoch.numpy())
        if not done:
            return "no epoch had finished, so there is no checkpoint"
        return f"the last good checkpoint (after epoch {done}) in {state.directory} is kept"

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
                span = (f"at step {step} ({where(step)})" if step == self.checked_step + 1 else
                        f"between steps {self.checked_step + 1} ({where(self.checked_step + 1)}) and {step}")
                self.failure = f"non-finite training loss ({loss}) {span}; stopped without saving, {kept()}"
                self.model.stop_training = True
            self.checked_step = step

        def on_epoch_end(self, epoch, logs=None):
            if self.failure is None and not all(np.all(np.isfinite(v.numpy())) for v in self.model.variables):
                self.failure = (
                    f"non-finite weights after epoch {epoch + 1} (step {int(self.model.optimizer.iterations.numpy())}); "
                    f"stopped without saving, {kept()}"
                )
                self.model.stop_training = True
            if self.failure is not None:
                return
            bound = logs.get("val_bound", logs.get("bound"))
            if bound is not None and bound > state.best.numpy():
                state.best.assign(bound)
                write_weights(self.model, os.path.join(write_dir, BEST_WEIGHTS))
            state.save(epoch + 1)

    class SampleGrid(keras.callbacks.Callback):
        """Logs an 8x8 grid of samples from fixed latents each epoch, to watch them sharpen."""

        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(os.path.join(write_dir, LOG_DIR, "samples"))

        def on_epoch_end(self, epoch, logs=None):
            # Models whose memory comes with each batch have nothing to sample from on their own.
            if config["episodes"] or not hasattr(self.model, "sample") or keeper.failure is not None:
                return
            images = np.asarray(self.model.sample(64, seed=config["seed"]), np.float32)  # [64, H, W, C]
            _, height, width, channels = images.shape
            grid = images.reshape(8, 8, height, width, channels).transpose(0, 2, 1, 3, 4)
            grid = grid.reshape(1, 8 * height, 8 * width, channels)
            with self.writer.as_default():
                tf.summary.image("samples", np.clip(grid, 0.0, 1.0), step=epoch + 1)
            self.writer.flush()

    keeper = Keeper()
    tensorboard = keras.callbacks.TensorBoard(os.path.join(write_dir, LOG_DIR), write_graph=False)
    return keeper, [keeper, tensorboard, SampleGrid()]


def write_weights(model, path):
    """`model.save_weights(path)` through a temporary file: a kill mid-write never leaves a torn file at `path`.

    Needs room for the temporary file beside the old one: as large as the old one, or the weights plus
    HDF5's overhead (under 16 KiB a variable).
    """
    needed = os.path.getsize(path) if os.path.exists(path) else sum(
        w.numpy().nbytes + 2**14 for w in model.weights)
    ensure_space(path, needed)
    atomic_write(path, model.save_weights)


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
    _check_run_dir(model_dir, config)
    strategy = strategy or make_strategy(config.get("strategy", "default"))
    if not is_chief(strategy):
        scratch = tempfile.mkdtemp(prefix=f"zoo-worker-{strategy.cluster_resolver.task_id}-")
        try:
            return _train_locked(config, model_dir, verbose, strategy, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(model_dir, exist_ok=True)
    with run_dir_lock(model_dir):
        _check_run_dir(model_dir, config)  # again, now that no other process can write it
        write_json(os.path.join(model_dir, CONFIG_FILE), config, indent=2)
        return _train_locked(config, model_dir, verbose, strategy, model_dir)


def _train_locked(config, model_dir, verbose, strategy, write_dir):
    import keras
    import tensorflow as tf

    from zoo.models.base import STEPS_PER_EXECUTION

    # Keras draws the seeds of unseeded initializers from Python's `random`: seeding it makes the
    # initial weights a function of --seed. (Not `keras.utils.set_random_seed`: a global TF seed
    # of 0 breaks the tensor-seeded per-epoch shuffle of `training_stream`.)
    random.seed(config["seed"])
    steps_per_epoch = config["steps_per_epoch"]
    # A compiled call never runs past the end of an epoch: the epoch's data and checks stay its own.
    steps_per_execution = min(config["steps_per_execution"] or STEPS_PER_EXECUTION, steps_per_epoch)
    if isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)):
        steps_per_execution = 1  # keras-team/keras#19246: a multi-step call fails under these strategies
    with strategy.scope():  # the variables of the model, its metrics and the optimizer live on every replica
        model = build_model(config)
        model.compile(optimizer=build_optimizer(config), steps_per_execution=steps_per_execution)
        model.optimizer.build(model.trainable_variables)
    state = _RunState(model, model_dir, config, write_dir=None if write_dir == model_dir else write_dir)
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
    validation = _sharded(validation_stream(config)) if config["validation_split"] else None
    keeper, callbacks = _make_callbacks(model, state, config, model_dir, write_dir)
    history = model.fit(
        _sharded(training_stream(config, first_epoch)),
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
    flags.DEFINE_string("dataset", None, f"Dataset: {', '.join(DATASETS)}.", required=True)
    flags.DEFINE_integer("epochs", None, "Total number of epochs to reach.", required=True)
    flags.DEFINE_string("model_dir", None, "Run directory: config, checkpoints, logs.", required=True)
    flags.DEFINE_string("data_path", None, "A local copy of the data: frey_rawface.mat for frey_faces, a directory "
                        "of MNIST IDX files for mnist, of Lake's zip archives for omniglot.")
    flags.DEFINE_integer("batch_size", None, "Examples per step (default: preset recipe, else 100).")
    flags.DEFINE_float("learning_rate", None, "Learning rate, the peak of the recipe's schedule (default: preset "
                       "recipe, else 1e-3).")
    flags.DEFINE_integer("num_importance_samples", None, "K of the training bound (default: the preset's).")
    flags.DEFINE_integer("seed", 0, "Seeds the model and the data order.")
    flags.DEFINE_multi_string("override", [], "Model config override key=value (Python literal), repeatable.")
    flags.DEFINE_string("train_split", None, "Training split (default per dataset, e.g. 'train').")
    flags.DEFINE_string("validation_split", None, "Split that picks the best epoch ('' for none).")
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the training split).")
    flags.DEFINE_integer("steps_per_execution", None, "Steps per compiled call (default: the model's, at most an epoch).")
    flags.DEFINE_integer("keep_checkpoints", 3, "Epoch checkpoints to keep.")
    flags.DEFINE_integer("episode_classes", None, "Memory-per-batch presets on omniglot: characters per episode (8).")
    flags.DEFINE_integer("episode_targets", None, "Memory-per-batch presets: targets per character on omniglot (4); "
                         "targets per episode on MNIST (all stored images).")
    flags.DEFINE_integer("episode_memory", None, "Memory-per-batch presets: memory drawings per character on "
                         "omniglot (4); stored images per episode on MNIST (256).")
    flags.DEFINE_float("skip_gradient_norm", None, "Skip updates whose gradient norm exceeds this (never more than "
                       "10 in a row; see zoo.recipes.ClippedAdam). Default: no skipping.")
    flags.DEFINE_enum("strategy", "default", STRATEGIES, "Where the steps run: default (one device), mirrored "
                      "(every local GPU), multi_worker (the cluster in $TF_CONFIG), tpu. --batch_size is global.")
    flags.DEFINE_enum("mixed_precision", None, MIXED_PRECISION, "Compute in 16 bits (variables and distribution "
                      "parameters stay float32); mixed_float16 adds loss scaling. Default: float32.")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras verbosity (1: progress bar).")


def main(argv):
    f = flags.FLAGS
    overrides = parse_overrides(f.override)
    check_flags(f.preset, f.dataset, f.epochs, f.batch_size, f.learning_rate, f.steps_per_execution,
                f.keep_checkpoints, f.steps_per_epoch, f.episode_classes, f.episode_targets, f.episode_memory,
                data_path=f.data_path, overrides=overrides, skip_gradient_norm=f.skip_gradient_norm,
                strategy=f.strategy, mixed_precision=f.mixed_precision)
    if os.path.exists(f.model_dir) and not os.path.isdir(f.model_dir):
        raise UsageError(f"--model_dir {f.model_dir!r} is a file, not a directory; pick a directory")
    quiet_libraries()
    strategy = make_strategy(f.strategy)  # first: a cluster's collectives are configured before any op runs
    config = resolve_config(
        f.preset, f.dataset, f.epochs, f.batch_size, f.learning_rate, f.num_importance_samples, f.seed,
        overrides, f.train_split, f.validation_split, f.steps_per_execution, f.keep_checkpoints, f.data_path,
        f.episode_classes, f.episode_targets, f.episode_memory, f.steps_per_epoch, f.skip_gradient_norm,
        f.strategy, f.mixed_precision,
    )
    train(config, f.model_dir, verbose=f.verbose if f.verbose == "auto" else int(f.verbose), strategy=strategy)


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
