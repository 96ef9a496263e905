"""The 8-bit discretized logistic mixture: normalisation, hand-computed values, gradients, validation, head, NVAE."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special

import zoo
from zoo import distributions, validation

GRID = (np.arange(256) / 255).astype(np.float32)  # every 8-bit value of one pixel


def mixture_params(num_channels, num_mixtures, seed):
    """Random parameters with extreme components: far means, the -7 floor and below, very wide scales."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_channels, num_mixtures)) * 4
    means = rng.uniform(-1.5, 1.5, (num_channels, num_mixtures))
    log_scales = rng.uniform(-9.0, 4.0, (num_channels, num_mixtures))
    means[0], log_scales[0] = 8.0, 0.0  # far above the data range
    means[1], log_scales[1] = -8.0, -7.0  # far below, narrowest
    means[2], log_scales[2] = 0.0, -30.0  # below the clamp: a spike between the bins 127 and 128
    means[3], log_scales[3] = 0.3, 12.0  # far wider than [-1, 1]
    means[4] = 2 * 17 / 255 - 1  # centred on a bin
    return {k: v.astype(np.float32) for k, v in dict(logits=logits, means=means, log_scales=log_scales).items()}


def grid_log_prob(params):
    """log P(k / 255) for k = 0..255 of every channel, `[256, C]`, through `log_likelihood` (event_ndims 0)."""
    tiled = {k: np.broadcast_to(v, (256, *v.shape)) for k, v in params.items()}
    x = np.repeat(GRID[:, None], params["means"].shape[0], axis=1)
    return distributions.log_likelihood("logistic_mixture", tiled, x, 0).numpy()


@pytest.mark.parametrize("seed, num_mixtures", [(0, 1), (1, 3), (2, 10)])
def test_the_256_probabilities_of_a_pixel_sum_to_one(seed, num_mixtures):
    params = mixture_params(8, num_mixtures, seed)
    log_prob = grid_log_prob(params)
    assert np.all(np.isfinite(log_prob)) and np.all(log_prob <= 1e-6)
    np.testing.assert_allclose(np.exp(log_prob).sum(axis=0), np.ones(8), rtol=2e-5)


def _one_component(x, mean=0.0, log_scale=0.0):
    params = {k: np.full((1, 1), v, np.float32) for k, v in dict(logits=0.0, means=mean, log_scales=log_scale).items()}
    return float(distributions.log_likelihood("logistic_mixture", params, np.full((1,), x, np.float32), 1))


def test_one_component_by_hand():
    sigmoid = special.expit
    x = 128 / 255
    x_scaled = 2 * x - 1
    expected = np.log(sigmoid(x_scaled + 1 / 255) - sigmoid(x_scaled - 1 / 255))
    np.testing.assert_allclose(_one_component(x), expected, rtol=1e-6)
    # The edges take the one-sided CDFs: P(0) = sigma(-1 + 1/255), P(255) = 1 - sigma(1 - 1/255).
    np.testing.assert_allclose(_one_component(0.0), np.log(sigmoid(-1 + 1 / 255)), rtol=1e-6)
    np.testing.assert_allclose(_one_component(1.0), np.log(1 - sigmoid(1 - 1 / 255)), rtol=1e-6)
    # 254 is an inner bin (PixelCNN++'s x > 0.999 test on the [-1, 1] scale keeps it one).
    x254 = 2 * 254 / 255 - 1
    np.testing.assert_allclose(
        _one_component(254 / 255), np.log(sigmoid(x254 + 1 / 255) - sigmoid(x254 - 1 / 255)), rtol=1e-6
    )
    # A shifted, narrow component, in float64 by hand.
    mean, log_scale, k = 0.1, -3.0, 140
    edge = (2 * k - 255 + np.array([1, -1])) / 255
    hand = np.log(np.subtract(*sigmoid((edge - mean) / np.exp(log_scale))))
    np.testing.assert_allclose(_one_component(k / 255, mean, log_scale), hand, rtol=1e-5)
    # log_scale is clamped below at -7: -20 is -7.
    assert _one_component(k / 255, mean, -20.0) == _one_component(k / 255, mean, -7.0)


def test_the_mixture_is_the_weighted_sum_of_its_components():
    params = mixture_params(6, 4, seed=3)
    log_prob = grid_log_prob(params)  # [256, 6]
    components = [grid_log_prob({k: v[:, m:m + 1] for k, v in params.items()}) for m in range(4)]
    log_weights = special.log_softmax(params["logits"], axis=-1)  # [6, 4]
    expected = special.logsumexp(np.stack(components, -1) + log_weights, axis=-1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)


def test_gradients_are_finite_at_extreme_parameters():
    params = {k: tf.Variable(v) for k, v in mixture_params(8, 3, seed=4).items()}
    x = np.stack([GRID[[0, 1, 127, 128, 200, 254, 255, 64]]] * 2)  # [2, 8]: the edges, the bins by the spike
    with tf.GradientTape() as tape:
        tiled = {k: tf.broadcast_to(v, (2, 8, 3)) for k, v in params.items()}
        log_prob = distributions.log_likelihood("logistic_mixture", tiled, x, 1)
    grads = tape.gradient(log_prob, list(params.values()))
    assert np.all(np.isfinite(log_prob.numpy()))
    for name, grad in zip(params, grads):
        assert np.all(np.isfinite(grad.numpy())), name
    assert np.any(grads[1].numpy() != 0) and np.any(grads[2].numpy() != 0)


def test_mean_is_the_weighted_clipped_logistic_mean():
    params = mixture_params(5, 3, seed=5)
    mean = distributions.discretized_logistic_mixture_mean(params["logits"], params["means"]).numpy()
    weights = special.softmax(params["logits"].astype(np.float64), axis=-1)
    expected = ((weights * np.clip(params["means"], -1, 1)).sum(-1) + 1) / 2
    np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-7)
    assert np.all((mean >= 0) & (mean <= 1))


@pytest.mark.parametrize("bad", [0.5001, 1.2, -1 / 255, 3.5 / 255])
def test_validation_requires_8_bit_values(bad):
    x = np.tile(GRID[:16].reshape(1, 4, 4, 1), (2, 1, 1, 1))
    validation.examples(x, (4, 4, 1), "logistic_mixture")  # every k / 255 passes
    x[1, 2, 3, 0] = bad
    with pytest.raises(ValueError, match=r"logistic_mixture likelihood expects x 8-bit, with values k/255"):
        validation.examples(x, (4, 4, 1), "logistic_mixture")
    validation.examples(x, (4, 4, 1), "gaussian")  # the other likelihoods do not check it
    # Traced (a serving signature, a tf.data map): a graph assertion with the same reason.
    checked = tf.function(lambda t: validation.examples(t, (4, 4, 1), "logistic_mixture"))
    with pytest.raises(ValueError, match=r"logistic_mixture likelihood expects x 8-bit"):
        with validation.reraise_invalid_input():
            checked(tf.constant(x))


def test_validation_rejects_nan_and_accepts_uint8_scaled_data():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    validation.examples(x.astype(np.float32) / 255, (16, 16, 1), "logistic_mixture")
    validation.examples(tf.cast(x, tf.float32) / 255.0, (16, 16, 1), "logistic_mixture")
    nan = (x / 255).astype(np.float32)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf values"):
        validation.examples(nan, (16, 16, 1), "logistic_mixture")


def test_likelihood_head_shapes_and_config():
    head = zoo.layers.LikelihoodHead((4, 4, 3), likelihood="logistic_mixture", num_mixtures=5, seed=0)
    out = head(np.random.default_rng(0).normal(size=(2, 7)).astype(np.float32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (2, 4, 4, 3, 5), "means": (2, 4, 4, 3, 5), "log_scales": (2, 4, 4, 3, 5), "mean": (2, 4, 4, 3)
    }
    np.testing.assert_allclose(out["mean"], distributions.discretized_logistic_mixture_mean(out["logits"], out["means"]))
    config = head.get_config()
    assert config["num_mixtures"] == 5 and config["likelihood"] == "logistic_mixture"
    clone = zoo.layers.LikelihoodHead.from_config(config)
    assert clone.get_config() == config
    clone.build((None, 7))
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in head.weights] == [(7, 240), (240,)] * 3
    # The other likelihoods keep their heads (num_mixtures is stored but unused).
    bernoulli = zoo.layers.LikelihoodHead((4, 4, 3), num_mixtures=5)
    assert sorted(bernoulli(np.ones((2, 7), np.float32))) == ["logits", "mean"] and bernoulli.count_params() == 8 * 48
    with pytest.raises(ValueError, match="num_mixtures must be an int >= 1"):
        zoo.layers.LikelihoodHead((4, 4, 3), likelihood="logistic_mixture", num_mixtures=0)


def eight_bit_images(shape, seed=0):
    return (np.random.default_rng(seed).integers(0, 256, shape) / 255).astype(np.float32)


def tiny_nvae(**overrides):
    kwargs = dict(
        input_shape=(8, 8, 3), scales=[{"groups": 1, "latent_channels": 2}, {"groups": 2, "latent_channels": 3}],
        channels=4, likelihood="logistic_mixture", num_mixtures=3, seed=0,
    )
    return zoo.NVAE(**{**kwargs, **overrides})


@pytest.mark.large  # an NVAE XLA fit step (a minute here); the NVAE golden XLA-compiles its loss and gradients by default
def test_tiny_nvae_trains_an_xla_step_and_reports_bits_per_dim():
    model = tiny_nvae()
    assert model.likelihood_conv.filters == 3 * 3 * 3
    assert model.get_config()["num_mixtures"] == 3
    x = eight_bit_images((4, 8, 8, 3))
    params = model.decode(tf.zeros((2, model.latent_dim)))
    assert {k: tuple(v.shape) for k, v in params.items()} == {
        "logits": (2, 8, 8, 3, 3), "means": (2, 8, 8, 3, 3), "log_scales": (2, 8, 8, 3, 3), "mean": (2, 8, 8, 3)
    }
    before = [w.numpy() for w in model.trainable_weights]
    model.compile(jit_compile=True, steps_per_execution=1)
    history = model.fit(x, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["bound"][0])
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    log_px = model.log_likelihood(x, num_samples=3, seed=0).numpy()
    assert log_px.shape == (4,) and np.all(np.isfinite(log_px)) and np.all(log_px < 0)
    # A discrete likelihood: log p(x) <= 0 per pixel, so nll > 0 and bits/dim > 0.
    report = zoo.analysis.dataset_log_likelihood(model, [x[:2], x[2:]], num_samples=3, seed=0)
    dims = 8 * 8 * 3
    assert report["examples"] == 4 and report["nll_nats"] > 0
    np.testing.assert_allclose(report["bits_per_dim"], report["nll_nats"] / (dims * math.log(2)), rtol=1e-6)
    # Not 8-bit: refused with the reason.
    with pytest.raises(ValueError, match="logistic_mixture likelihood expects x 8-bit"):
        model.reconstruct(np.full((1, 8, 8, 3), 0.5, np.float32))


def test_tiny_nvae_config_round_trip_and_save_load(tmp_path):
    model = tiny_nvae(num_mixtures=2)
    clone = zoo.NVAE.from_config(model.get_config())
    assert clone.get_config() == model.get_config() and clone.count_params() == model.count_params()
    path = tmp_path / "nvae.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = eight_bit_images((2, 8, 8, 3), seed=1)
    np.testing.assert_allclose(loaded.reconstruct(x), model.reconstruct(x), rtol=1e-5, atol=1e-6)


def test_vae_with_the_mixture_head_and_six_axis_parameters():
    # The VAE's head sees [S, B, H] features: parameters [S, B, H, W, C, M] have 6 axes (tf.nn.softmax takes 5 on CPU).
    model = zoo.VAE(input_shape=(4, 4, 3), likelihood="logistic_mixture", seed=0)
    x = eight_bit_images((3, 4, 4, 3), seed=2)
    assert model(x)["reconstruction"].shape == (3, 4, 4, 3)
    log_px = model.log_likelihood(x, num_samples=3, seed=0).numpy()
    assert log_px.shape == (3,) and np.all(np.isfinite(log_px)) and np.all(log_px < 0)
    six = {k: np.broadcast_to(v, (2, 1, 1, 1, 8, 3)) for k, v in mixture_params(8, 3, seed=6).items()}
    np.testing.assert_allclose(
        distributions.log_likelihood("logistic_mixture", six, np.full((2, 1, 1, 1, 8), 17 / 255, np.float32), 4),
        np.full(2, grid_log_prob(mixture_params(8, 3, seed=6))[17].sum()), rtol=1e-5,
    )
    # The ConvVAE's SkipDecoder head does not have it.
    with pytest.raises(ValueError, match=r"likelihood must be one of \('bernoulli', 'gaussian'\)"):
        zoo.ConvVAE(input_shape=(8, 8, 3), likelihood="logistic_mixture")
