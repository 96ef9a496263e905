"""zoo.validation at every entry point: each case here was a defect (a silent truncation, a NaN, an
obscure TensorFlow error or an unchecked input) before the validation module."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import validation
from zoo.models.base import steps_per_execution_for
from tests.goldens import binary_images


def _weights_equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize(
    "preset", ["vae_ocr_letters_200_200_50", "memvae_ocr_letters_200_200_50", "vae_omniglot_conv", "vma_mnist_recall",
               "soft_attention_mnist_recall"],
)
def test_the_same_seed_gives_the_same_initial_weights(preset):
    first = zoo.LatentVariableModel.from_preset(preset, seed=0)
    keras.utils.set_random_seed(123)  # the global seed state must not matter
    second = zoo.LatentVariableModel.from_preset(preset, seed=0)
    assert _weights_equal(first, second)
    other = zoo.LatentVariableModel.from_preset(preset, seed=1)
    same = [w.path for w, v in zip(first.trainable_weights, other.trainable_weights)
            if w.path.endswith("kernel") and np.array_equal(w, v)]
    assert not same, f"seeds 0 and 1 gave the same initial {same}"


def test_numpy_integers_are_counts_everywhere():
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    assert model.sample(np.int64(3), seed=np.int32(1)).shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(model.sample(np.int64(3), seed=1), model.sample(3, seed=1))
    assert model.log_likelihood(binary_images(), num_samples=np.int64(4), seed=0).shape == (4,)
    assert model.sample(tf.constant(2), seed=0).shape == (2, 8, 8, 1)


@pytest.mark.parametrize("num_samples", [0, -3, 2.5, True, "4", np.array([2, 3])])
def test_bad_counts(num_samples):
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        model.sample(num_samples)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        model.log_likelihood(binary_images(), num_samples=num_samples)


@pytest.mark.parametrize("seed", ["abc", 2.5, True, [1, 2, 3], np.array([0.5, 1.0])])
def test_bad_seeds(seed):
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    with pytest.raises(ValueError, match="seed must be None, an int32 or 2 of them"):
        model.sample(2, seed=seed)
    with pytest.raises(ValueError, match="seed must be None, an int32 or 2 of them"):
        model.log_likelihood(binary_images(), num_samples=2, seed=seed)
    with pytest.raises(ValueError, match="seed must be None or an int"):
        zoo.VAE(hidden_units=(8,), latent_dim=2, seed=seed)


@pytest.mark.parametrize("seed", [2**31, -2**31 - 1, 2**40, np.int64(2**32 + 5), [2**32, 1], np.array([0, -2**31 - 1]),
                                  np.array([2**32 - 1, 0], np.uint32), np.array([2**31, 0], np.uint64)])
def test_call_seeds_beyond_int32_are_refused_not_wrapped(seed):
    # The samplers take int32 seeds: 2**32 + 5 would draw what 5 draws.
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"seed must be .*each in \[-2\*\*31, 2\*\*31\), got"):
        model.sample(2, seed=seed)
    with pytest.raises(ValueError, match=r"each in \[-2\*\*31, 2\*\*31\)"):
        model.log_likelihood(binary_images(), num_samples=2, seed=seed)
    assert model.sample(2, seed=2**31 - 1).shape == (2, 8, 8, 1)
    for seed in (np.array([5, -2**31], np.int64), np.array([5, 2**31 - 1], np.uint32)):  # in range: as int32
        np.testing.assert_array_equal(model.sample(2, seed=seed), model.sample(2, seed=seed.astype(np.int32)))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: zoo.VAE(latent_dim=2.7), "latent_dim must be an int >= 1, got 2.7"),
        (lambda: zoo.VAE(hidden_units=(8.5,)), "hidden_units must be a non-empty sequence of ints"),
        (lambda: zoo.VAE(num_importance_samples=2.0), "num_importance_samples must be an int >= 1"),
        (lambda: zoo.VAE(input_shape=(28, 28.5, 1)), "input_shape must be a non-empty sequence of ints"),
        (lambda: zoo.VMA(memory_size=2.5), "memory_size must be an int >= 1, got 2.5"),
        (lambda: zoo.VMA(latent_dim=2.7), "latent_dim must be an int >= 1, got 2.7"),
        (lambda: zoo.VMA(matching_dim=0), "matching_dim must be an int >= 1"),
        (lambda: zoo.ConvVAE(latent_dim="4"), "latent_dim must be an int >= 1"),
        (lambda: zoo.SoftAttentionVAE(memory_size=True), "memory_size must be an int >= 1"),
        (lambda: zoo.layers.GaussianLatent(2.7), "latent_dim must be an int >= 1"),
        (lambda: zoo.layers.ConvStack(filters=(4.5,), strides=(1,)), "filters must be"),
        (lambda: zoo.layers.MemoryBlock(num_slots=2.5), "num_slots must be an int >= 1"),
        # A string is truthy: "False" would have meant True.
        (lambda: zoo.VAE(batch_norm="False"), "batch_norm must be a bool, got 'False'"),
        (lambda: zoo.VMA(shared_embedding="False"), "shared_embedding must be a bool"),
        (lambda: zoo.NVAE(input_shape=(8, 8, 1), kl_balancing="False"), "kl_balancing must be a bool"),
        (lambda: zoo.NVAE(input_shape=(8, 8, 1), squeeze_excitation=0), "squeeze_excitation must be a bool, got 0"),
        (lambda: zoo.MemVAE(hidden_units=(8, 8), num_slots=4), r"num_slots must be 2 non-negative numbers .*got 4"),
        (lambda: zoo.LatentVariableModel.from_preset(None), "name must be a preset name or a pretrained model's"),
        (lambda: zoo.data.load("binarized_mnist", split=None), "split must be a split name"),
    ],
)
def test_constructor_values_are_not_truncated(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("model_cls", [zoo.VAE, zoo.ConvVAE])
def test_decode_rejects_non_finite_latents(model_cls):
    kwargs = dict(filters=(4,), strides=(2,)) if model_cls is zoo.ConvVAE else dict(hidden_units=(8,))
    model = model_cls(input_shape=(8, 8, 1), latent_dim=2, seed=0, **kwargs)
    for value in (np.nan, np.inf):
        with pytest.raises(ValueError, match="z contains 2 NaN or Inf values"):
            model.decode(np.array([[0.0, 1.0], [value, value]], np.float32))
    with pytest.raises(ValueError, match=r"z must be float latents of shape \[N, 2\]"):
        model.decode(np.zeros((2, 3), np.float32))


def test_a_numpy_spectral_regularization_is_a_number():
    model = zoo.NVAE(input_shape=(8, 8, 1), spectral_regularization=np.float32(0.25))
    assert model.spectral_regularization == 0.25 and type(model.spectral_regularization) is float


@pytest.mark.parametrize("model_fn, options, message", [
    (lambda: zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0), {"temprature": 0.5},
     "VAE.sample takes num_samples, seed, temperature; got temprature"),
    # A VAE has no memory to switch off.
    (lambda: zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0), {"memory_enabled": (False,)},
     "VAE.sample takes num_samples, seed, temperature; got memory_enabled"),
    (lambda: zoo.MemVAE(input_shape=(8, 8, 1), hidden_units=(8, 8), num_slots=(3, 3), latent_dim=2, seed=0),
     {"temperature": 1.0, "memory_enabled": (True, False), "training": True},
     "MemVAE.sample takes num_samples, seed, temperature, memory_enabled; got training"),
    (lambda: zoo.NVAE(input_shape=(8, 8, 1), scales=[{"groups": 1, "latent_channels": 2}], channels=4, seed=0),
     {"training": True}, "NVAE.sample takes num_samples, seed, temperature; got training"),
])
def test_sample_refuses_options_the_model_does_not_take(model_fn, options, message):
    # NVAE's sampler once took training=True and moved its batch-norm statistics.
    model = model_fn()
    with pytest.raises(ValueError, match=f"^{message}$"):
        model.sample(2, seed=0, **options)


def test_mem_vae_memory_switches_and_slot_layers_are_checked():
    model = zoo.MemVAE(input_shape=(8, 8, 1), hidden_units=(8, 8), num_slots=(3, 3), latent_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"memory_enabled must be 2 bools .*got True"):
        model.decode(np.zeros((1, 2), np.float32), memory_enabled=True)
    with pytest.raises(ValueError, match="layer must be an int >= 0, got '0'"):
        model.slot_images(layer="0")
    assert model.slot_images(layer=0).shape == (3, 8, 8, 1)


@pytest.mark.parametrize("cls", [zoo.VMA, zoo.SoftAttentionVAE])
def test_an_empty_memory_is_refused(cls):
    # VMA failed deep inside its matching network; the soft attention read all zeros.
    model = cls(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    x, empty = binary_images((2, 8, 8, 1)), np.zeros((0, 8, 8, 1), np.float32)
    for call in (lambda: model.log_likelihood(x, num_samples=2, seed=0, memory=empty),
                 lambda: model.reconstruct(x, memory=empty), lambda: model.sample(2, seed=0, memory=empty)):
        with pytest.raises(ValueError, match=r"^memory must hold at least one entry, got shape \[0, 8, 8, 1\]$"):
            call()


def test_vma_log_weight_terms_checks_its_count_and_seed():
    model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, matching_dim=4, seed=0)
    x, memory = binary_images((2, 8, 8, 1)), binary_images((3, 8, 8, 1))
    with pytest.raises(ValueError, match="num_samples must be an int >= 1, got 0"):
        model.log_weight_terms(x, 0, [1, 2], memory=memory)
    with pytest.raises(ValueError, match="seed must be None, an int32 or 2 of them"):
        model.log_weight_terms(x, 2, [1, 2, 3], memory=memory)


def test_memory_models_validate_latents_and_addresses():
    model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, matching_dim=4, seed=0)
    memory = binary_images((3, 8, 8, 1))
    with pytest.raises(ValueError, match="z contains 1 NaN"):
        model.decode(np.array([[np.nan, 0.0]], np.float32), address=[0], memory=memory)
    with pytest.raises(ValueError, match="address must be < the memory size, got 3"):
        model.decode(np.zeros((1, 2), np.float32), address=[3], memory=memory)
    with pytest.raises(ValueError, match="memory contains 192 NaN"):
        model.sample(2, memory=np.full((3, 8, 8, 1), np.nan, np.float32))
    with pytest.raises(ValueError, match="pass the memory once"):
        model.reconstruct((memory, memory), memory=memory)


def test_fit_refuses_epochs_that_are_not_whole_compiled_calls():
    # Keras runs whole calls: 30 steps an epoch at 25 a call would train 50 on endless data.
    assert [steps_per_execution_for(steps) for steps in (250, 1562, 30, 26, 7, 31)] == [25, 22, 15, 13, 7, 1]
    assert steps_per_execution_for(1562, limit=10) == 2
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    model.compile()
    endless = tf.data.Dataset.from_tensors(binary_images((4, 8, 8, 1))).repeat()
    with pytest.raises(ValueError, match=r"^steps_per_epoch \(30\) must be a multiple of the compiled "
                                         r"steps_per_execution \(25\): Keras runs whole calls, so each epoch would "
                                         r"take 50 steps; compile with steps_per_execution=15$"):
        model.fit(endless, epochs=1, steps_per_epoch=30, verbose=0)
    for steps in (0, -5, 2.5):  # -5 failed inside the message above, 2.5 in range(), 0 went on to Keras
        with pytest.raises(ValueError, match=rf"^steps_per_epoch must be an int >= 1, got {steps}$"):
            model.fit(endless, epochs=1, steps_per_epoch=steps, verbose=0)


def test_fit_checks_generators_batch_by_batch():
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    model.compile(steps_per_execution=2)  # an epoch is two steps, one call
    good = binary_images((4, 8, 8, 1))

    def batches(bad_value):
        yield (good,)  # Keras takes a generator's batches as (inputs,) or (inputs, targets)
        yield (np.where(good > 0, bad_value, 0.0).astype(np.float32),)

    with pytest.raises(ValueError, match=r"expects x binary, with values in \{0, 1\}"):
        model.fit(batches(0.5), epochs=1, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.fit(batches(np.nan), epochs=1, steps_per_epoch=2, verbose=0)
    history = model.fit(((b,) for b in [good, good]), epochs=1, steps_per_epoch=2, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_fit_refuses_dict_datasets_for_models_without_a_memory():
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    model.compile()
    data = tf.data.Dataset.from_tensors({"x": binary_images()})
    with pytest.raises(ValueError, match=r"VAE trains on batches of tensors \[batch, 8, 8, 1\].*got a dataset of"):
        model.fit(data, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"got a dict with keys \['x'\]"):
        model.fit({"x": binary_images()}, epochs=1, verbose=0)


def test_fit_checks_dict_datasets_of_memory_models():
    model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, matching_dim=4, seed=0)
    model.compile(steps_per_execution=1)  # the last fit's epoch is one step
    x = binary_images()
    with pytest.raises(ValueError, match="memory contains .*NaN"):
        model.fit(tf.data.Dataset.from_tensors({"x": x, "memory": np.full_like(x, np.nan)}), verbose=0)
    with pytest.raises(ValueError, match=r"memory must have shape \[memory entries, 8, 8, 1\], got shape \[4, 8, 8\]"):
        model.fit(tf.data.Dataset.from_tensors({"x": x, "memory": x[..., 0]}), verbose=0)
    with pytest.raises(ValueError, match="memory contains .*NaN"):
        model.fit(iter([({"x": x, "memory": np.full_like(x, np.nan)},)]), steps_per_epoch=1, verbose=0)


def test_fit_refuses_unknown_data_types():
    model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(8,), latent_dim=2, seed=0)
    model.compile()
    with pytest.raises(ValueError, match="fit/evaluate take arrays or tensors, a tf.data.Dataset or a generator"):
        model.fit(42, verbose=0)


def test_activation_names_keras_activations_and_lasagnes_leaky_rectify():
    x = np.array([-2.0, -0.5, 0.0, 3.0], np.float32)
    # Lasagne's leaky_rectify (the Ladder VAE authors'): slope 0.01 below zero, where Keras's leaky_relu has 0.2.
    np.testing.assert_allclose(validation.activation("leaky_relu_0.01")(x), [-0.02, -0.005, 0.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(validation.activation("leaky_relu")(x), [-0.4, -0.1, 0.0, 3.0], rtol=1e-6)
    assert zoo.LadderVAE(input_shape=(4, 4, 1), levels=[{"hidden_units": (2,), "latent_dim": 1}]).activation == \
        "leaky_relu_0.01"
    with pytest.raises(ValueError, match=r"activation must be a Keras activation name or one of \['leaky_relu_0.01'\], "
                                         r"got 'leaky_rectify'"):
        validation.activation("leaky_rectify")
