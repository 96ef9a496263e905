"""Searches a preset's hyperparameters with keras-tuner from the command line; resumable.

    python -m zoo.tune --preset=vae_mnist_500_500_100 --dataset=binarized_mnist --max_trials=10 \\
        --directory=runs/tune-vae [--epochs --steps_per_epoch --batch_size --seed --tuner=random|bayesian|hyperband \\
        --override=key=value ... --space=name=value ...]

What lands in `--directory`:

    tune.json    the search's definition (flags); a re-run with other values is refused
    search/      keras-tuner's project: oracle.json, one trial_N/ per trial (hyperparameters, score, weights)
    best.json    the best trial: its hyperparameters, score, the overrides and learning rate that rebuild
                 it and the zoo.train command that retrains it
    lock         while searching: the pid and host of the process that owns the directory

Running the same command again resumes: finished trials are kept, an interrupted one runs
again, and the search stops at `--max_trials` (which may be raised to extend a search).

Every trial trains the preset (with the trial's values as overrides) for `--epochs` epochs of
`--steps_per_epoch` steps on the data `zoo.train` would use, and is scored on the validation
split (see `zoo.tuning` for the search space and the objective). `--space=name=value` changes the
space: `name=[v1, v2]` a choice, `name={"min_value": a, "max_value": b}` a range, `name=v` a fixed
value, `name=None` the preset's value.
"""

import importlib.util
import json
import os
import shlex
import sys

from absl import flags

from zoo.cli import (
    LOCK_FILE,
    UsageError,
    quiet_libraries,
    run_app,
    run_dir_lock,
    write_json,
)
from zoo.train import DATASETS, check_flags, parse_overrides

# As zoo.tuning.TUNERS, which imports TensorFlow.
TUNERS = ("random", "bayesian", "hyperband")
SEARCH_FILE = "tune.json"
BEST_FILE = "best.json"
PROJECT = "search"
RETRAIN_DIR = "best_model"
# Flags that define a search; all but --max_trials must match to resume one.
_IDENTITY = ("preset", "dataset", "data_path", "overrides", "space", "train_split", "validation_split", "epochs",
             "steps_per_epoch", "batch_size", "seed", "tuner", "objective", "objective_samples")


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
                         "Steps per compiled call (default: the model's, at most an epoch).")
    flags.DEFINE_enum("objective", "auto", ["auto", "val_bound", "val_log_likelihood"],
                      "Trial score (auto: val_bound, or val_log_likelihood when the number of importance samples "
                      "is searched).")
    flags.DEFINE_integer("objective_samples", 100, "Importance samples per example of val_log_likelihood.")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras verbosity (1: progress bar).")


def _check_directory(directory, definition):
    """A directory is new (absent or empty), or a search with the same definition to resume."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"--directory {directory!r} is a file, not a directory; pick a directory")
    if not os.path.isdir(directory) or not set(os.listdir(directory)) - {LOCK_FILE}:
        return
    path = os.path.join(directory, SEARCH_FILE)
    if not os.path.isfile(path):
        raise UsageError(f"--directory {directory!r} is not empty and holds no {SEARCH_FILE}: not a zoo.tune "
                         "search; pick a new or empty directory")
    with open(path) as f:
        previous = json.load(f)
    changed = [key for key in _IDENTITY if previous.get(key) != definition.get(key)]
    if changed:
        raise UsageError(f"--directory {directory!r} holds a search with different {', '.join(changed)}; "
                         "resume it with the same flags or pick a new directory")


def train_command(config, best, model_dir):
    """The `python -m zoo.train` command that retrains the best trial's model (as one shell-quoted string)."""
    args = [f"--preset={config['preset']}", f"--dataset={config['dataset']}", f"--epochs={config['epochs']}",
            f"--model_dir={model_dir}", f"--learning_rate={best['learning_rate']!r}", f"--seed={config['seed']}",
            f"--train_split={config['train_split']}", f"--validation_split={config['validation_split']}"]
    # The trial's steps too, so that the command retrains the trial's model as it was trained in the search.
    for name in ("batch_size", "steps_per_epoch", "steps_per_execution"):
        if config[name] is not None:
            args.append(f"--{name}={config[name]}")
    if config["data_path"]:
        args.append(f"--data_path={config['data_path']}")
    # --seed already sets the model's seed.
    args += [f"--override={key}={value!r}" for key, value in best["overrides"].items()
             if not (key == "seed" and value == config["seed"])]
    return " ".join(["python", "-m", "zoo.train", *map(shlex.quote, args)])


def search(preset, dataset, directory, max_trials=None, tuner="random", epochs=1, steps_per_epoch=None,
           batch_size=None, seed=0, overrides=None, space=None, train_split=None, validation_split=None,
           data_path=None, steps_per_execution=None, objective=None, objective_samples=100, verbose=2):
    """Runs (or resumes) the search the command line describes in `directory`; returns `best.json`'s content.

    The arguments are the flags of the same names (`objective=None`: auto). Every check that
    needs no TensorFlow runs first; bad values raise `UsageError` before anything is written.
    Holds `<directory>/lock` while it searches: a second process on the same directory is refused.
    """
    overrides, space = dict(overrides or {}), dict(space or {})
    check_flags(preset, dataset, epochs, batch_size, None, steps_per_execution, 1, steps_per_epoch,
                data_path=data_path, overrides=overrides)
    if tuner not in TUNERS:
        raise UsageError(f"unknown tuner {tuner!r}; available: {', '.join(TUNERS)}")
    if tuner == "hyperband" and max_trials is not None:
        raise UsageError("--max_trials does not apply to --tuner=hyperband, which sets its number of trials from "
                         "--epochs (the most epochs a trial trains)")
    if tuner != "hyperband" and max_trials is None:
        raise UsageError(f"--max_trials is required for --tuner={tuner}")
    if tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:
        raise UsageError('--tuner=bayesian needs scikit-learn: pip install "zoo[bayesian]" (or scikit-learn)')
    for name, value in (("max_trials", max_trials), ("objective_samples", objective_samples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"--{name} must be an int >= 1, got {value!r}")
    definition = json.loads(json.dumps({
        "preset": preset, "dataset": dataset, "data_path": data_path, "overrides": overrides, "space": space,
        "train_split": train_split, "validation_split": validation_split, "epochs": epochs,
        "steps_per_epoch": steps_per_epoch, "batch_size": batch_size, "seed": seed, "tuner": tuner,
        "objective": objective, "objective_samples": objective_samples, "max_trials": max_trials,
    }))  # tuples -> lists: what tune.json holds
    _check_directory(directory, definition)
    quiet_libraries()

    from zoo import train, tuning

    config = train.resolve_config(
        preset, dataset, epochs, batch_size, seed=seed, overrides=overrides, train_split=train_split,
        validation_split=validation_split, steps_per_execution=steps_per_execution, data_path=data_path,
        steps_per_epoch=steps_per_epoch,
    )
    if not config["validation_split"]:
        raise UsageError(f"dataset {dataset!r} has no validation split to score trials on: pass --validation_split "
                         "(a split the training split does not hold)")
    try:
        hypermodel = tuning.PresetHyperModel(config, space, objective, objective_samples)
    except ValueError as error:
        raise UsageError(f"--space: {str(error).splitlines()[0]}") from None
    os.makedirs(directory, exist_ok=True)
    with run_dir_lock(directory):
        _check_directory(directory, definition)  # again, now that no other process can write it
        write_json(os.path.join(directory, SEARCH_FILE), definition, indent=2)
        keras_tuner = tuning.make_tuner(hypermodel, directory, tuner, max_trials, seed, PROJECT)
        done = len(tuning.finished_trials(keras_tuner))
        if done:
            print(f"Resuming the search in {directory}: {done} trial(s) finished", flush=True)
        keras_tuner.search(
            train.training_stream(config, 0), validation_data=train.validation_stream(config),
            epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"], verbose=verbose,
        )
        try:
            best = tuning.best_result(keras_tuner, hypermodel)
        except ValueError as error:
            raise UsageError(
                f"{error}: every trial failed (see {keras_tuner.project_dir}/trial_*/trial.json)"
            ) from None
        best["command"] = train_command(config, best, os.path.join(directory, RETRAIN_DIR))
        write_json(os.path.join(directory, BEST_FILE), best, indent=2)
    return best


def main(argv):
    f = flags.FLAGS
    overrides = parse_overrides(f.override)
    try:
        space = parse_overrides(f.space)
    except UsageError:
        raise UsageError(f"--space expects name=value, got {f.space}") from None
    best = search(
        f.preset, f.dataset, f.directory, f.max_trials, f.tuner, f.epochs, f.steps_per_epoch, f.batch_size, f.seed,
        overrides, space, f.train_split, f.validation_split, f.data_path, f.steps_per_execution,
        None if f.objective == "auto" else f.objective, f.objective_samples,
        verbose=int(f.verbose) if f.verbose != "auto" else 1 if sys.stdout.isatty() else 2,
    )
    print(f"Best of {best['trials']} trials: trial {best['trial_id']}, {best['objective']} {best['score']:.2f}, "
          + ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                      for name, value in best["hyperparameters"].items()), flush=True)
    print(f"Retrain it: {best['command']}", flush=True)
    print(json.dumps(best), flush=True)


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
