"""zoo.runs.config: a run's choices checked and resolved, and which directories may take a run."""

import pytest

from tests.conftest import needs_mnist
from zoo.runs import (
    config as run_config, errors as run_errors, evaluation as run_evaluation, files as run_files, state as run_state,
    training as run_training,
)


@needs_mnist
@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"preset": "nope"}, "unknown preset 'nope'"),
        ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
        ({"epochs": 0}, "--epochs must be an int >= 1"),
        ({"overrides": {"no_such_arg": 1}}, "--override no_such_arg=1 is rejected by preset"),
        ({"overrides": {"latent_dim": "big", "batch_norm": False}},
         "--override latent_dim='big' is rejected by preset 'vae_mnist_500_500_100': "),
        ({"learning_rate": -1.0}, "--learning_rate must be a finite number > 0"),
        ({"learning_rate": float("inf")}, "--learning_rate must be a finite number > 0"),
        ({"steps_per_execution": 0}, "--steps_per_execution must be an int >= 1"),
        ({"train_split": "train[:3]", "batch_size": 5}, "holds fewer examples than one batch of 5"),
        ({"train_split": "no_such_split"}, "dataset 'binarized_mnist': .*no_such_split"),
        ({"validation_split": "validation[:0]x"}, "dataset 'binarized_mnist'"),
    ],
)
def test_bad_train_config_raises_usage_error(kwargs, reason):
    args = {"preset": "vae_mnist_500_500_100", "dataset": "binarized_mnist", "epochs": 1, **kwargs}
    with pytest.raises(run_errors.UsageError, match=reason):
        run_config.resolve_config(**args)


def test_every_memory_preset_says_whether_its_memory_comes_with_each_batch():
    # The episode flags are checked from the preset's config, before a model (or TensorFlow) is loaded: a preset of a
    # class with a memory names memory_size, so that the check cannot differ from the model it builds.
    import inspect

    import zoo
    from zoo.presets import PRESETS

    for name, preset in PRESETS.items():
        if "memory_size" in inspect.signature(getattr(zoo, preset["class"]).__init__).parameters:
            assert "memory_size" in preset["config"], name
            model = zoo.LatentVariableModel.from_preset(name)
            assert run_config.memory_per_batch(name) == (model.memory_size is None), name


@pytest.mark.parametrize("kwargs, reason", [
    ({"preset": "vma_omniglot_conv", "strategy": "mirrored"}, "--strategy=mirrored: preset 'vma_omniglot_conv' trains on"),
    ({"preset": "soft_attention_mnist_recall", "episode_classes": 5}, "--episode_classes applies to omniglot"),
    ({"preset": "soft_attention_mnist_recall", "episode_targets": 9, "episode_memory": 8},
     r"--episode_targets \(9\) must be <= --episode_memory \(8\)"),
    ({"preset": "vma_mnist_recall", "dataset": "frey_faces", "data_path": "/",
      "overrides": {"input_shape": (28, 20, 1)}}, "dataset 'frey_faces' has no episodes"),
    ({"episode_memory": 4}, "--episode_memory: only for presets whose memory comes with each batch"),
])
def test_episode_flags_are_checked_before_tensorflow_loads(kwargs, reason):
    args = {"preset": "vae_mnist_500_500_100", "dataset": "binarized_mnist", "epochs": 1, **kwargs}
    with pytest.raises(run_errors.UsageError, match=reason):
        run_config.check_options(**args)


def test_the_run_identity_ignores_the_models_automatic_name(tmp_path):
    # A process that built other models first names its model vae_3, not vae: the same run all the same.
    def config(name, latent_dim):
        return {"preset": "p", "model": {"class_name": "VAE", "config": {"name": name, "latent_dim": latent_dim}}}

    run_files.write_json(str(tmp_path / run_files.CONFIG_FILE), config("vae", 2))
    run_config.check_run_dir(str(tmp_path), config("vae_3", 2))
    with pytest.raises(run_errors.UsageError, match="holds a run with different model"):
        run_config.check_run_dir(str(tmp_path), config("vae", 3))


def test_a_run_resumes_with_its_own_validation_split_only(tmp_path):
    # Its best epoch so far (best.weights.h5) was chosen on that split's bound: another split's is not comparable.
    run_files.write_json(str(tmp_path / run_files.CONFIG_FILE), {"preset": "p", "validation_split": "validation"})
    run_config.check_run_dir(str(tmp_path), {"preset": "p", "validation_split": "validation"})
    with pytest.raises(run_errors.UsageError, match="holds a run with different validation_split"):
        run_config.check_run_dir(str(tmp_path), {"preset": "p", "validation_split": "validation[:1000]"})


def test_a_warmup_cosine_run_resumes_with_its_own_epochs_only(tmp_path):
    # Its learning rate spans the run's epochs; a constant or per-epoch rate does not, so those runs may be extended.
    def config(epochs, recipe, steps_per_epoch=500):
        return {"preset": "p", "epochs": epochs, "recipe": recipe, "steps_per_epoch": steps_per_epoch}

    cosine = {"optimizer": "adamax", "learning_rate_min": 1e-4, "warmup_epochs": 5}
    run_files.write_json(str(tmp_path / run_files.CONFIG_FILE), config(400, cosine))
    run_config.check_run_dir(str(tmp_path), config(400, cosine))
    with pytest.raises(run_errors.UsageError, match=r"different epochs \(the run's 400, asked 500: its warm-up \+ "
                                                    r"cosine learning rate spans them\); resume it with the same"):
        run_config.check_run_dir(str(tmp_path), config(500, cosine))
    with pytest.raises(run_errors.UsageError, match=r"different steps_per_epoch \(the run's 500, asked 250"):
        run_config.check_run_dir(str(tmp_path), config(400, cosine, steps_per_epoch=250))
    run_files.write_json(str(tmp_path / run_files.CONFIG_FILE), config(25, {"learning_rate": 1e-3}))
    run_config.check_run_dir(str(tmp_path), config(50, {"learning_rate": 1e-3}))


@needs_mnist
def test_foreign_and_mismatched_model_dir(tiny_runs, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    config = run_config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", 1)
    with pytest.raises(run_errors.UsageError, match="not a zoo.train run"):
        run_training.train(config, str(foreign))
    with pytest.raises(run_errors.UsageError, match="holds a run with different .*model"):
        run_training.train(config, tiny_runs["reference"])
    with pytest.raises(run_errors.UsageError, match="holds no config.json"):
        run_state.load_trained_model(str(foreign))
    empty = tmp_path / "empty"
    empty.mkdir()

    with pytest.raises(run_errors.UsageError, match="holds no config.json"):
        run_evaluation.evaluate(str(empty))
    with pytest.raises(run_errors.UsageError, match="unknown dataset"):
        run_evaluation.evaluate(tiny_runs["reference"], dataset="cifar")
    with pytest.raises(run_errors.UsageError, match="no_such_split"):
        run_evaluation.evaluate(tiny_runs["reference"], split="no_such_split")
