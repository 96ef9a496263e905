"""Hyperparameter search of a preset with keras-tuner, in a directory it can resume (see `search`).

What lands in the search directory:

    tune.json    the search's definition; a resume with other values is refused
    search/      keras-tuner's project: oracle.json, one trial_N/ per trial (hyperparameters, score, weights)
    best.json    the best trial: its hyperparameters, score, the overrides and learning rate that rebuild
                 it and the zoo.train command that retrains it
    lock         while searching: the pid and host of the process that owns the directory

Every trial trains the preset (with the trial's values as overrides) for `epochs` epochs of
`steps_per_epoch` steps on the data `zoo.runs.training` would use, and is scored on the
validation split (see `zoo.runs.hypermodel` for the search space and the objective).
"""

import importlib.util
import json
import os
import shlex

from zoo.runs.config import check_counts, check_options, resolve_config
from zoo.runs.data import training_stream, validation_stream
from zoo.runs.errors import UsageError
from zoo.runs.files import check_resumable, run_dir_lock, write_json

# As zoo.runs.hypermodel.TUNERS, which imports TensorFlow.
TUNERS = ("random", "bayesian", "hyperband")
SEARCH_FILE = "tune.json"
BEST_FILE = "best.json"
PROJECT = "search"
RETRAIN_DIR = "best_model"
# Flags that define a search; all but --max_trials must match to resume one.
IDENTITY = ("preset", "dataset", "data_path", "overrides", "space", "train_split", "validation_split", "epochs",
             "steps_per_epoch", "batch_size", "seed", "tuner", "objective", "objective_samples")


def check_search_dir(directory, definition):
    """A directory is new (absent or empty), or a search with the same definition to resume."""
    changed = lambda previous, current: [key for key in IDENTITY if previous.get(key) != current.get(key)]  # noqa: E731
    check_resumable(directory, "--directory", SEARCH_FILE, definition, changed, "zoo.tune search")


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


def check_search(preset, dataset, max_trials=None, tuner="random", epochs=1, steps_per_epoch=None, batch_size=None,
                 seed=0, overrides=None, space=None, train_split=None, validation_split=None, data_path=None,
                 steps_per_execution=None, objective=None, objective_samples=100):
    """The checks of `search`'s options that need no TensorFlow; returns the search's definition (tune.json).

    Raises `UsageError` naming the bad value.
    """
    overrides, space = dict(overrides or {}), dict(space or {})
    check_options(preset, dataset, epochs, batch_size, None, steps_per_execution, 1, steps_per_epoch,
                  data_path=data_path, overrides=overrides, seed=seed)
    if tuner not in TUNERS:
        raise UsageError(f"unknown tuner {tuner!r}; available: {', '.join(TUNERS)}")
    if tuner == "hyperband" and max_trials is not None:
        raise UsageError("--max_trials does not apply to --tuner=hyperband, which sets its number of trials from "
                         "--epochs (the most epochs a trial trains)")
    if tuner != "hyperband" and max_trials is None:
        raise UsageError(f"--max_trials is required for --tuner={tuner}")
    if tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:
        raise UsageError('--tuner=bayesian needs scikit-learn: pip install "zoo[bayesian]" (or scikit-learn)')
    check_counts(max_trials=max_trials, objective_samples=objective_samples)
    definition = json.loads(json.dumps({
        "preset": preset, "dataset": dataset, "data_path": data_path, "overrides": overrides, "space": space,
        "train_split": train_split, "validation_split": validation_split, "epochs": epochs,
        "steps_per_epoch": steps_per_epoch, "batch_size": batch_size, "seed": seed, "tuner": tuner,
        "objective": objective, "objective_samples": objective_samples, "max_trials": max_trials,
    }))  # tuples -> lists: what tune.json holds
    return definition


def search(preset, dataset, directory, max_trials=None, tuner="random", epochs=1, steps_per_epoch=None,
           batch_size=None, seed=0, overrides=None, space=None, train_split=None, validation_split=None,
           data_path=None, steps_per_execution=None, objective=None, objective_samples=100, verbose=2):
    """Runs (or resumes) a search in `directory`; returns `best.json`'s content.

    The arguments are `zoo.tune`'s flags of the same names (`objective=None`: auto). The checks
    of `check_search` run first; bad values raise `UsageError` before anything is written.
    Holds `<directory>/lock` while it searches: a second process on the same directory is refused.
    """
    definition = check_search(preset, dataset, max_trials, tuner, epochs, steps_per_epoch, batch_size, seed, overrides,
                              space, train_split, validation_split, data_path, steps_per_execution, objective,
                              objective_samples)
    overrides, space = dict(overrides or {}), dict(space or {})  # as given: tune.json holds them as JSON
    check_search_dir(directory, definition)
    # Imports Keras: not before the search's options are checked.
    from zoo.runs.hypermodel import PresetHyperModel, best_result, finished_trials, make_tuner

    config = resolve_config(
        preset, dataset, epochs, batch_size, seed=seed, overrides=overrides, train_split=train_split,
        validation_split=validation_split, steps_per_execution=steps_per_execution, data_path=data_path,
        steps_per_epoch=steps_per_epoch,
    )
    if not config["validation_split"]:
        raise UsageError(f"dataset {dataset!r} has no validation split to score trials on: pass --validation_split "
                         "(a split the training split does not hold)")
    try:
        hypermodel = PresetHyperModel(config, space, objective, objective_samples)
    except ValueError as error:
        raise UsageError(f"--space: {str(error).splitlines()[0]}") from None
    os.makedirs(directory, exist_ok=True)
    with run_dir_lock(directory):
        check_search_dir(directory, definition)  # again, now that no other process can write it
        write_json(os.path.join(directory, SEARCH_FILE), definition, indent=2)
        keras_tuner = make_tuner(hypermodel, directory, tuner, max_trials, seed, PROJECT)
        done = len(finished_trials(keras_tuner))
        if done:
            print(f"Resuming the search in {directory}: {done} trial(s) finished", flush=True)
        keras_tuner.search(
            training_stream(config, 0), validation_data=validation_stream(config),
            epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"], verbose=verbose,
        )
        try:
            best = best_result(keras_tuner, hypermodel)
        except ValueError as error:
            raise UsageError(
                f"{error}: every trial failed (see {keras_tuner.project_dir}/trial_*/trial.json)"
            ) from None
        best["command"] = train_command(config, best, os.path.join(directory, RETRAIN_DIR))
        write_json(os.path.join(directory, BEST_FILE), best, indent=2)
    return best
