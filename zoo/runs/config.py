"""A run's configuration: the choices it is made of, checked, resolved into config.json's dict, and built.

`resolve_config` turns a run's choices (a preset, a dataset, optimisation and data options) into
the complete JSON-ready configuration that `zoo.runs.training.train` runs and config.json
holds; `build_model` and `build_optimizer` build what it describes. `check_run_dir` decides
whether a directory may take a run: new, or the same run to resume (`RUN_IDENTITY`).
"""

import contextlib
import json
import math
import numbers
import os

from zoo.runs import data
from zoo.runs.errors import UsageError
from zoo.runs.files import CONFIG_FILE, check_resumable

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
# strategy: a run may resume on other devices, and its global batch (batch_size) keeps the steps the same. The
# validation split too: the best epoch so far was chosen by its bound.
RUN_IDENTITY = ("preset", "dataset", "data_path", "train_split", "validation_split", "batch_size", "episodes", "seed",
                "overrides", "mixed_precision", "recipe")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# Keras dtype policies: compute in 16 bits, variables (and the zoo's distribution parameters) in float32.
MIXED_PRECISION = ("mixed_float16", "mixed_bfloat16")


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

    check_options(preset, dataset, epochs, batch_size, learning_rate, steps_per_execution, keep_checkpoints,
                steps_per_epoch, episode_classes, episode_targets, episode_memory, data_path=data_path,
                overrides=overrides, skip_gradient_norm=skip_gradient_norm, strategy=strategy,
                mixed_precision=mixed_precision, num_importance_samples=num_importance_samples, seed=seed)
    recipe = zoo.presets.PRESETS[preset].get("recipe", {})
    try:
        zoo.optimizers.check_recipe(preset, recipe)
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
        "episodes": _episode_config(memory_per_batch(preset, model_overrides), dataset, episode_classes,
                                    episode_targets, episode_memory),
        "data_options": data_options(dataset, model.input_shape),
        "learning_rate": learning_rate or recipe.get("learning_rate", 1e-3),
        # The optimizer and schedule the recipe names (zoo.optimizers.APPLIED_KEYS).
        "recipe": {key: value for key, value in recipe.items()
                   if key in zoo.optimizers.APPLIED_KEYS and key not in ("batch_size", "learning_rate")},
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
    if data.count_examples(config, config["train_split"]) < (config["batch_size"] or 1):
        raise UsageError(f"--train_split {config['train_split']!r} holds fewer examples than one batch of "
                         f"{config['batch_size'] or 1}")
    if config["validation_split"] and not data.count_examples(config, config["validation_split"]):
        raise UsageError(f"--validation_split {config['validation_split']!r} is empty")
    config["steps_per_epoch"] = data.steps_per_epoch(config)
    config["model"] = _serialize(model)
    return json.loads(json.dumps(config))  # tuples -> lists: what config.json will hold


def check_options(preset, dataset, epochs, batch_size=None, learning_rate=None, steps_per_execution=None,
                  keep_checkpoints=3, steps_per_epoch=None, episode_classes=None, episode_targets=None,
                  episode_memory=None, *, data_path=None, overrides=None, skip_gradient_norm=None, strategy="default",
                  mixed_precision=None, num_importance_samples=None, seed=0):
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
    check_counts(epochs=epochs, batch_size=batch_size, keep_checkpoints=keep_checkpoints,
                 steps_per_execution=steps_per_execution, steps_per_epoch=steps_per_epoch,
                 episode_classes=episode_classes, episode_targets=episode_targets, episode_memory=episode_memory,
                 num_importance_samples=num_importance_samples)
    check_seed(seed)
    if num_importance_samples is not None and "num_importance_samples" in (overrides or {}):
        raise UsageError(f"--num_importance_samples={num_importance_samples} and --override=num_importance_samples="
                         f"{overrides['num_importance_samples']!r} both set K; pass one")
    if learning_rate is not None and not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < math.inf):
        raise UsageError(f"--learning_rate must be a finite number > 0, got {learning_rate!r}")
    if skip_gradient_norm is not None and not (
        isinstance(skip_gradient_norm, (int, float)) and 0 < skip_gradient_norm < math.inf
    ):
        raise UsageError(f"--skip_gradient_norm must be a finite number > 0, got {skip_gradient_norm!r}")
    check_data(dataset, (overrides or {}).get("input_shape", PRESETS[preset]["config"]["input_shape"]), data_path,
               f"preset {preset!r}")
    _check_episodes(preset, dataset, strategy, memory_per_batch(preset, overrides), episode_classes, episode_targets,
                    episode_memory)


def check_counts(**counts):
    """Each given count (None: not given) is an int >= 1, else `UsageError` naming its option.

    The run library's own check, not `zoo.validation.positive_int`: options are checked before
    TensorFlow (which `zoo.validation` imports) is loaded, so that a bad one is reported at once.
    """
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"--{name} must be an int >= 1, got {value!r}")


def check_seed(seed, signed=False):
    """`UsageError` unless `seed` is an int32 (`signed`: an evaluation's stateless seed), else one in [0, 2**31): the
    samplers take int32 seeds, a larger one would wrap around."""
    low = -2**31 if signed else 0
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not low <= seed < 2**31:
        raise UsageError(f"--seed must be an int in [{'-2**31' if signed else 0}, 2**31), got {seed!r}")


def check_data(dataset, input_shape, data_path, subject):
    """`UsageError` unless `dataset` comes in `input_shape` (what `subject`, e.g. a preset, takes) and
    `data_path` is what it is read from (a file for frey_faces, none for binarized_mnist)."""
    if isinstance(input_shape, (tuple, list)) and data_options(dataset, input_shape) is None:
        input_shape = tuple(input_shape)
        fitting = sorted(name for name in DATASETS if data_options(name, input_shape) is not None)
        raise UsageError(
            f"{subject} takes {'x'.join(map(str, input_shape))} inputs but dataset {dataset!r} gives "
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


def data_options(dataset, input_shape):
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


def memory_per_batch(preset, overrides=None):
    """Whether the preset's model (with `overrides`) takes its memory with each batch (`memory_size=None`)."""
    from zoo.presets import PRESETS

    return {**PRESETS[preset]["config"], **(overrides or {})}.get("memory_size", 0) is None


def _check_episodes(preset, dataset, strategy, per_batch, classes, targets, memory):
    """The episode flags fit the preset and the dataset (see `_episode_config`)."""
    given = [f"--{n}" for n, v in (("episode_classes", classes), ("episode_targets", targets),
                                   ("episode_memory", memory)) if v is not None]
    if not per_batch:
        if given:
            raise UsageError(f"{', '.join(given)}: only for presets whose memory comes with each batch "
                             "(memory_size=None), not for this one")
        return
    if strategy != "default":
        raise UsageError(f"--strategy={strategy}: preset {preset!r} trains on episodes whose memory is shared by "
                         "the whole batch, which cannot be split between replicas; use --strategy=default")
    if dataset in ("binarized_mnist", "mnist"):
        if classes is not None:
            raise UsageError(f"--episode_classes applies to omniglot episodes; {dataset} gives recall episodes "
                             "(--episode_memory stored images, --episode_targets of them as targets)")
        if targets is not None and targets > (memory or 256):
            raise UsageError(f"--episode_targets ({targets}) must be <= --episode_memory ({memory or 256}): "
                             "recall targets are stored images")
    elif dataset != "omniglot":
        raise UsageError(f"dataset {dataset!r} has no episodes for a memory given with each batch")


def _episode_config(per_batch, dataset, classes, targets, memory):
    """The episode sizes of a model whose memory comes with each batch (checked by `_check_episodes`), None for
    any other model."""
    if not per_batch:
        return None
    if dataset == "omniglot":
        return {"kind": "classes", "num_classes": classes or 8, "num_targets": targets or 4,
                "num_memory": memory or 4}
    memory = memory or 256
    return {"kind": "recall", "num_memory": memory, "num_targets": targets or memory}


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


def build_optimizer(config):
    """The run's optimizer: its recipe's (see `zoo.optimizers.build_optimizer`), with loss scaling for float16."""
    import keras

    from zoo import optimizers

    optimizer = optimizers.build_optimizer(config["recipe"], config["learning_rate"], config["steps_per_epoch"],
                                          config["epochs"], skip_threshold=config["skip_gradient_norm"])
    if config.get("mixed_precision") == "mixed_float16":
        # float16 gradients underflow without loss scaling (bfloat16 has float32's range and needs none).
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


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


def changed_identity(previous, config):
    """The names of what differs between two run configurations and forbids resuming one as the other."""
    changed = [key for key in RUN_IDENTITY + ("model",) if _identity(previous, key) != _identity(config, key)]
    # A warm-up + cosine learning rate spans the run's updates: other epochs or epoch lengths would give the updates
    # already made and the ones to come rates of another schedule.
    if "warmup_epochs" in _identity(config, "recipe"):
        changed += [f"{key} (the run's {previous.get(key)}, asked {config.get(key)}: its warm-up + cosine learning "
                    "rate spans them)" for key in ("epochs", "steps_per_epoch") if previous.get(key) != config.get(key)]
    return changed


def check_run_dir(model_dir, config):
    """A model_dir is new (absent or empty), or a run of the same configuration to resume."""
    check_resumable(model_dir, "--model_dir", CONFIG_FILE, config, changed_identity, "zoo.train run")
