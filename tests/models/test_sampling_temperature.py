"""`sample(temperature=...)` of the models outside the level stacks (tests/models/test_level_stack.py has theirs):
the Gaussian latent's prior standard deviation times the temperature, the rest of the draw unchanged."""
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import distributions


def binary(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) < 0.5).astype(np.float32)


def conv_vae():
    return zoo.ConvVAE(input_shape=(8, 8, 1), filters=(4, 8), strides=(2, 2), latent_dim=3, seed=0), {}


def soft_attention_vae():
    model = zoo.SoftAttentionVAE(input_shape=(8, 8, 1), hidden_units=(16, 8), latent_dim=3, matching_dim=4, seed=0)
    return model, {"memory": tf.constant(binary((5, 8, 8, 1)))}


@pytest.mark.parametrize("build", [conv_vae, soft_attention_vae])
def test_temperature_scales_the_standard_normal_draw(build):
    model, memory = build()
    z = model.prior.sample(6, seed=distributions.seed_pair(4)).numpy()  # the draw `sample(6, seed=4)` makes
    for t in (0.0, 0.3, 1.0, 2.5):
        expected = model.decode(np.float32(t) * z, **memory)["mean"]
        np.testing.assert_allclose(model.sample(6, seed=4, temperature=t, **memory), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.sample(6, seed=4, **memory), model.sample(6, seed=4, temperature=1.0, **memory))
    cold = model.sample(6, seed=9, temperature=0.0, **memory).numpy()
    np.testing.assert_allclose(cold, np.repeat(cold[:1], 6, axis=0), rtol=1e-6)  # z = 0 for every draw
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0, got -1.0"):
        model.sample(2, seed=0, temperature=-1.0, **memory)


def test_vma_temperature_scales_the_conditional_prior_around_its_mean():
    model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, matching_dim=4, seed=0)
    entry = tf.constant(binary((1, 8, 8, 1), 1))  # one entry: every draw addresses it
    mean = model.conditional_prior.parameters(model.read_entries(entry, tf.zeros([1], tf.int32))["summary"])["mean"]
    at_mean = model.decode(mean, address=[0], memory=entry)["mean"][0].numpy()
    cold = model.sample(5, seed=3, temperature=0.0, memory=entry).numpy()
    np.testing.assert_allclose(cold, np.repeat(at_mean[None], 5, axis=0), rtol=1e-5, atol=1e-6)
    spread = lambda t: model.sample(400, seed=7, temperature=t, memory=entry).numpy().std(axis=0).mean()  # noqa: E731
    assert spread(0.0) < 1e-5 < spread(0.5) < spread(1.0) < spread(2.0)  # rounding only at 0
    np.testing.assert_array_equal(model.sample(4, seed=2, memory=entry), model.sample(4, seed=2, memory=entry, temperature=1.0))
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0, got 'warm'"):
        model.sample(2, seed=0, temperature="warm", memory=entry)
