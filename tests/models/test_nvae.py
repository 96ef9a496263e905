"""NVAE: shapes, the bound's terms, KL balancing and regularisation in the loss, BN readjustment, mixed precision, presets."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

import zoo
from tests.conftest import has_binarized_mnist
from tests.goldens import binary_images

SCALES = [{"groups": 1, "latent_channels": 2}, {"groups": 2, "latent_channels": 3}]
# Trainable parameters of the paper presets (measured by the large test below).
PAPER_TRAINABLE = {"nvae_cifar10": 129_123_354, "nvae_celeba64": 151_282_110}


def tiny(**overrides):
    kwargs = dict(input_shape=(8, 8, 1), scales=SCALES, channels=4, seed=0)
    return zoo.NVAE(**{**kwargs, **overrides})


def test_shapes_and_padding():
    # 10 x 10 does not divide by 4: padded to 12 x 12 inside, cropped on the way out.
    model = tiny(input_shape=(10, 10, 1), num_importance_samples=3, kl_balancing=False)
    assert model.padded_shape == (12, 12)
    assert model.group_shapes == [(3, 3, 2), (6, 6, 3), (6, 6, 3)]
    assert model.latent_dim == 18
    x = binary_images((5, 10, 10, 1))
    out = model(x)
    units = 18 + 2 * 108
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "log_weights": (5, 3), "log_px_z": (5, 3), "kl": (5,), "kl_levels": (5, 3), "kl_units": (5, units),
        "reconstruction": (5, 10, 10, 1),
    }
    assert {k: tuple(v.shape) for k, v in model.encode(x).items()} == {
        "mean": (5, 18), "log_scale": (5, 18), "mean_1": (5, 6, 6, 3), "log_scale_1": (5, 6, 6, 3),
        "mean_2": (5, 6, 6, 3), "log_scale_2": (5, 6, 6, 3),
    }
    assert {k: tuple(v.shape) for k, v in model.decode(tf.zeros((4, 18))).items()} == {
        "logits": (4, 10, 10, 1), "mean": (4, 10, 10, 1)
    }
    assert model.sample(2, seed=1).shape == (2, 10, 10, 1)
    assert model.log_likelihood(x, num_samples=4, seed=0).shape == (5,)


def test_reconstruct_is_the_decoder_at_every_groups_posterior_mean():
    model = tiny()
    x = binary_images((5, 8, 8, 1))
    at_top_mean = lambda: model.decode(model.encode(x)["mean"])["mean"]  # noqa: E731  lower groups at the prior mean
    # Below the top, q is a shift of the prior: with the shifts set, reconstruct must follow them.
    for head in model.posterior_heads[1:]:
        _set_bias_only(head, np.full(head.bias.shape, 0.5))
    assert np.abs(model.reconstruct(x) - at_top_mean()).max() > 1e-3
    # With no shift, the posterior means below the top are the prior means, which decode uses.
    for head in model.posterior_heads[1:]:
        _set_bias_only(head, np.zeros(head.bias.shape))
    np.testing.assert_allclose(model.reconstruct(x), at_top_mean(), atol=1e-6)


def test_encoder_features_are_what_the_top_posterior_reads():
    model = tiny()
    x = binary_images((5, 8, 8, 1))
    features = model.encoder_features(x)
    height, width, _ = model.group_shapes[0]
    assert features.shape[0] == 5 and features.shape[1] % (height * width) == 0
    # The top group's posterior head on these features (unflattened) gives encode's top posterior.
    params = model.posterior_heads[0](tf.reshape(features, [5, height, width, -1]))
    top = zoo.distributions.nvae_normal(*tf.split(params, 2, axis=-1))
    np.testing.assert_allclose(tf.reshape(top.loc, [5, -1]), model.encode(x)["mean"], atol=1e-6)
    # Inference mode: an example's features do not depend on the rest of its batch.
    np.testing.assert_allclose(model.encoder_features(x[:2]), features[:2], atol=1e-6)
    with pytest.raises(ValueError, match="Bernoulli likelihood expects x binary"):
        model.encoder_features(np.full((2, 8, 8, 1), 0.5, np.float32))


def test_kl_levels_and_units_sum_to_kl():
    model = tiny(num_importance_samples=2, kl_balancing=False)
    out = model(binary_images(), training=True)
    np.testing.assert_allclose(out["kl"], tf.reduce_sum(out["kl_levels"], -1), rtol=1e-6)
    sizes = [math.prod(s) for s in model.group_shapes]
    per_group = tf.split(out["kl_units"], sizes, axis=-1)
    np.testing.assert_allclose(
        np.stack([tf.reduce_sum(u, -1) for u in per_group], -1), out["kl_levels"], rtol=1e-5, atol=1e-5
    )
    assert np.all(out["kl_units"].numpy() >= -1e-6)


def test_kl_is_the_closed_form_of_the_sampled_terms():
    # With q given, the closed-form KL is the mean of log q - log p over many samples of the same x.
    model = tiny(num_importance_samples=1)
    x = binary_images((1, 8, 8, 1))
    terms = model._posterior_terms(tf.constant(x), 4000, seed=tf.constant([3, 4]))
    monte_carlo = tf.reduce_mean(terms["log_qz"] - terms["log_pz"])
    closed = tf.reduce_sum(terms["kl_levels"])
    assert abs(float(monte_carlo) - float(closed)) < 0.05 * float(closed) + 0.5, (monte_carlo, closed)


def test_log_likelihood_chunks_are_the_hand_combined_weights():
    model = tiny()
    x = binary_images()
    model.rows_per_chunk = 4 * 3  # batch 4 -> 3 samples per chunk: 10 samples = 3 full chunks + 1
    chunked = model.log_likelihood(x, num_samples=10, seed=3).numpy()
    base = zoo.distributions.seed_pair(3)
    log_w = np.concatenate([
        model.log_importance_weights(tf.constant(x), size, tf.random.experimental.stateless_fold_in(base, i)).numpy()
        for i, size in enumerate([3, 3, 3, 1])
    ])  # [10, 4]
    assert log_w.std(axis=0).min() > 0.1  # unequal weights: a wrong combination shows
    np.testing.assert_allclose(chunked, special.logsumexp(log_w, axis=0) - np.log(10), rtol=1e-5)
    # One chunk: the same estimator on the first chunk's seed.
    model.rows_per_chunk = None
    model._log_weights_fn = None
    unchunked = model.log_likelihood(x, num_samples=10, seed=3).numpy()
    one = model.log_importance_weights(tf.constant(x), 10, tf.random.experimental.stateless_fold_in(base, 0)).numpy()
    np.testing.assert_allclose(unchunked, special.logsumexp(one, axis=0) - np.log(10), rtol=1e-5)
    # Fixed seeds: repeatable.
    np.testing.assert_array_equal(unchunked, model.log_likelihood(x, num_samples=10, seed=3).numpy())


def _set_bias_only(conv, bias):
    """The conv reads nothing: its output is `bias` at every position."""
    conv.set_weights([np.zeros(conv.kernel.shape, np.float32), np.asarray(bias, np.float32)])


def _nvae_normal(mean, log_scale):
    """loc and scale of `zoo.distributions.nvae_normal` in NumPy: soft clamp at 5, scale floored at 0.01."""
    clamp = lambda v: 5.0 * np.tanh(np.asarray(v, np.float64) / 5.0)  # noqa: E731
    return clamp(mean), np.exp(clamp(log_scale)) + 0.01


def _heads_model(top, prior, delta, logit):
    """tiny() with every head reading nothing: q(z_0|x) = N(top), p(z_g|z_<g) = N(prior) and residual deltas
    `delta` for the lower groups, a Bernoulli logit `logit` for every pixel; (mean, log_scale) pairs per channel."""
    model = tiny(num_importance_samples=3, kl_balancing=False)
    _set_bias_only(model.posterior_heads[0], np.concatenate(top))
    for g in (1, 2):
        _set_bias_only(model.prior_heads[g - 1], np.concatenate(prior))
        _set_bias_only(model.posterior_heads[g], np.concatenate(delta))
    _set_bias_only(model.likelihood_conv, [logit])
    return model


def test_kl_per_group_and_log_weights_are_the_closed_form():
    x = binary_images((2, 8, 8, 1), 3)
    logit = 0.7
    # log p(x|z) with one logit for every pixel, whatever z.
    log_px_z = np.sum(x * -np.logaddexp(0.0, -logit) + (1 - x) * -np.logaddexp(0.0, logit), axis=(1, 2, 3))

    # Posterior heads zeroed: q = p in every lower group (KL 0 whatever the prior), and q(z_0|x) = N(0, 1)
    # (log-scale 5 artanh(log 0.99 / 5): exp of the clamp + the 0.01 floor = 1), so log w = log p(x|z).
    unit_scale = 5.0 * np.arctanh(np.log(0.99) / 5.0)
    model = _heads_model(top=([0, 0], [unit_scale] * 2), prior=([0.3, -0.2, 1.0], [0.4, -0.6, 0.1]),
                         delta=([0, 0, 0], [0, 0, 0]), logit=logit)
    out = model(x)
    np.testing.assert_allclose(out["kl_levels"], 0.0, atol=1e-5)
    np.testing.assert_allclose(model.log_importance_weights(tf.constant(x), 3, tf.constant([1, 2])),
                               np.tile(log_px_z, (3, 1)), rtol=1e-6, atol=1e-4)

    # Hand-set deltas. Residual Normal: for q = N(mu_p + dmu, sigma_p dsigma) per unit
    # KL = 0.5 (dmu^2 / sigma_p^2 + dsigma^2 - 1) - log dsigma, with dmu, dsigma read after the clamp and floor.
    top, prior, delta = ([0.5, -1.0], [-0.3, 0.4]), ([0.3, -0.2, 1.0], [0.4, -0.6, 0.1]), ([0.8, 0.0, -1.5], [0.5, -0.7, 0.0])
    model = _heads_model(top, prior, delta, logit)
    loc_0, scale_0 = _nvae_normal(*top)
    kl_top = 4 * np.sum(-np.log(scale_0) + 0.5 * (scale_0**2 + loc_0**2) - 0.5)  # vs N(0, 1), 2 x 2 positions
    loc_p, scale_p = _nvae_normal(*prior)
    loc_q, scale_q = _nvae_normal(np.add(prior[0], delta[0]), np.add(prior[1], delta[1]))
    dmu, dsigma = loc_q - loc_p, scale_q / scale_p
    kl_lower = 16 * np.sum(0.5 * (dmu**2 / scale_p**2 + dsigma**2 - 1) - np.log(dsigma))  # 4 x 4 positions
    out = model(x)
    np.testing.assert_allclose(out["kl_levels"], [[kl_top, kl_lower, kl_lower]] * 2, rtol=1e-5)
    assert kl_top > 0.5 and kl_lower > 5.0

    # log w = log p(x|z) + sum_g log p(z_g) - log q(z_g) at z_g = loc_q + scale_q eps_g, where eps_g is the
    # model's per-group draw: stateless normals on the seed folded with g, [S * B, h, w, c].
    seed, size = tf.constant([1, 2]), 3 * 2
    expected = np.tile(log_px_z, (3, 1))
    for g, shape in enumerate(model.group_shapes):
        eps = tf.random.stateless_normal((size, *shape), tf.random.experimental.stateless_fold_in(
            zoo.distributions.seed_pair(seed), g)).numpy().astype(np.float64)
        (q_loc, q_scale), (p_loc, p_scale) = ((loc_0, scale_0), ((0.0, 0.0), (1.0, 1.0))) if g == 0 else (
            (loc_q, scale_q), (loc_p, scale_p))
        z = q_loc + q_scale * eps
        log_ratio = stats.norm.logpdf(z, p_loc, p_scale) - stats.norm.logpdf(z, q_loc, q_scale)
        expected += log_ratio.sum(axis=(1, 2, 3)).reshape(3, 2)
    np.testing.assert_allclose(model.log_importance_weights(tf.constant(x), 3, seed), expected, rtol=1e-5, atol=1e-3)


def test_temperature_zero_sampling_is_deterministic():
    model = tiny()
    a = model.sample(3, seed=1, temperature=0.0)
    b = model.sample(3, seed=2, temperature=0.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, model.decode(tf.zeros((3, model.latent_dim)))["mean"], rtol=1e-6)
    c, d = model.sample(3, seed=1, temperature=0.7), model.sample(3, seed=1, temperature=0.7)
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(c, model.sample(3, seed=2, temperature=0.7))


def _balanced_by_hand(kl_levels, beta, alpha):
    magnitude = np.abs(kl_levels).mean(axis=0) + 0.01
    magnitude = magnitude / alpha
    gamma = magnitude / magnitude.mean()
    return beta * (kl_levels * gamma).sum(-1)


def test_kl_warm_up_starts_at_the_authors_floor():
    # NVlabs/NVAE's kl_coeff never goes below --kl_const_coeff 1e-4; a plain linear warm-up would give 1 / 50,000.
    model = tiny(kl_warmup_steps=50_000)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    np.testing.assert_allclose(model.kl_weight(), 1e-4)
    model.optimizer.iterations.assign(9_999)
    np.testing.assert_allclose(model.kl_weight(), 0.2, rtol=1e-6)


def test_kl_balancing_applies_during_warm_up_only():
    x = binary_images((6, 8, 8, 1))
    model = tiny(kl_warmup_steps=10, kl_balancing=True)
    np.testing.assert_allclose(model.alpha, [1.0, 2.0, 2.0])  # square: 4^i / groups at scale i
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    out = model(x, training=True)
    log_px_z, kl_levels = out["log_px_z"].numpy()[:, 0], out["kl_levels"].numpy()
    for iterations, beta in ((0, 0.1), (4, 0.5)):
        model.optimizer.iterations.assign(iterations)
        loss = model.compute_loss(x=x, y_pred=out, training=True).numpy()
        expected = -np.mean(log_px_z - _balanced_by_hand(kl_levels, beta, model.alpha))
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
        unbalanced = -np.mean(log_px_z - beta * kl_levels.sum(-1))
        assert abs(loss - unbalanced) > 1e-3 * abs(unbalanced)  # the coefficients do something
    model.optimizer.iterations.assign(10)  # beta = 1: the plain ELBO
    loss = model.compute_loss(x=x, y_pred=out, training=True).numpy()
    np.testing.assert_allclose(loss, -np.mean(log_px_z - kl_levels.sum(-1)), rtol=1e-5)
    # Off: plain warm-up.
    plain = tiny(kl_warmup_steps=10, kl_balancing=False)
    plain.compile(optimizer=keras.optimizers.SGD(0.0))
    plain.optimizer.iterations.assign(4)
    np.testing.assert_allclose(
        plain.compute_loss(x=x, y_pred=out, training=True), -np.mean(log_px_z - 0.5 * kl_levels.sum(-1)), rtol=1e-5
    )


def test_spectral_and_batch_norm_penalty_in_the_training_loss():
    x = binary_images()
    model = tiny(spectral_regularization=0.1)
    out = model(x, training=True)
    evaluation = model.compute_loss(x=x, y_pred=out, training=False).numpy()
    training = model.compute_loss(x=x, y_pred=out, training=True).numpy()
    # The training call ran the power iteration; its stored vectors give the same L_SR.
    spectral = model.spectral_regularizer(model._conv_kernel_matrices(), training=False).numpy()
    scales = [s for cell in model.cells for s in cell.batch_norm_scales()]
    bn = sum(np.abs(s.numpy()).max() for s in scales)
    assert len(model.spectral_regularizer.groups) >= 2 and spectral > 1.0 and bn > 1.0
    np.testing.assert_allclose(training - evaluation, 0.1 * (spectral + bn), rtol=1e-4)
    # lambda = 0: no regulariser at all.
    off = tiny()
    assert off.spectral_regularizer is None
    out = off(x)
    np.testing.assert_allclose(off.compute_loss(x=x, y_pred=out, training=True), off.compute_loss(x=x, y_pred=out, training=False))


def test_seeds_fold_per_group_and_the_generator_is_used_without_one():
    model = tiny(num_importance_samples=2, kl_balancing=False)
    x = tf.constant(binary_images())
    a = model.log_importance_weights(x, 2, tf.constant([5, 6]))
    np.testing.assert_array_equal(a, model.log_importance_weights(x, 2, tf.constant([5, 6])))
    assert not np.allclose(a, model.log_importance_weights(x, 2, tf.constant([5, 7])))
    state = model.seed_generator.state.numpy().copy()
    first, second = model(x, training=False)["log_weights"], model(x, training=False)["log_weights"]
    assert not np.array_equal(state, model.seed_generator.state.numpy())
    assert not np.allclose(first, second)


def test_readjusted_batch_norm_moves_the_generative_statistics_for_sampling_only():
    model = tiny()
    x = binary_images((8, 8, 8, 1))
    model(x)  # built
    # Every statistic off its initial value, as training leaves them (without tracing a training step).
    rng = np.random.default_rng(0)
    for v in model.non_trainable_weights:
        if "float" in str(v.dtype):
            noise = 0.0 if "variance" in v.path else rng.normal(0, 0.1, v.shape)
            v.assign(v.numpy() * rng.uniform(0.5, 1.5, v.shape) + noise)
    trained = {v.path: v.numpy().copy() for v in model.non_trainable_weights}
    trainable = [w.numpy().copy() for w in model.trainable_weights]
    log_likelihood = model.log_likelihood(x, num_samples=4, seed=3).numpy()
    samples = model.sample(4, seed=0, temperature=0.8).numpy()
    probe = model.postprocess[-1].bn_1  # a generative BN
    momentum = probe.momentum
    expected_mean, expected_variance = probe.moving_mean.numpy().copy(), probe.moving_variance.numpy().copy()
    inputs = []
    call = probe.call

    def recording(h, *args, **kwargs):
        inputs.append(tf.cast(h, tf.float32).numpy())
        return call(h, *args, **kwargs)

    probe.call = recording
    try:
        with model.readjusted_batch_norm(num_batches=3, batch_size=5, temperature=0.8, seed=4) as readjusted:
            probe.call = call
            assert readjusted is model and len(inputs) == 3 and inputs[0].shape[0] == 5
            # The authors' EMA from the trained statistics: PyTorch momentum 0.05 is Keras's 0.95 kept.
            for h in inputs:
                expected_mean = momentum * expected_mean + (1 - momentum) * h.mean(axis=(0, 1, 2))
                expected_variance = momentum * expected_variance + (1 - momentum) * h.var(axis=(0, 1, 2))
            np.testing.assert_allclose(probe.moving_mean, expected_mean, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(probe.moving_variance, expected_variance, rtol=1e-3, atol=1e-6)
            assert not np.allclose(model.sample(4, seed=0, temperature=0.8), samples)  # sampling sees them
            encoder_bn = model.encoder_cells[0].bn_0  # the inference path's statistics stay as trained
            np.testing.assert_array_equal(encoder_bn.moving_mean, trained[encoder_bn.moving_mean.path])
    finally:
        probe.call = call
    # Afterwards: the trained model again (statistics, weights, likelihood, samples).
    for v in model.non_trainable_weights:
        np.testing.assert_array_equal(v.numpy(), trained[v.path])
    for w, before in zip(model.trainable_weights, trainable):
        np.testing.assert_array_equal(w.numpy(), before)
    np.testing.assert_array_equal(model.log_likelihood(x, num_samples=4, seed=3), log_likelihood)
    np.testing.assert_array_equal(model.sample(4, seed=0, temperature=0.8), samples)


def test_mixed_precision_keeps_distributions_in_float32():
    # Eager: NVAE's training steps under each policy are in tests/runs/test_training_strategies.py's large test.
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = tiny(spectral_regularization=0.1, kl_warmup_steps=5)
        assert model.stem.compute_dtype == "bfloat16" and model.stem.kernel.dtype == "float32"
        assert model.encoder_cells[0].conv_0.compute_dtype == "bfloat16"
        x = binary_images()
        out = model(x, training=True)
        for key in ("log_weights", "log_px_z", "kl", "kl_levels", "kl_units", "reconstruction"):
            assert out[key].dtype == tf.float32, key
        assert model.log_importance_weights(tf.constant(x), 2, tf.constant([1, 2])).dtype == tf.float32
        model.compile()  # the optimizer, whose step counter the KL warm-up reads
        loss = model.compute_loss(x=x, y_pred=out, training=True)
        assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    finally:
        keras.mixed_precision.set_dtype_policy(policy)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_shape=(8, 8)), r"NVAE needs input_shape \(height, width, channels\), got \(8, 8\)"),
        (dict(input_shape=(8, 8, 1, 1)), r"NVAE needs input_shape \(height, width, channels\), got \(8, 8, 1, 1\)"),
        (dict(scales="2x4,2x4"), "scales must be a non-empty sequence of dicts with keys"),
        (dict(scales=[]), "scales must be a non-empty sequence of dicts with keys"),
        (dict(scales={"groups": 2, "latent_channels": 4}), "scales must be a non-empty sequence of dicts"),
        (dict(scales=[{"groups": 2}]), r"entry 0 has unknown keys \[\] and lacks \['latent_channels'\]"),
        (dict(scales=[{"groups": 0, "latent_channels": 4}]), r"scales\[0\]\['groups'\] must be an int >= 1, got 0"),
        (dict(scales=[{"groups": 1, "latent_channels": 2.5}]), r"scales\[0\]\['latent_channels'\] must be an int >= 1"),
        (dict(channels=0), "channels must be an int >= 1, got 0"),
        (dict(likelihood="logistic_mixture", num_mixtures=0), "num_mixtures must be an int >= 1"),
        (dict(likelihood="poisson"),
         r"likelihood must be one of \('bernoulli', 'gaussian', 'logistic_mixture'\), got 'poisson'"),
        (dict(num_importance_samples=2, kl_balancing=True),
         "kl_balancing weighs .* needs num_importance_samples=1, got 2"),
        (dict(spectral_regularization=-1.0), "spectral_regularization must be a finite number >= 0, got -1.0"),
    ],
)
def test_bad_configurations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 8, 8, 1\], got shape \[2, 9, 8, 1\]"):
        model(np.zeros((2, 9, 8, 1), np.float32))
    with pytest.raises(ValueError, match="Bernoulli likelihood expects x binary"):
        model.reconstruct(np.full((2, 8, 8, 1), 0.5, np.float32))  # not binary
    with pytest.raises(ValueError, match=rf"z must be float latents of shape \[N, {model.latent_dim}\]"):
        model.decode(tf.zeros((2, model.latent_dim + 1)))
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        model.sample(2, temperature=-1.0)
    with pytest.raises(ValueError, match="num_batches must be an int >= 1, got 0"):
        with model.readjusted_batch_norm(num_batches=0):
            pass


def test_config_round_trip_keeps_scales_as_a_list_of_dicts():
    model = tiny(spectral_regularization=0.05, kl_warmup_steps=3)
    config = model.get_config()
    assert config["scales"] == [{"groups": 1, "latent_channels": 2}, {"groups": 2, "latent_channels": 3}]
    clone = zoo.NVAE.from_config(config)
    assert clone.get_config() == config and clone.count_params() == model.count_params()


def test_mnist_small_preset_fits_this_cpu():
    model = zoo.NVAE.from_preset("nvae_mnist_small")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert 100_000 <= trainable <= 500_000, trainable
    assert model.group_shapes == [(7, 7, 8), (7, 7, 8), (14, 14, 8), (14, 14, 8)]
    assert model.padded_shape == (28, 28)


@pytest.mark.large  # paper scale: ~1e8 parameters each, ~30 s to build on 2 cores
@pytest.mark.parametrize(
    "name, groups, top, trainable",
    [("nvae_cifar10", 30, (16, 16, 20), PAPER_TRAINABLE["nvae_cifar10"]),
     ("nvae_celeba64", 35, (8, 8, 20), PAPER_TRAINABLE["nvae_celeba64"])],
)
def test_paper_presets_build_with_the_logistic_mixture(name, groups, top, trainable):
    model = zoo.NVAE.from_preset(name)
    shape = zoo.presets.PRESETS[name]["config"]["input_shape"]
    assert model.likelihood == "logistic_mixture" and model.num_mixtures == 10
    assert model.num_groups == groups and model.group_shapes[0] == top
    assert model.likelihood_conv.filters == 3 * 10 * 3
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(name, "trainable parameters:", count)
    assert count == trainable, count
    x = (np.random.default_rng(0).integers(0, 256, (1, *shape)) / 255).astype(np.float32)
    out = model(x)
    assert out["reconstruction"].shape == (1, *shape) and out["kl_levels"].shape == (1, groups)
    assert np.all(np.isfinite(out["log_px_z"].numpy()))
    params = model.decode(tf.zeros((1, model.latent_dim)))
    assert {k: tuple(v.shape) for k, v in params.items()} == {
        "logits": (1, *shape, 10), "means": (1, *shape, 10), "log_scales": (1, *shape, 10), "mean": (1, *shape)
    }
    assert model.sample(1, seed=0).shape == (1, *shape)


@pytest.mark.large  # a convergence run: 200 updates of the preset on real data (minutes on 2 cores)
@pytest.mark.skipif(not has_binarized_mnist(), reason="binarized_mnist is not prepared in TFDS_DATA_DIR")
def test_mnist_small_trains_stably_on_binarized_mnist():
    model = zoo.NVAE.from_preset("nvae_mnist_small", seed=0)
    model.compile()
    data = zoo.data.load("binarized_mnist", "train", batch_size=32, seed=0).repeat()
    history = model.fit(data, steps_per_epoch=50, epochs=4, verbose=0)  # one epoch = 50 steps: per-block means
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), (name, values)
    bounds = history.history["bound"]
    assert bounds[-1] > bounds[0] + 100.0 and bounds[-1] > max(bounds[:-1]), bounds
