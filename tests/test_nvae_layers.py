"""NVAE's building blocks (Vahdat & Kautz 2020): distributions, KL terms and schedules, cells, regularisers.

Reference values are computed by hand or by an independent route (TFP, NumPy, the authors'
formulas transcribed line by line), never by the function under test.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from zoo import distributions, objectives
from zoo.distributions import tfd

# Distributions -----------------------------------------------------------------------------


def test_soft_clamp_is_limit_times_tanh():
    x = tf.constant([0.0, 5.0, -10.0, 100.0, 0.01])
    # 5 tanh(1) = 3.80797..., 5 tanh(-2) = -4.82013..., and ~x near 0.
    np.testing.assert_allclose(
        distributions.soft_clamp(x), [0.0, 3.8079707797788, -4.8201379003791, 5.0, 0.0099999933], rtol=1e-6
    )
    np.testing.assert_allclose(distributions.soft_clamp(tf.constant(1.0), limit=2.0), 0.9242343145200195, rtol=1e-6)
    with pytest.raises(ValueError, match="limit must be a positive number, got 0"):
        distributions.soft_clamp(x, limit=0)


def test_residual_normal_shifts_the_prior_then_clamps_and_floors_as_the_authors_normal():
    prior_mean, prior_log_scale = np.array([0.3, 4.0]), np.array([-0.2, 4.5])
    delta_mean, delta_log_scale = np.array([0.5, 3.0]), np.array([0.1, 2.0])
    q = distributions.residual_normal(prior_mean, prior_log_scale, delta_mean, delta_log_scale)
    # mu = 5 tanh((mu_p + dmu) / 5), sigma = exp(5 tanh((log s_p + log ds) / 5)) + 0.01
    np.testing.assert_allclose(q.loc, 5 * np.tanh(np.array([0.8, 7.0]) / 5), rtol=1e-6)
    np.testing.assert_allclose(q.scale, np.exp(5 * np.tanh(np.array([-0.1, 6.5]) / 5)) + 0.01, rtol=1e-6)
    assert q.scale.dtype == tf.float32
    hot = distributions.residual_normal(prior_mean, prior_log_scale, delta_mean, delta_log_scale, temperature=0.5)
    np.testing.assert_allclose(hot.scale, 0.5 * q.scale.numpy(), rtol=1e-6)


def test_residual_normal_kl_matches_a_hand_value_and_tfp():
    # dmu = 1, dsigma = 2, sigma_p = 0.5: 0.5 (1 / 0.25 + 4 - log 4 - 1) = 2.80685...
    kl = objectives.residual_normal_kl(tf.constant(1.0), tf.constant(math.log(2.0)), tf.constant(math.log(0.5)))
    np.testing.assert_allclose(kl, 0.5 * (4.0 + 4.0 - math.log(4.0) - 1.0), rtol=1e-6)
    np.testing.assert_allclose(kl, 2.8068528194400546, rtol=1e-6)

    rng = np.random.default_rng(0)
    prior_mean, prior_log_scale, delta_mean, delta_log_scale = rng.normal(size=(4, 3, 5)).astype(np.float64)
    expected = tfd.kl_divergence(
        tfd.Normal(prior_mean + delta_mean, np.exp(prior_log_scale + delta_log_scale)),
        tfd.Normal(prior_mean, np.exp(prior_log_scale)),
    )
    np.testing.assert_allclose(
        objectives.residual_normal_kl(delta_mean, delta_log_scale, prior_log_scale), expected, rtol=1e-10
    )
    assert np.all(objectives.residual_normal_kl(np.zeros(3), np.zeros(3), prior_log_scale[0, :3]).numpy() == 0)


# KL balancing and schedules -------------------------------------------------------------


def authors_kl_balancer_coeff(num_scales, groups_per_scale, fun):
    """The authors' `utils.kl_balancer_coeff`, transcribed to NumPy."""
    parts = []
    for i in range(num_scales):
        g = groups_per_scale[num_scales - i - 1]
        value = {"equal": 1.0, "linear": 2.0**i, "sqrt": np.sqrt(2.0**i), "square": np.square(2.0**i) / g}[fun]
        parts.append(value * np.ones(g))
    coeff = np.concatenate(parts)
    return coeff / coeff.min()


def authors_kl_balancer(kl_all, kl_coeff, alpha_i):
    """The authors' `utils.kl_balancer(kl_all, kl_coeff, kl_balance=True, alpha_i)`, transcribed to NumPy."""
    if kl_coeff < 1.0:
        alpha_i = alpha_i[None]
        kl_coeff_i = np.mean(np.abs(kl_all), axis=0, keepdims=True) + 0.01
        total_kl = np.sum(kl_coeff_i)
        kl_coeff_i = kl_coeff_i / alpha_i * total_kl
        kl_coeff_i = kl_coeff_i / np.mean(kl_coeff_i, axis=1, keepdims=True)
        return kl_coeff * np.sum(kl_all * kl_coeff_i, axis=1), kl_coeff_i[0]
    return kl_coeff * np.sum(kl_all, axis=1), np.ones(kl_all.shape[1])


def test_kl_balance_alpha_is_the_authors_coefficients_in_top_down_order():
    # Two groups at the finest scale, one at the coarsest: top-down [1, 4 / 2, 4 / 2].
    np.testing.assert_allclose(objectives.kl_balance_alpha((2, 1)), [1.0, 2.0, 2.0])
    np.testing.assert_allclose(objectives.kl_balance_alpha((1, 1, 1), "linear"), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(objectives.kl_balance_alpha((1, 1), "sqrt"), [1.0, math.sqrt(2.0)])
    for groups in ((2, 1), (4, 4, 2), (1, 3)):
        for fun in objectives.KL_BALANCE_SCALINGS:
            np.testing.assert_allclose(
                objectives.kl_balance_alpha(groups, fun), authors_kl_balancer_coeff(len(groups), groups, fun), rtol=1e-6
            )
    with pytest.raises(ValueError, match="scaling must be one of"):
        objectives.kl_balance_alpha((2, 1), "cubic")


def test_kl_balance_coefficients_on_a_hand_example():
    kl = np.array([[1.0, 3.0, -2.0], [3.0, 1.0, 6.0]], np.float32)
    alpha = np.array([1.0, 2.0, 2.0], np.float32)
    # m = mean |KL| + 0.01 = [2.01, 2.01, 4.01]; m / alpha = [2.01, 1.005, 2.005], mean 5.02 / 3.
    expected = np.array([2.01, 1.005, 2.005]) / (5.02 / 3)
    np.testing.assert_allclose(objectives.kl_balance_coefficients(kl, alpha), expected, rtol=1e-6)
    np.testing.assert_allclose(objectives.kl_balance_coefficients(kl, alpha), authors_kl_balancer(kl, 0.5, alpha)[1], rtol=1e-6)
    # Without alpha: proportional to m alone.
    np.testing.assert_allclose(objectives.kl_balance_coefficients(kl), np.array([2.01, 2.01, 4.01]) / (8.03 / 3), rtol=1e-6)
    with pytest.raises(ValueError, match=r"alpha must have shape \[3\]"):
        objectives.kl_balance_coefficients(kl, alpha[:2])


def test_balanced_kl_matches_the_authors_balancer_and_stops_gradients_through_the_coefficients():
    rng = np.random.default_rng(1)
    kl = rng.gamma(2.0, size=(5, 4)).astype(np.float32)
    alpha = objectives.kl_balance_alpha((2, 2), "square")
    for beta in (0.3, 1.0):
        expected, _ = authors_kl_balancer(kl, beta, alpha)
        np.testing.assert_allclose(objectives.balanced_kl(kl, beta, alpha), expected, rtol=1e-5)
    kl_tensor = tf.constant(kl)
    with tf.GradientTape() as tape:
        tape.watch(kl_tensor)
        total = tf.reduce_sum(objectives.balanced_kl(kl_tensor, tf.constant(0.3), alpha))
    gamma = authors_kl_balancer(kl, 0.3, alpha)[1]
    np.testing.assert_allclose(tape.gradient(total, kl_tensor), np.broadcast_to(0.3 * gamma, kl.shape), rtol=1e-5)


def test_kl_warmup_is_the_authors_kl_coeff():
    def authors(step, total_step, constant_step, min_kl_coeff):
        return max(min((step - constant_step) / total_step, 1.0), min_kl_coeff)

    for step in (0, 1, 50, 99, 100, 250):
        np.testing.assert_allclose(objectives.kl_warmup(step, 100, 1e-4), authors(step, 100, 0, 1e-4), rtol=1e-6)
        np.testing.assert_allclose(
            objectives.kl_warmup(tf.constant(step), 100, 0.01, constant_steps=10), authors(step, 100, 10, 0.01), rtol=1e-6
        )
    np.testing.assert_allclose(objectives.kl_warmup(50, 100, 1e-4), 0.5)
    with pytest.raises(ValueError, match="warmup_steps must be a positive number, got 0"):
        objectives.kl_warmup(3, 0)


def test_batch_norm_scale_penalty_and_annealed_lambda():
    penalty = objectives.batch_norm_scale_penalty([tf.constant([1.0, -3.0]), tf.constant([0.5, 0.2, -0.1])])
    np.testing.assert_allclose(penalty, 3.5)
    assert objectives.batch_norm_scale_penalty([]).numpy() == 0.0
    coefficient = objectives.spectral_regularization_coefficient
    np.testing.assert_allclose([coefficient(b, 10.0, 0.01) for b in (0.0, 0.5, 1.0)], [10.0, math.sqrt(0.1), 0.01], rtol=1e-6)
