"""zoo.runs.search and zoo.runs.hypermodel: the preset's search space, a 2-trial search on real binarized MNIST
that is interrupted and resumed, the best trial rebuilt (and retrained by zoo.train)."""

import json
import os
import random
import shlex

import numpy as np
import pytest

from tests.conftest import needs_mnist
from tests.testing import TINY_SEARCH, run_app
from zoo import cli as zoo_cli
from zoo.runs import (
    config as run_config, data as run_data, hypermodel as run_hypermodel, search as run_search, state as run_state,
    training as run_training,
)


# A tiny VAE on a few hundred real images; 3 steps of 50 per trial.
SEARCH = {
    "preset": "vae_mnist_500_500_100", "dataset": "binarized_mnist", "max_trials": 2, "epochs": 1,
    "steps_per_epoch": 3, "batch_size": 50, "overrides": {"hidden_units": (32,), "latent_dim": 8},
    "train_split": "train[:300]", "validation_split": "validation[:100]", "objective_samples": 10, "verbose": 0,
}


def _trial_file(directory, trial_id):
    return os.path.join(directory, run_search.PROJECT, f"trial_{trial_id}", "trial.json")


def _read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def config():
    return run_config.resolve_config(
        SEARCH["preset"], SEARCH["dataset"], SEARCH["epochs"], SEARCH["batch_size"], overrides=SEARCH["overrides"],
        train_split=SEARCH["train_split"], validation_split=SEARCH["validation_split"],
        steps_per_epoch=SEARCH["steps_per_epoch"],
    )


def _mtimes(directory, trial_id):
    trial_dir = os.path.dirname(_trial_file(directory, trial_id))
    return {name: os.stat(os.path.join(trial_dir, name)).st_mtime_ns for name in sorted(os.listdir(trial_dir))}


@pytest.fixture(scope="module")
def interrupted_search(tmp_path_factory):
    """The search stopped (KeyboardInterrupt) while training its second trial, then resumed by the same command line."""

    directory = str(tmp_path_factory.mktemp("tune") / "search")
    fitted = []
    original_fit = run_hypermodel.PresetHyperModel.fit

    def fit(self, hp, *args, **kwargs):
        fitted.append(dict(hp.values))
        if len(fitted) == 2:
            raise KeyboardInterrupt
        return original_fit(self, hp, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_hypermodel.PresetHyperModel, "fit", fit)
        with pytest.raises(KeyboardInterrupt):
            run_search.search(directory=directory, **SEARCH)
    after_interruption = {trial: json.loads(_read(_trial_file(directory, trial))) for trial in "01"}
    first_trial = (_read(_trial_file(directory, 0)), _mtimes(directory, 0))
    return {"directory": directory, "fitted": fitted, "after_interruption": after_interruption,
            "first_trial": first_trial, "rerun": run_app("zoo.tune", *TINY_SEARCH, f"--directory={directory}")}


def test_search_space_depends_on_the_preset():

    def names(preset):
        return set(run_hypermodel.search_space(preset))

    assert names("vae_mnist_500_500_100") == {"learning_rate", "latent_dim", "num_importance_samples"}
    # Memory slots only for the models with memory slots, a learned memory's size only for VMA with one.
    assert names("memvae_mnist_500_500_100") == {"learning_rate", "latent_dim", "slot_scale", "num_importance_samples"}
    assert names("vma_mnist_mlp") == {"learning_rate", "latent_dim", "memory_size", "num_importance_samples"}
    assert names("vma_mnist_recall") == {"learning_rate", "latent_dim", "num_importance_samples"}
    # Depth only for hierarchies; their latent sizes scale level by level.
    assert names("iwae_mnist_2layer") == {"learning_rate", "latent_scale", "num_levels", "num_importance_samples"}
    assert names("nvae_mnist_small") == {"learning_rate", "latent_scale", "num_scales"}  # KL balancing needs K = 1
    assert names("nvae_cifar10") == {"learning_rate", "latent_scale"}  # one scale: no depth to choose
    space = run_hypermodel.search_space("ladder_vae_mnist")
    levels = space["num_levels"]
    assert (levels["min_value"], levels["max_value"], levels["default"]) == (1, 5, 5)
    assert space["learning_rate"]["default"] == 2e-4  # the preset recipe's
    assert run_hypermodel.search_space("vae_mnist_500_500_100", {"latent_dim": 8})["latent_dim"]["values"] == [4, 8, 16]
    assert run_hypermodel.search_space("memvae_mnist_500_500_100")["slot_scale"] == {"values": [0.5, 1.0, 2.0], "default": 1.0}
    assert run_hypermodel.search_space("vma_mnist_mlp")["num_importance_samples"]["values"] == [2, 4, 8]  # VIMCO: K >= 2
    assert run_hypermodel.search_space("vae_mnist_500_500_100")["num_importance_samples"]["values"] == [1, 5]


def test_space_changes_and_their_refusal():

    space = run_hypermodel.resolve_space("memvae_mnist_500_500_100", space={
        "latent_dim": [10, 20], "slot_scale": 2.0, "num_importance_samples": None,
        "learning_rate": {"min_value": 1e-4, "max_value": 1e-3}})
    assert space == {"latent_dim": {"values": [10, 20]}, "slot_scale": 2.0,
                     "learning_rate": {"min_value": 1e-4, "max_value": 1e-3}}
    with pytest.raises(ValueError, match="no hyperparameter num_levels to tune; its hyperparameters: learning_rate, "
                                         "latent_dim, num_importance_samples"):
        run_hypermodel.resolve_space("vae_mnist_500_500_100", space={"num_levels": 2})
    with pytest.raises(ValueError, match="at least one value"):
        run_hypermodel.resolve_space("vae_mnist_500_500_100", space={"latent_dim": []})


def _hypermodel(config, preset, overrides, **kwargs):

    return run_hypermodel.PresetHyperModel({**config, "preset": preset, "overrides": {**overrides, "seed": 0}}, **kwargs)


@needs_mnist
def test_trial_values_become_the_model_and_optimizer(config):
    import keras_tuner

    memvae = _hypermodel(config, "memvae_mnist_500_500_100", {"hidden_units": [16, 16]},
                         space={"slot_scale": 0.5, "latent_dim": 6, "learning_rate": 3e-4, "num_importance_samples": 5})
    model = memvae.build(keras_tuner.HyperParameters())
    assert (model.num_slots, model.latent_dim, model.num_importance_samples) == ((35, 15), 6, 5)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-4)
    # The preset's recipe (Adam epsilon 1e-4, gradient clipping) stays.
    assert type(model.optimizer).__name__ == "ClippedAdam" and model.optimizer.epsilon == 1e-4
    iwae = _hypermodel(config, "iwae_mnist_2layer", {}, space={"num_levels": 1, "latent_scale": 0.5})
    model = iwae.build(keras_tuner.HyperParameters())
    assert [level["latent_dim"] for level in model.levels] == [50]
    assert [tuple(level["hidden_units"]) for level in model.levels] == [(200, 200)]
    vma = _hypermodel(config, "vma_mnist_mlp", {"hidden_units": [16, 8]}, space={"memory_size": 128})
    assert vma.build(keras_tuner.HyperParameters()).memory_size == 128
    # K is compared on a K-independent scale when it is searched.
    assert _hypermodel(config, "vae_mnist_500_500_100", {}).objective == "val_log_likelihood"
    fixed_k = _hypermodel(config, "vae_mnist_500_500_100", {}, space={"num_importance_samples": 5})
    assert fixed_k.objective == "val_bound"
    with pytest.raises(ValueError, match="bad search space for 'latent_dim'"):
        _hypermodel(config, "vae_mnist_500_500_100", {}, space={"latent_dim": {"min_value": 4}})


@needs_mnist
def test_interrupted_search_resumes_without_rerunning_finished_trials(interrupted_search):
    after, fitted = interrupted_search["after_interruption"], interrupted_search["fitted"]
    assert (after["0"]["status"], after["1"]["status"]) == ("COMPLETED", "RUNNING")
    assert len(fitted) == 2 and fitted[1] == after["1"]["hyperparameters"]["values"]
    code, out, err = interrupted_search["rerun"]
    assert code == 0, err
    directory = interrupted_search["directory"]
    assert f"Resuming the search in {directory}: 1 trial(s) finished" in out
    # The finished trial is untouched; the interrupted one ran to the end with its own values, and no other.
    assert (_read(_trial_file(directory, 0)), _mtimes(directory, 0)) == interrupted_search["first_trial"]
    trials = [name for name in os.listdir(os.path.join(directory, run_search.PROJECT)) if name.startswith("trial_")]
    assert sorted(trials) == ["trial_0", "trial_1"]
    records = {t: json.loads(_read(_trial_file(directory, t))) for t in "01"}
    assert [records[t]["status"] for t in "01"] == ["COMPLETED", "COMPLETED"]
    assert records["1"]["hyperparameters"]["values"] == fitted[1]
    best = json.loads(out.strip().splitlines()[-1])
    assert f"Retrain it: {best['command']}" in out
    with open(os.path.join(directory, run_search.BEST_FILE)) as f:
        assert json.load(f) == best
    assert best["trials"] == 2 and best["objective"] == "val_log_likelihood"
    scores = {t: records[t]["score"] for t in "01"}
    assert best["score"] == max(scores.values()) and scores[best["trial_id"]] == best["score"]
    assert best["hyperparameters"] == records[best["trial_id"]]["hyperparameters"]["values"]
    assert -600 < best["score"] < -100  # nats per image: a barely trained model, not a broken one


def _retrain_config(command):
    """The zoo.train configuration of a `python -m zoo.train ...` command line."""
    args = dict(arg[2:].split("=", 1) for arg in shlex.split(command)[3:] if not arg.startswith("--override="))
    overrides = zoo_cli.parse_overrides([arg[len("--override="):] for arg in shlex.split(command)
                                           if arg.startswith("--override=")])
    return run_config.resolve_config(
        args["preset"], args["dataset"], int(args["epochs"]), int(args["batch_size"]), float(args["learning_rate"]),
        seed=int(args["seed"]), overrides=overrides, train_split=args["train_split"],
        validation_split=args["validation_split"], steps_per_epoch=int(args["steps_per_epoch"]),
    ), args["model_dir"]


@needs_mnist
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # the trial checkpoint's Adam state
def test_best_hyperparameters_rebuild_the_same_model(interrupted_search, config, tmp_path):

    directory = interrupted_search["directory"]
    with open(os.path.join(directory, run_search.BEST_FILE)) as f:
        best = json.load(f)
    hypermodel = run_hypermodel.PresetHyperModel(config, objective_samples=SEARCH["objective_samples"])
    tuner = run_hypermodel.make_tuner(hypermodel, directory, max_trials=2, project_name=run_search.PROJECT)
    best_hps = tuner.get_best_hyperparameters(1)[0]
    assert best_hps.values == best["hyperparameters"]
    x = next(iter(run_data.validation_stream(config)))
    rebuilt, again = hypermodel.build(best_hps), hypermodel.build(best_hps)
    retrain_config, model_dir = _retrain_config(best["command"])
    assert model_dir == os.path.join(directory, run_search.RETRAIN_DIR)
    random.seed(retrain_config["seed"])
    by_train = run_config.build_model(retrain_config)
    assert retrain_config["learning_rate"] == best["learning_rate"] == best_hps.values["learning_rate"]
    def normalized(config):  # JSON's lists for tuples; Keras numbers every model's name
        return {key: value for key, value in json.loads(json.dumps(config)).items() if key != "name"}

    assert (normalized(rebuilt.get_config()) == normalized(again.get_config()) == normalized(by_train.get_config())
            == normalized(retrain_config["model"]["config"]))
    assert rebuilt.latent_dim == best["hyperparameters"]["latent_dim"]
    # The posterior mean: a deterministic path.
    outputs = [np.asarray(model.reconstruct(x)) for model in (rebuilt, again, by_train)]
    for model in (again, by_train):
        for a, b in zip(rebuilt.weights, model.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])
    # The command retrains the trial's model as the search trained it: the same weights after its one epoch.
    trained = tuner.get_best_models(1)[0]
    assert not np.array_equal(trained.weights[0].numpy(), rebuilt.weights[0].numpy())
    run_training.train(retrain_config, str(tmp_path / "retrained"), verbose=0)
    retrained, _ = run_state.load_trained_model(str(tmp_path / "retrained"), weights="last")
    for a, b in zip(trained.weights, retrained.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
