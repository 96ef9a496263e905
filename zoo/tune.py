"""Searches a preset's hyperparameters with keras-tuner from the command line; resumable.

    python -m zoo.tune --preset=vae_mnist_500_500_100 --dataset=binarized_mnist --max_trials=10 \\
        --directory=runs/tune-vae [--epochs --steps_per_epoch --batch_size --seed --tuner=random|bayesian|hyperband \\
        --override=key=value ... --space=name=value ...]

What lands in `--directory` is described in `zoo.runs.search`. Running the same command again
resumes: finished trials are kept, an interrupted one runs again, and the search stops at
`--max_trials` (which may be raised to extend a search).

Every trial trains the preset (with the trial's values as overrides) for `--epochs` epochs of
`--steps_per_epoch` steps on the data `zoo.train` would use, and is scored on the validation
split (see `zoo.runs.hypermodel` for the search space and the objective). `--space=name=value` changes the
space: `name=[v1, v2]` a choice, `name={"min_value": a, "max_value": b}` a range, `name=v` a fixed
value, `name=None` the preset's value.
"""

import json
import sys

from absl import flags

from zoo.cli import parse_overrides, quiet_libraries, run_app
from zoo.runs.config import DATASETS
from zoo.runs.errors import UsageError
from zoo.runs.search import TUNERS, check_search, check_search_dir, search


def define_flags():
    """Defines the command-line flags (only when run as a program, never on import)."""
    flags.DEFINE_string("preset", None, "Preset name (see zoo.presets.PRESETS).", required=True)
    flags.DEFINE_string("dataset", None, f"Dataset: {', '.join(DATASETS)}.", required=True)
    flags.DEFINE_string("directory", None, "Search directory: definition, trials, best.json.", required=True)
    flags.DEFINE_integer("max_trials", None, "Trials to run in all (random and bayesian tuners).")
    flags.DEFINE_enum("tuner", "random", list(TUNERS), "keras-tuner search algorithm.")
    flags.DEFINE_integer("epochs", 1, "Epochs per trial (hyperband: the most any trial trains).")
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the training split).")
    flags.DEFINE_integer("batch_size", None, "Examples per step (default: preset recipe, else 100).")
    flags.DEFINE_integer("seed", 0, "Seeds the models, the data order and the tuner.")
    flags.DEFINE_multi_string("override", [], "Fixed model config override key=value (Python literal), repeatable.")
    flags.DEFINE_multi_string("space", [], "Search-space change name=value: a list (choice), a dict (range), a "
                              "value (fixed) or None (the preset's value); repeatable.")
    flags.DEFINE_string("train_split", None, "Training split (default per dataset, e.g. 'train').")
    flags.DEFINE_string("validation_split", None, "Split that scores the trials (default per dataset).")
    flags.DEFINE_string("data_path", None, "A local copy of the data (see zoo.train).")
    flags.DEFINE_integer("steps_per_execution", None,
                         "Steps per compiled call, at most (default: the model's): the largest number up to it "
                         "that divides the epoch's steps.")
    flags.DEFINE_enum("objective", "auto", ["auto", "val_bound", "val_log_likelihood"],
                      "Trial score (auto: val_bound, or val_log_likelihood when the number of importance samples "
                      "is searched).")
    flags.DEFINE_integer("objective_samples", 100, "Importance samples per example of val_log_likelihood.")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras verbosity (1: progress bar).")


def main(argv):
    f = flags.FLAGS
    overrides = parse_overrides(f.override)
    try:
        space = parse_overrides(f.space)
    except UsageError:
        raise UsageError(f"--space expects name=value, got {f.space}") from None
    options = (f.preset, f.dataset, f.max_trials, f.tuner, f.epochs, f.steps_per_epoch, f.batch_size, f.seed,
               overrides, space, f.train_split, f.validation_split, f.data_path, f.steps_per_execution,
               None if f.objective == "auto" else f.objective, f.objective_samples)
    check_search_dir(f.directory, check_search(*options))  # before TensorFlow loads: a bad flag fails at once
    quiet_libraries()
    best = search(*options[:2], f.directory, *options[2:],
                  verbose=int(f.verbose) if f.verbose != "auto" else 1 if sys.stdout.isatty() else 2)
    print(f"Best of {best['trials']} trials: trial {best['trial_id']}, {best['objective']} {best['score']:.2f}, "
          + ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                      for name, value in best["hyperparameters"].items()), flush=True)
    print(f"Retrain it: {best['command']}", flush=True)
    print(json.dumps(best), flush=True)


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
