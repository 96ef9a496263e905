"""zoo.optimizers: every preset's recipe builds the optimizer and schedule it names; bad recipes fail clearly."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.goldens import binary_images
import zoo
from zoo import optimizers
from zoo.presets import PRESETS
from zoo.runs import config as run_config, errors as run_errors


STEPS_PER_EPOCH = 10


def expected_rates(recipe, epochs):
    """(step, learning rate) at step 0, at the end of any warm-up and at the last step, from the recipe alone."""
    lr = recipe.get("learning_rate", 1e-3)
    last = epochs * STEPS_PER_EPOCH - 1  # the run's last update (Keras counts iterations from 0)
    if "warmup_epochs" in recipe:
        return [(0, 0.0), (recipe["warmup_epochs"] * STEPS_PER_EPOCH, lr), (last, recipe["learning_rate_min"])]
    if "decay_start_epoch" in recipe:
        decayed = max(0, epochs - recipe["decay_start_epoch"])  # epochs after decay_start_epoch, the last included
        return [(0, lr), (last, lr * recipe["decay_per_epoch"] ** decayed)]
    return [(0, lr), (last, lr)]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_the_optimizer_and_schedule_its_recipe_names(preset):
    recipe = PRESETS[preset].get("recipe", {})
    epochs = recipe.get("epochs", 20)
    config = {"recipe": {k: v for k, v in recipe.items() if k in optimizers.APPLIED_KEYS},
              "learning_rate": recipe.get("learning_rate", 1e-3), "skip_gradient_norm": None,
              "steps_per_epoch": STEPS_PER_EPOCH, "epochs": epochs}
    optimizer = run_config.build_optimizer(config)
    if recipe.get("optimizer") == "adamax":
        assert type(optimizer) is optimizers.L2Adamax
        assert optimizer.weight_decay_l2 == recipe["weight_decay"] and optimizer.epsilon == recipe["epsilon"]
    elif {"max_global_norm", "max_value"} & set(recipe):
        assert type(optimizer) is optimizers.ClippedAdam
    else:
        assert type(optimizer) is keras.optimizers.Adam
    assert optimizer.epsilon == recipe.get("epsilon", 1e-7)
    for step, rate in expected_rates(recipe, epochs):
        optimizer.iterations.assign(step)
        np.testing.assert_allclose(float(optimizer.learning_rate), rate, rtol=1e-4, atol=1e-12, err_msg=f"step {step}")


def test_nvae_recipe_is_the_authors_warm_up_then_cosine():
    # NVlabs/NVAE train.py: lr * t / warmup_iters, then cosine from lr to learning_rate_min.
    recipe = PRESETS["nvae_cifar10"]["recipe"]
    assert (recipe["optimizer"], recipe["learning_rate"], recipe["learning_rate_min"], recipe["warmup_epochs"],
            recipe["weight_decay"], recipe["epsilon"]) == ("adamax", 1e-2, 1e-4, 5, 3e-4, 1e-3)
    schedule = optimizers.learning_rate_schedule(recipe, 1e-2, STEPS_PER_EPOCH, epochs=25)
    warmup, total = 5 * STEPS_PER_EPOCH, 25 * STEPS_PER_EPOCH - 1  # the cosine ends on the last update
    for step in (1, 25, 49):
        np.testing.assert_allclose(float(schedule(step)), 1e-2 * step / warmup, rtol=1e-5)
    middle = (warmup + total) / 2  # half way down the cosine: (lr + lr_min) / 2
    np.testing.assert_allclose(float(schedule(middle)), (1e-2 + 1e-4) / 2, rtol=1e-5)
    quarter = warmup + (total - warmup) / 4
    np.testing.assert_allclose(float(schedule(quarter)), 1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi / 4)) / 2,
                               rtol=1e-5)


def test_l2_adamax_adds_the_penalty_to_the_gradient_as_torch_adamax():
    variable = tf.Variable([1.0, -2.0, 0.5])
    optimizer = optimizers.L2Adamax(0.1, weight_decay_l2=0.3, epsilon=1e-3)
    gradients = [np.array([0.2, 0.0, -1.0]), np.array([-0.4, 0.1, 0.3])]
    # torch.optim.Adamax: g += wd * w; m = b1 m + (1 - b1) g; u = max(b2 u, |g| + eps); w -= lr / (1 - b1^t) m / u
    w, m, u = variable.numpy().astype(np.float64), np.zeros(3), np.zeros(3)
    for t, g in enumerate(gradients, start=1):
        optimizer.apply([tf.constant(g, tf.float32)], [variable])
        g = g + 0.3 * w
        m = 0.9 * m + 0.1 * g
        u = np.maximum(0.999 * u, np.abs(g) + 1e-3)
        w = w - 0.1 / (1 - 0.9 ** t) * m / u
    np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5)


def test_l2_adamax_round_trips_its_config():
    optimizer = optimizers.L2Adamax(1e-2, weight_decay_l2=3e-4, epsilon=1e-3)
    clone = optimizers.L2Adamax.from_config(optimizer.get_config())
    assert (clone.weight_decay_l2, clone.epsilon) == (3e-4, 1e-3)


@pytest.mark.parametrize("recipe, message", [
    ({"optimiser": "adam"}, "unknown recipe key(s) 'optimiser'; known: "),
    ({"optimizer": "sgd"}, "unknown recipe optimizer 'sgd'; known: adam, adamax"),
    ({"optimizer": "adamax", "max_value": 1.0}, "gradient clipping (max_global_norm, max_value) is built for adam only"),
    ({"weight_decay": 3e-4}, "weight_decay (coupled L2) is built for adamax only, not 'adam'"),
    ({"warmup_epochs": 5}, "recipe keys 'warmup_epochs' and 'learning_rate_min' go together"),
    ({"decay_start_epoch": 5, "decay_per_epoch": 0.9, "warmup_epochs": 1, "learning_rate_min": 0.0},
     "one schedule: per-epoch decay or warm-up + cosine, not both"),
])
def test_a_recipe_the_zoo_does_not_build_fails_with_a_clear_error(recipe, message):
    with pytest.raises(ValueError) as error:
        optimizers.check_recipe("p", recipe)
    assert str(error.value).startswith("preset 'p': ") and message in str(error.value), str(error.value)


def test_training_a_preset_with_an_unknown_recipe_key_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(PRESETS, "vae_mnist_500_500_100",
                        {**PRESETS["vae_mnist_500_500_100"], "recipe": {"learning_rate": 1e-3, "lr_min": 0.0}})
    with pytest.raises(run_errors.UsageError, match="unknown recipe key\\(s\\) 'lr_min'"):
        run_config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", epochs=1)


def test_mem_dgm_recipe_is_clipped_adam_with_per_epoch_decay():
    recipe = PRESETS["memvae_mnist_500_500_100"]["recipe"]
    config = {"recipe": {k: v for k, v in recipe.items() if k in optimizers.APPLIED_KEYS}, "learning_rate": 1e-3,
              "skip_gradient_norm": None, "steps_per_epoch": STEPS_PER_EPOCH, "epochs": recipe["epochs"]}
    optimizer = run_config.build_optimizer(config)
    assert (optimizer.epsilon, optimizer.max_global_norm, optimizer.max_value) == (1e-4, 5.0, 1.0)
    # Epochs 1..1000 (1-based) at 1e-3, then x 0.998 after each further epoch, as thu-ml/MEM_DGM anneals.
    for epoch, rate in ((0, 1e-3), (999, 1e-3), (1000, 1e-3 * 0.998), (1002, 1e-3 * 0.998 ** 3)):
        optimizer.iterations.assign(epoch * STEPS_PER_EPOCH + 3)
        np.testing.assert_allclose(float(optimizer.learning_rate), rate, rtol=1e-5)


def test_clipped_adam_rescales_to_the_total_norm_then_clips_each_element():
    import tensorflow as tf

    from zoo import optimizers

    variable = tf.Variable([0.0, 0.0, 0.0])
    optimizer = optimizers.ClippedAdam(1e-3, epsilon=1e-4, max_global_norm=5.0, max_value=1.0)
    gradient = np.array([30.0, 40.0, 0.5])
    optimizer.apply([tf.constant(gradient, tf.float32)], [variable])
    clipped = np.minimum(gradient * 5.0 / np.linalg.norm(gradient), 1.0)  # [2.9999, 3.9999, 0.05] -> [1, 1, 0.05]
    # Adam's second moment after one step is (1 - beta_2) g^2 of the gradient it was given.
    (velocity,) = [v for v in optimizer.variables if "velocity" in v.path]
    np.testing.assert_allclose(velocity.numpy(), 0.001 * clipped ** 2, rtol=1e-4)


def test_saved_model_restores_the_recipe_compile_config(tmp_path):
    import keras

    import zoo
    from zoo import optimizers

    model = zoo.VAE(input_shape=(4, 4, 1), hidden_units=(8,), latent_dim=2)
    schedule = optimizers.EpochDecay(1e-3, steps_per_epoch=7, decay_start_epoch=2, decay_per_epoch=0.5)
    model.compile(optimizer=optimizers.ClippedAdam(schedule, epsilon=1e-4, max_global_norm=5.0, max_value=1.0))
    model.fit(np.zeros((8, 4, 4, 1), np.float32), epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, optimizers.ClippedAdam)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.get_config()["learning_rate"]["config"] == {
        "learning_rate": 1e-3, "steps_per_epoch": 7, "decay_start_epoch": 2, "decay_per_epoch": 0.5}


def test_gradient_skipping_never_stalls_training():
    # Every gradient norm exceeds the threshold: 3 skips, then one update rescaled to the threshold, and so on.
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, batch_norm=False, seed=0)
    optimizer = optimizers.ClippedAdam(1e-2, skip_threshold=1e-6, max_consecutive_skips=3)
    model.compile(optimizer=optimizer, steps_per_execution=5)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(binary_images((40, 8, 8, 1)), batch_size=2, epochs=1, verbose=0)  # 20 steps
    assert int(optimizer.iterations.numpy()) == 5 and int(optimizer.skipped_updates.numpy()) == 15
    assert all(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    # Below the threshold nothing is skipped, and an applied update equals plain Adam's.
    plain, guarded = keras_adam_and_guarded(threshold=1e6)
    for optimizer in (plain, guarded):
        optimizer[0].apply([tf.constant([0.5, -2.0])], [optimizer[1]])
    np.testing.assert_allclose(plain[1].numpy(), guarded[1].numpy(), rtol=1e-7)
    assert int(guarded[0].skipped_updates.numpy()) == 0
    # The forced update is Adam's on the gradient rescaled to the threshold (norm 50 -> 1): the moments it leaves
    # show in the next, ordinary update.
    plain, guarded = keras_adam_and_guarded(threshold=1.0, max_consecutive_skips=1)
    for gradient in ([30.0, 40.0], [30.0, 40.0], [0.1, 0.1]):  # skipped, forced, applied
        guarded[0].apply([tf.constant(gradient)], [guarded[1]])
    for gradient in ([0.6, 0.8], [0.1, 0.1]):
        plain[0].apply([tf.constant(gradient)], [plain[1]])
    assert int(guarded[0].skipped_updates.numpy()) == 1 and int(guarded[0].iterations.numpy()) == 2
    np.testing.assert_allclose(guarded[1].numpy(), plain[1].numpy(), rtol=1e-6)


def keras_adam_and_guarded(threshold, **kwargs):
    import keras

    make = lambda: keras.Variable([1.0, 1.0])  # noqa: E731
    return (keras.optimizers.Adam(0.1), make()), (optimizers.ClippedAdam(0.1, skip_threshold=threshold, **kwargs),
                                                  make())


def test_gradient_skipping_skips_a_non_finite_update_and_survives_config():
    optimizer = optimizers.ClippedAdam(0.1, skip_threshold=10.0, max_consecutive_skips=2)
    variable = tf.Variable([1.0, 1.0])
    optimizer.apply([tf.constant([np.nan, 1.0])], [variable])
    np.testing.assert_array_equal(variable.numpy(), [1.0, 1.0])
    assert int(optimizer.skipped_updates.numpy()) == 1 and int(optimizer.iterations.numpy()) == 0
    clone = optimizers.ClippedAdam.from_config(optimizer.get_config())
    assert (clone.skip_threshold, clone.max_consecutive_skips) == (10.0, 2)
