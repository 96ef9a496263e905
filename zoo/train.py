"""Trains a zoo model from the command line; resumable, with a NaN guard.

    python -m zoo.train --preset=vae_mnist_500_500_100 --dataset=binarized_mnist --epochs=10 \\
        --model_dir=runs/vae [--batch_size --learning_rate --num_importance_samples --seed \\
        --override=key=value ...]

What lands in `--model_dir` is described in `zoo.runs.files`. Running the same command again
after an interruption (even SIGKILL mid-epoch) resumes from the last finished epoch: epoch e
always sees the same data order (a function of `--seed` and e), and the optimizer and
random-number state come back from the checkpoint, so the resumed run ends where an
uninterrupted one would. The flags become a run configuration (`zoo.runs.config.resolve_config`),
which `zoo.runs.training.train` runs: both are usable from Python.
"""

from absl import flags

from zoo.cli import parse_overrides, quiet_libraries, run_app
from zoo.runs.config import DATASETS, MIXED_PRECISION, STRATEGIES, check_options, resolve_config
from zoo.runs.files import check_directory_path, check_not_in_use
from zoo.runs.training import make_strategy, train


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
    flags.DEFINE_integer("steps_per_execution", None, "Steps per compiled call, at most (default: the model's): "
                         "the largest number up to it that divides the epoch's steps.")
    flags.DEFINE_integer("keep_checkpoints", 3, "Epoch checkpoints to keep.")
    flags.DEFINE_integer("episode_classes", None, "Memory-per-batch presets on omniglot: characters per episode (8).")
    flags.DEFINE_integer("episode_targets", None, "Memory-per-batch presets: targets per character on omniglot (4); "
                         "targets per episode on MNIST (all stored images).")
    flags.DEFINE_integer("episode_memory", None, "Memory-per-batch presets: memory drawings per character on "
                         "omniglot (4); stored images per episode on MNIST (256).")
    flags.DEFINE_float("skip_gradient_norm", None, "Skip updates whose gradient norm exceeds this (never more than "
                       "10 in a row; see zoo.optimizers.ClippedAdam). Default: no skipping.")
    flags.DEFINE_enum("strategy", "default", STRATEGIES, "Where the steps run: default (one device), mirrored "
                      "(every local GPU), multi_worker (the cluster in $TF_CONFIG), tpu. --batch_size is global.")
    flags.DEFINE_enum("mixed_precision", None, MIXED_PRECISION, "Compute in 16 bits (variables and distribution "
                      "parameters stay float32); mixed_float16 adds loss scaling. Default: float32.")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras verbosity (1: progress bar).")


def main(argv):
    f = flags.FLAGS
    overrides = parse_overrides(f.override)
    check_options(f.preset, f.dataset, f.epochs, f.batch_size, f.learning_rate, f.steps_per_execution,
                  f.keep_checkpoints, f.steps_per_epoch, f.episode_classes, f.episode_targets, f.episode_memory,
                  data_path=f.data_path, overrides=overrides, skip_gradient_norm=f.skip_gradient_norm,
                  strategy=f.strategy, mixed_precision=f.mixed_precision,
                  num_importance_samples=f.num_importance_samples, seed=f.seed)
    check_directory_path(f.model_dir, "--model_dir")
    check_not_in_use(f.model_dir)
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
