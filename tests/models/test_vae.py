import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

import zoo
from tests.goldens import binary_images
from zoo import objectives

# A linear-Gaussian model p(z) = N(0, I), p(x|z) = N(A z + c, s2 I) has p(x) = N(c, A A^T + s2 I).
# A has orthogonal columns so the exact posterior is diagonal and a VAE can represent it.
A = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.0], [0.0, -1.0]], np.float32)
C = np.array([0.3, -0.2, 0.1, 0.5], np.float32)
S2 = 0.5


def linear_gaussian_vae(posterior_shift=0.0):
    """A VAE whose weights make it exactly the linear-Gaussian model with q(z|x) the exact posterior (+ shift)."""
    model = zoo.VAE(
        input_shape=(4,), hidden_units=(4,), latent_dim=2, activation="linear",
        batch_norm=False, likelihood="gaussian", seed=0,
    )
    precision = np.eye(2) + A.T @ A / S2
    covariance = np.linalg.inv(precision)
    gain = covariance @ A.T / S2  # posterior mean = gain (x - c)
    model.encoder.dense_layers[0].set_weights([np.eye(4), np.zeros(4)])
    model.posterior.mean_head.set_weights([gain.T, -gain @ C + posterior_shift])
    model.posterior.log_variance_head.set_weights([np.zeros((4, 2)), np.log(np.diag(covariance))])
    model.decoder.dense_layers[0].set_weights([A.T, np.zeros(4)])
    model.observation.heads["mean"].set_weights([np.eye(4), C])
    model.observation.heads["log_variance"].set_weights([np.zeros((4, 4)), np.full(4, math.log(S2))])
    return model


def exact_log_px(x):
    return stats.multivariate_normal(mean=C, cov=A @ A.T + S2 * np.eye(4)).logpdf(x)


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 2))
    return (z @ A.T + C + math.sqrt(S2) * rng.normal(size=(200, 4))).astype(np.float32)


def test_exact_posterior_gives_exact_log_likelihood_with_one_sample(linear_data):
    model = linear_gaussian_vae()
    estimate = model.log_likelihood(linear_data, num_samples=1, seed=1).numpy()
    np.testing.assert_allclose(estimate, exact_log_px(linear_data), atol=1e-3)


def test_estimate_approaches_exact_and_bound_is_monotone_in_k(linear_data):
    model = linear_gaussian_vae(posterior_shift=0.5)
    exact = exact_log_px(linear_data).mean()
    bounds = [model.log_likelihood(linear_data, num_samples=k, seed=k).numpy().mean() for k in (1, 10, 100, 1000)]
    assert np.all(np.diff(bounds) > 0), bounds
    assert exact - bounds[0] > 1.0  # the shifted posterior makes the ELBO visibly loose
    large_k = model.log_likelihood(linear_data, num_samples=5000, seed=0).numpy().mean()
    assert all(b <= exact + 0.01 for b in bounds + [large_k]), (bounds, large_k, exact)
    assert abs(large_k - exact) < 0.02, (large_k, exact)


def test_chunks_combine_into_one_estimate(linear_data, monkeypatch):
    # A shifted posterior makes the importance weights unequal, so combining chunks wrongly (a mean of
    # per-chunk estimates, a dropped or double-counted chunk) changes the result.
    model = linear_gaussian_vae(posterior_shift=0.5)
    x = linear_data[:10]
    monkeypatch.setattr(zoo.models.base, "_ROWS_PER_CHUNK", 10 * 7)  # 7 samples per chunk: 9 full + 1 partial
    chunked = model.importance_sampling(x, num_samples=64, seed=3)
    # By hand: chunk i draws its samples from the stateless seed fold_in((3, 0), i).
    base = zoo.distributions.seed_pair(3)
    log_w = np.concatenate([
        model.log_importance_weights(tf.constant(x), size, tf.random.experimental.stateless_fold_in(base, i)).numpy()
        for i, size in enumerate([7] * 9 + [1])
    ])  # [64, 10]
    assert log_w.std(axis=0).min() > 0.1  # unequal weights
    np.testing.assert_allclose(chunked["log_likelihood"], special.logsumexp(log_w, axis=0) - np.log(64), rtol=1e-5)
    np.testing.assert_allclose(chunked["elbo"], log_w.mean(axis=0), rtol=1e-5)
    # Chunked and unchunked estimates of the same quantity agree to Monte Carlo precision.
    monkeypatch.setattr(zoo.models.base, "_ROWS_PER_CHUNK", 50_000)
    unchunked = model.log_likelihood(x, num_samples=4000, seed=4).numpy()
    monkeypatch.setattr(zoo.models.base, "_ROWS_PER_CHUNK", 10 * 300)
    many_chunks = model.log_likelihood(x, num_samples=4000, seed=5).numpy()
    for estimate in (many_chunks, unchunked):  # Monte Carlo error: ~0.1 per example, ~0.03 on the mean
        np.testing.assert_allclose(estimate, exact_log_px(x), atol=0.4)
        assert abs(estimate.mean() - exact_log_px(x).mean()) < 0.1


def exact_posterior(x, posterior_shift):
    """Mean `[N, 2]` and variances `[2]` of q(z|x) in `linear_gaussian_vae(posterior_shift)`."""
    covariance = np.linalg.inv(np.eye(2) + A.T @ A / S2)
    # Diagonal: A's columns are orthogonal.
    return (x - C) @ (covariance @ A.T / S2).T + posterior_shift, np.diag(covariance)


def exact_kl(x, posterior_shift):
    """KL(q(z|x) || N(0, I)) per example."""
    mean, variance = exact_posterior(x, posterior_shift)
    return 0.5 * np.sum(variance + mean**2 - 1 - np.log(variance), axis=1)


def exact_elbo(x, posterior_shift):
    """E_q log p(x|z) - KL(q || p) in closed form for `linear_gaussian_vae(posterior_shift)`."""
    mean, variance = exact_posterior(x, posterior_shift)
    expected_log_px_z = stats.multivariate_normal(mean=np.zeros(4), cov=S2 * np.eye(4)).logpdf(x - mean @ A.T - C)
    expected_log_px_z -= np.trace(A @ np.diag(variance) @ A.T) / (2 * S2)
    return expected_log_px_z - exact_kl(x, posterior_shift)


def test_elbo_estimate_matches_closed_form(linear_data):
    model = linear_gaussian_vae(posterior_shift=0.5)
    mc = model.importance_sampling(linear_data, num_samples=4000, seed=5)["elbo"].numpy()
    exact = exact_elbo(linear_data, 0.5)
    np.testing.assert_allclose(mc, exact, atol=0.25)  # per example: Monte Carlo error of 4,000 samples
    assert abs(mc.mean() - exact.mean()) < 0.03, (mc.mean(), exact.mean())
    # The training bound: one sample of E log p(x|z) minus the KL in closed form, exact per example.
    outputs = model(linear_data, training=False)
    kl = exact_kl(linear_data, 0.5)
    np.testing.assert_allclose(outputs["kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(model.training_bound(outputs), outputs["log_px_z"][:, 0] - kl, rtol=1e-5)
    assert abs(np.mean(model.training_bound(outputs)) - np.mean(exact_elbo(linear_data, 0.5))) < 0.5


def test_fixed_seed_reproduces_estimates(linear_data):
    model = linear_gaussian_vae(posterior_shift=0.5)
    a = model.log_likelihood(linear_data[:5], num_samples=20, seed=11)
    b = model.log_likelihood(linear_data[:5], num_samples=20, seed=11)
    c = model.log_likelihood(linear_data[:5], num_samples=20, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_seeded_training_is_reproducible(mnist_train):
    def run():
        tf.keras.utils.set_random_seed(0)
        model = zoo.VAE(hidden_units=(32,), latent_dim=4, seed=5)
        model.compile()
        return model.fit(mnist_train[:400], epochs=1, batch_size=100, shuffle=False, verbose=0).history["loss"]

    assert run() == run()


def test_iwae_bound_matches_definition():
    log_w = tf.constant([[-1.0, -3.0], [-2.0, -2.0], [-4.0, -1.0]])
    expected = np.log(np.exp(log_w.numpy()).mean(axis=0))
    np.testing.assert_allclose(objectives.iwae_bound(log_w), expected, rtol=1e-6)
    np.testing.assert_allclose(objectives.gaussian_kl(tf.zeros([1, 3]), tf.zeros([1, 3])), [0.0])


@pytest.mark.parametrize(
    "preset, expected",
    [("vae_mnist_500_500_100", 1_440_984), ("vae_mnist_530_530_100", 1_559_184), ("vae_ocr_letters_200_200_50", 163_828)],
)
def test_preset_parameter_counts_match_table_3(preset, expected):
    model = zoo.VAE.from_preset(preset)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected


def test_from_preset_overrides_and_errors():
    model = zoo.VAE.from_preset("vae_ocr_letters_200_200_50", num_importance_samples=5, seed=3)
    assert (model.num_importance_samples, model.seed, model.input_shape) == (5, 3, (16, 8, 1))
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        zoo.VAE.from_preset("nope")


def test_iwae_training_objective_is_tighter_than_elbo(mnist_train):
    x = mnist_train[:100]
    vae = zoo.VAE(hidden_units=(64,), latent_dim=8, seed=0)
    iwae = zoo.VAE.from_config({**vae.get_config(), "num_importance_samples": 50})
    iwae.set_weights(vae.get_weights())
    elbo = tf.reduce_mean(vae.training_bound(vae(x)))
    bound = tf.reduce_mean(iwae.training_bound(iwae(x)))
    assert bound > elbo + 1.0, (float(bound), float(elbo))


def test_reconstruct_is_the_decoder_mean_at_the_posterior_mean():
    model = zoo.VAE(input_shape=(3, 2, 1), hidden_units=(4,), latent_dim=2, batch_norm=False, activation="relu", seed=0)
    x = binary_images((5, 3, 2, 1))
    (w1, b1), (wm, bm), (w2, b2), (wo, bo) = (
        layer.get_weights() for layer in (model.encoder.dense_layers[0], model.posterior.mean_head,
                                          model.decoder.dense_layers[0], model.observation.heads["logits"])
    )
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    mean = relu(x.reshape(5, 6) @ w1 + b1) @ wm + bm
    expected = 1 / (1 + np.exp(-(relu(mean @ w2 + b2) @ wo + bo)))
    np.testing.assert_allclose(model.encode(x)["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.reconstruct(x), expected.reshape(5, 3, 2, 1), rtol=1e-5, atol=1e-6)


def test_public_methods_shapes_and_determinism(mnist_test):
    model = zoo.VAE(hidden_units=(32,), latent_dim=3, seed=0)
    x = mnist_test[:6]
    posterior = model.encode(x)
    assert posterior["mean"].shape == (6, 3) and posterior["log_variance"].shape == (6, 3)
    params = model.decode(posterior["mean"])
    assert params["logits"].shape == (6, 28, 28, 1)
    np.testing.assert_allclose(params["mean"], tf.sigmoid(params["logits"]), rtol=1e-6)
    np.testing.assert_array_equal(model.sample(4, seed=1), model.sample(4, seed=1))
    assert model.sample(4, seed=1).shape == (4, 28, 28, 1)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 28, 28), np.float32), r"shape \[batch, 28, 28, 1\], got shape \[2, 28, 28\]"),
        (np.zeros((2, 28, 27, 1), np.float32), r"got shape \[2, 28, 27, 1\]"),
        (np.zeros((2, 28, 28, 1), np.uint8), "x must be float.*got dtype uint8"),
        (np.full((2, 28, 28, 1), 0.5, np.float32), r"binary, with values in \{0, 1\}"),
        (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN or Inf"),
        (np.array([[[[np.inf]] * 28] * 28] * 2, np.float32), "NaN or Inf"),
    ],
)
def test_bad_inputs_raise_value_errors(bad, message):
    model = zoo.VAE(hidden_units=(8,), latent_dim=2, seed=0)
    for method in (model.log_likelihood, model.encode, model.reconstruct):
        with pytest.raises(ValueError, match=message):
            method(bad)
    model.compile()
    with pytest.raises(ValueError, match=message):
        model.fit(bad, epochs=1, verbose=0)


def test_bad_values_in_a_dataset_are_caught_during_fit():
    model = zoo.VAE(hidden_units=(8,), latent_dim=2, seed=0)
    model.compile()
    good = np.zeros((4, 28, 28, 1), np.float32)
    bad = good.copy()
    bad[1, 3, 3, 0] = 0.5
    ds = tf.data.Dataset.from_tensor_slices(np.concatenate([good, bad])).batch(4)
    with pytest.raises(ValueError, match=r"binary, with values in \{0, 1\}"):
        model.fit(ds, epochs=1, verbose=0)
    nan = good.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.evaluate(tf.data.Dataset.from_tensor_slices(nan).batch(4), verbose=0)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        zoo.VAE(likelihood="poisson")
    with pytest.raises(ValueError, match="num_importance_samples must be an int >= 1"):
        zoo.VAE(num_importance_samples=0)
    with pytest.raises(ValueError, match="hidden_units must be a non-empty sequence"):
        zoo.VAE(hidden_units=())
    with pytest.raises(ValueError, match=r"z must be float latents of shape \[N, 100\]"):
        zoo.VAE().decode(np.zeros((2, 3), np.float32))


def test_training_on_binarized_mnist_lowers_the_test_bound(mnist_train, mnist_test):
    model = zoo.VAE(hidden_units=(200, 200), latent_dim=20, seed=0)
    model.compile()
    before = model.evaluate(mnist_test, batch_size=500, return_dict=True, verbose=0)["bound"]
    model.fit(mnist_train, epochs=4, batch_size=100, verbose=0)
    after = model.evaluate(mnist_test, batch_size=500, return_dict=True, verbose=0)["bound"]
    assert after > before + 200, (before, after)  # untrained ~ -545 nats; after 4 short epochs ~ -200
    log_px = model.log_likelihood(mnist_test[:100], num_samples=200, seed=0).numpy()
    assert np.all(np.isfinite(log_px)) and log_px.mean() > after


def test_dataset_log_likelihood_matches_exact_answer(linear_data):
    model = linear_gaussian_vae()
    ds = tf.data.Dataset.from_tensor_slices(linear_data).batch(64)
    result = zoo.analysis.dataset_log_likelihood(model, ds, num_samples=3, max_examples=150)
    exact = exact_log_px(linear_data[:150])
    assert result["examples"] == 150
    np.testing.assert_allclose(result["nll_nats"], -exact.mean(), atol=1e-3)
    np.testing.assert_allclose(result["nll_stderr"], exact.std(ddof=1) / np.sqrt(150), rtol=1e-3)
    assert result["bound_nats"] == pytest.approx(result["nll_nats"], abs=1e-3)  # exact posterior: ELBO = log p(x)
