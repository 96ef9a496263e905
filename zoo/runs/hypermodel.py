"""Hyperparameter search over any preset with keras-tuner.

`PresetHyperModel` wraps a run configuration (`zoo.runs.config.resolve_config`) as a
`keras_tuner.HyperModel`. Its search space comes from the preset's configuration and holds
only what that model has (`search_space`):

    learning_rate           every preset: log-uniform over [lr / 10, 3 lr] around the recipe's lr
    latent_dim              models with one latent: half, the preset's, double
    latent_scale            level stacks (levels / NVAE scales): every level's latent size x 0.5, 1, 2
    num_levels              hierarchies of >= 2 levels: the first n levels from x upward (1 .. all)
    num_scales              NVAE with >= 2 scales: the first n scales from the top (1 .. all)
    slot_scale              memory models with slots (MemVAE): every layer's slot count x 0.5, 1, 2
    memory_size             models with a learned memory (VMA, soft attention): half, the preset's, double
    num_importance_samples  K of the training bound (not with NVAE's KL balancing, which needs K = 1)

Each trial builds the preset with the trial's values as constructor overrides (on top of the
run's own `--override`s) and compiles it with the run's optimizer at the trial's learning rate,
exactly as `zoo.train` would: `train_overrides(hp)` gives the `--override`s and learning rate
that rebuild a trial's model with `zoo.train`.

The objective is the validation bound Keras logs, `val_bound` (maximised). The K-sample bound
grows with K for a fixed model, so it cannot compare trials of different K: when the space
varies K, the objective is `val_log_likelihood` instead, the importance-sampled log p(x) of the
validation data with a fixed `objective_samples` samples (and fixed seeds), logged each epoch.
"""

import math
import random

import keras
import keras_tuner

from zoo.presets import PRESETS
from zoo.runs.config import build_model, build_optimizer

# Multipliers of the scaled hyperparameters (latent sizes, slot counts): the preset's value is the middle one.
SCALES = (0.5, 1.0, 2.0)
OBJECTIVES = ("val_bound", "val_log_likelihood")
TUNERS = ("random", "bayesian", "hyperband")


def _around(value, minimum=1):
    """Half, the value, double (at least `minimum`), without duplicates."""
    return sorted({max(minimum, value // 2), value, 2 * value})


def _importance_samples(preset_class, k):
    # VMA's VIMCO baseline leaves one sample out, so it needs K >= 2; others compare the ELBO with K = 5.
    if preset_class == "VMA":
        return _around(k, minimum=2)
    return sorted({1, 5, k}) if k == 1 else _around(k)


def search_space(preset, overrides=None, learning_rate=None):
    """The default search space of `preset` (with the run's `overrides`): `{name: spec}`.

    The learning rate ranges around `learning_rate` (default: the preset recipe's, else 1e-3).

    A spec is a dict: `{"values": [...], "default": v}` (a choice) or `{"min_value", "max_value",
    "sampling", "default"}` (a range). Only the hyperparameters the preset's model has are listed
    (see the module docstring).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available presets: {sorted(PRESETS)}")
    entry = PRESETS[preset]
    config = {**entry["config"], **(overrides or {})}
    learning_rate = learning_rate or entry.get("recipe", {}).get("learning_rate", 1e-3)
    space = {
        "learning_rate": {"min_value": learning_rate / 10, "max_value": learning_rate * 3, "sampling": "log",
                          "default": learning_rate},
    }
    if "latent_dim" in config:
        space["latent_dim"] = {"values": _around(config["latent_dim"]), "default": config["latent_dim"]}
    for key, depth in (("levels", "num_levels"), ("scales", "num_scales")):
        if key in config:
            space["latent_scale"] = {"values": list(SCALES), "default": 1.0}
            if len(config[key]) > 1:
                space[depth] = {"min_value": 1, "max_value": len(config[key]), "default": len(config[key])}
    if any(config.get("num_slots") or ()):
        space["slot_scale"] = {"values": list(SCALES), "default": 1.0}
    if config.get("memory_size") is not None:
        space["memory_size"] = {"values": _around(config["memory_size"]), "default": config["memory_size"]}
    if not config.get("kl_balancing"):
        k = config.get("num_importance_samples", 1)
        space["num_importance_samples"] = {"values": _importance_samples(entry["class"], k), "default": k}
    return space


def resolve_space(preset, overrides=None, space=None, learning_rate=None):
    """`search_space(preset, overrides, learning_rate)` changed by the user's `space`: `{name: spec or fixed value}`.

    In `space`, a dict replaces a name's spec (the keyword arguments of `hp.Choice` with
    `values`, else of `hp.Int` for int bounds or `hp.Float`), a list is a choice among its
    values, any other value fixes the hyperparameter (`hp.Fixed`), and None leaves it out (the
    preset's value stays). Raises `ValueError` for a name the preset's model does not have.
    """
    resolved = search_space(preset, overrides, learning_rate)
    unknown = sorted(set(space or {}) - set(resolved))
    if unknown:
        raise ValueError(f"preset {preset!r} has no hyperparameter {', '.join(unknown)} to tune; "
                         f"its hyperparameters: {', '.join(resolved)}")
    for name, value in (space or {}).items():
        if value is None:
            del resolved[name]
        elif isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"space[{name!r}] must list at least one value, got {value!r}")
            resolved[name] = {"values": list(value)}
        else:
            resolved[name] = value
    return resolved


def _varies(spec):
    if not isinstance(spec, dict):
        return False
    if "values" in spec:
        return len(set(spec["values"])) > 1
    return spec["min_value"] != spec["max_value"]


def _scaled(value, scale):
    return max(1, round(value * scale)) if value else value  # a layer without slots keeps none


class ValidationLogLikelihood(keras.callbacks.Callback):
    """Logs `val_log_likelihood`, the mean importance-sampled log p(x) of `validation_data`, each epoch.

    Fixed seeds (batch i: `(seed, i)`) make it the same estimator for every trial.

    Args:
        validation_data: iterable of batches (or episodes), as `zoo.analysis.dataset_log_likelihood` takes.
        num_samples: int >= 1, importance samples per example.
        seed: int, seeds the estimator.
    """

    def __init__(self, validation_data, num_samples, seed=0):
        super().__init__()
        self.validation_data = validation_data
        self.num_samples = num_samples
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        from zoo import analysis

        result = analysis.dataset_log_likelihood(
            self.model, self.validation_data, num_samples=self.num_samples, seed=self.seed
        )
        # `logs` is the dict every later callback (History, the tuner's checkpoint) reads.
        logs["val_log_likelihood"] = -result["nll_nats"]


class PresetHyperModel(keras_tuner.HyperModel):
    """A `keras_tuner.HyperModel` over any preset: its model, built and compiled from a trial's hyperparameters.

    Args:
        config: dict, a run configuration (`zoo.runs.config.resolve_config(...)`): the preset,
            its fixed overrides, seed, optimizer recipe and steps per epoch.
        space: dict or None, changes to the preset's search space (see `resolve_space`).
        objective: `"val_bound"`, `"val_log_likelihood"` or None (the default: `val_bound`, or
            `val_log_likelihood` when the space varies `num_importance_samples`).
        objective_samples: int >= 1, importance samples per example of `val_log_likelihood`. Default 100.
        name: str or None, the hypermodel's name.
        tunable: bool, whether the hyperparameters may be tuned (keras-tuner's flag). Default True.

    Example:

    >>> import keras_tuner
    >>> from zoo.runs import config as run_config, hypermodel as run_hypermodel
    >>> config = run_config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", epochs=1,
    ...     overrides={"hidden_units": (32,)}, train_split="train[:200]", validation_split="validation[:100]",
    ...     batch_size=50)
    >>> hypermodel = run_hypermodel.PresetHyperModel(config, space={"num_importance_samples": None})
    >>> hypermodel.objective
    'val_bound'
    >>> model = hypermodel.build(keras_tuner.HyperParameters())   # every hyperparameter at its default
    >>> model.latent_dim
    100
    """

    def __init__(self, config, space=None, objective=None, objective_samples=100, name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        self.config = config
        self.space = space
        self.resolved_space = resolve_space(config["preset"], config["overrides"], space, config["learning_rate"])
        # Fail on a bad spec now rather than in every trial.
        self.declare(keras_tuner.HyperParameters())
        if objective is None:
            varies_k = _varies(self.resolved_space.get("num_importance_samples"))
            objective = "val_log_likelihood" if varies_k else "val_bound"
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES} or None, got {objective!r}")
        self.objective = objective
        if isinstance(objective_samples, bool) or not isinstance(objective_samples, int) or objective_samples < 1:
            raise ValueError(f"objective_samples must be an int >= 1, got {objective_samples!r}")
        self.objective_samples = objective_samples

    def declare(self, hp):
        """Declares the space's hyperparameters in `hp`; returns their values `{name: value}`."""
        values = {}
        for name, spec in self.resolved_space.items():
            try:
                if not isinstance(spec, dict):
                    values[name] = hp.Fixed(name, spec)
                elif "values" in spec:
                    values[name] = hp.Choice(name, **spec)
                elif isinstance(spec.get("min_value"), int) and isinstance(spec.get("max_value"), int):
                    values[name] = hp.Int(name, **spec)
                else:
                    values[name] = hp.Float(name, **spec)
            except (TypeError, ValueError) as error:
                raise ValueError(f"bad search space for {name!r}: {spec!r} ({str(error).splitlines()[0]})") from None
        return values

    def train_overrides(self, hp):
        """`(overrides, learning_rate)`: the constructor overrides (the run's own included) and learning
        rate that rebuild this trial's model, e.g. with `zoo.train --override=... --learning_rate=...`."""
        values = self.declare(hp) if isinstance(hp, keras_tuner.HyperParameters) else dict(hp)
        preset = PRESETS[self.config["preset"]]
        base = {**preset["config"], **self.config["overrides"]}
        overrides = dict(self.config["overrides"])
        for name in ("latent_dim", "memory_size", "num_importance_samples"):
            if name in values:
                overrides[name] = values[name]
        if "slot_scale" in values:
            overrides["num_slots"] = tuple(_scaled(n, values["slot_scale"]) for n in base["num_slots"])
        for key, depth, size in (("levels", "num_levels", "latent_dim"), ("scales", "num_scales", "latent_channels")):
            if key in base and (depth in values or "latent_scale" in values):
                kept = base[key][: values.get(depth, len(base[key]))]
                scale = values.get("latent_scale", 1.0)
                overrides[key] = tuple({**level, size: _scaled(level[size], scale)} for level in kept)
        return overrides, values.get("learning_rate", self.config["learning_rate"])

    def build(self, hp):
        from zoo.models.base import STEPS_PER_EXECUTION, steps_per_execution_for

        overrides, learning_rate = self.train_overrides(hp)
        # As in zoo.runs.training: Keras draws the seeds of unseeded initializers from Python's `random`.
        random.seed(self.config["seed"])
        model = build_model({"preset": self.config["preset"], "overrides": overrides})
        steps_per_execution = steps_per_execution_for(self.config["steps_per_epoch"],
                                                      self.config["steps_per_execution"] or STEPS_PER_EXECUTION)
        # The optimizer zoo.runs.training builds for a run (the recipe's epsilon, clipping, decay), so a retrained
        # trial matches.
        model.compile(optimizer=build_optimizer({**self.config, "learning_rate": learning_rate}),
                      steps_per_execution=steps_per_execution)
        return model

    def fit(self, hp, model, *args, callbacks=None, validation_data=None, **kwargs):
        callbacks = list(callbacks or [])
        if self.objective == "val_log_likelihood":
            if validation_data is None:
                raise ValueError("the val_log_likelihood objective needs validation_data, got None")
            # First, so that the callbacks after it (the tuner's checkpoint, History) see the value.
            callbacks.insert(0, ValidationLogLikelihood(validation_data, self.objective_samples, self.config["seed"]))
        callbacks.append(keras.callbacks.TerminateOnNaN())
        history = model.fit(*args, callbacks=callbacks, validation_data=validation_data, **kwargs)
        scores = history.history.get(self.objective, [])
        if not scores or not all(math.isfinite(score) for score in scores):
            # A failed trial is recorded as such and the search goes on (the Bayesian oracle cannot take NaN).
            raise keras_tuner.errors.FailedTrialError(f"{self.objective} is not finite: {scores}")
        return history


def make_tuner(hypermodel, directory, kind="random", max_trials=None, seed=0, project_name="search",
               overwrite=False, max_epochs=None):
    """A keras-tuner tuner over `hypermodel`, its project in `directory/project_name`.

    With `overwrite=False` (the default) an existing project is resumed: finished trials are kept
    and an interrupted one runs again. `kind`: `"random"`, `"bayesian"` (both need `max_trials`)
    or `"hyperband"` (its trial count follows from `max_epochs`; no `max_trials`).
    """
    if kind not in TUNERS:
        raise ValueError(f"kind must be one of {TUNERS}, got {kind!r}")
    objective = keras_tuner.Objective(hypermodel.objective, direction="max")
    common = {"hypermodel": hypermodel, "objective": objective, "seed": seed, "directory": directory,
              "project_name": project_name, "overwrite": overwrite}
    if kind == "hyperband":
        if max_trials is not None:
            raise ValueError(f"hyperband sets its own number of trials from max_epochs; got max_trials={max_trials!r}")
        return keras_tuner.Hyperband(max_epochs=max_epochs or hypermodel.config["epochs"], **common)
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be an int >= 1 for the {kind} tuner, got {max_trials!r}")
    tuner_class = keras_tuner.RandomSearch if kind == "random" else keras_tuner.BayesianOptimization
    return tuner_class(max_trials=max_trials, **common)


def finished_trials(tuner):
    """The trials that ran to the end (completed or failed), not the interrupted one."""
    return [trial for trial in tuner.oracle.trials.values() if trial.status in ("COMPLETED", "FAILED", "INVALID")]


def best_result(tuner, hypermodel):
    """The best trial so far as plain data: its id, score, hyperparameters and the zoo.train values rebuilding it.

    Returns a dict `{"trial_id", "objective", "score", "hyperparameters", "overrides", "learning_rate",
    "trials"}`; raises `ValueError` when no trial has completed.
    """
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].score is None:
        raise ValueError(f"no completed trial in {tuner.project_dir} yet")
    trial = best[0]
    # Hyperband's bookkeeping values (tuner/epochs ...) are not hyperparameters of the model.
    values = {name: value for name, value in trial.hyperparameters.values.items() if not name.startswith("tuner/")}
    overrides, learning_rate = hypermodel.train_overrides(trial.hyperparameters)
    return {
        "trial_id": trial.trial_id,
        "objective": hypermodel.objective,
        "score": trial.score,
        "hyperparameters": values,
        "overrides": overrides,
        "learning_rate": learning_rate,
        "trials": len(finished_trials(tuner)),
    }
