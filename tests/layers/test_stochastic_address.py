"""Tied and untied addressing networks of `StochasticAddress` (h^q, h^m of Bornschein et al. 2017)."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from zoo.layers.stochastic_address import StochasticAddress


def binary(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) < 0.5).astype(np.float32)


def address(shared, **kwargs):
    layer = StochasticAddress(event_shape=(8, 8, 1), matching_dim=16, hidden_units=(64,), prior="flat",
                              shared_embedding=shared, seed=0, **kwargs)
    layer.build(None)
    return layer


def test_untied_networks_start_equal_so_the_stored_copy_scores_highest():
    memory = binary((32, 8, 8, 1), 7)
    for shared in (True, False):
        layer = address(shared)
        log_q = layer.posterior_logits(memory, layer.memory_keys(memory)).numpy()
        np.testing.assert_array_equal(log_q.argmax(axis=1), np.arange(32))
    np.testing.assert_allclose(layer.query_embedding(memory), layer.memory_embedding(memory), rtol=0, atol=0)


def test_untied_networks_have_their_own_parameters_and_diverge():
    tied, untied = address(True), address(False)
    # h^m: 64 * 64 + 64 + 64 * 16 + 16 weights; untied adds r of the same shape.
    assert tied.count_params() == 5200 and untied.count_params() == 2 * 5200
    x, memory = tf.constant(binary((4, 8, 8, 1), 1)), tf.constant(binary((6, 8, 8, 1), 2))
    target = tf.one_hot([0, 1, 2, 3], 6)
    with tf.GradientTape() as tape:
        logits = untied.posterior_logits(x, untied.memory_keys(memory))
        loss = -tf.reduce_sum(target * logits)
    residual = untied.query_residual.trainable_weights
    grads = tape.gradient(loss, residual)
    # r's output layer starts at 0 but receives a gradient (its hidden layer does not until it moves).
    assert np.any(grads[-2].numpy()) and np.any(grads[-1].numpy())
    for weight, grad in zip(residual, grads):
        if grad is not None:
            weight.assign_sub(0.1 * grad)
    assert np.max(np.abs(untied.query_embedding(x) - untied.memory_embedding(x))) > 1e-3


def test_untied_config_round_trip():
    layer = address(False)
    clone = StochasticAddress.from_config(layer.get_config())
    clone.build(None)
    assert clone.get_config() == layer.get_config() and not clone.shared_embedding
    assert clone.query_residual.projection_initializer == "zeros"


def test_query_embedding_is_memory_embedding_plus_scaled_residual():
    layer = address(False, residual_scale=0.25)
    x = tf.constant(binary((3, 8, 8, 1), 4))
    kernel, bias = layer.query_residual.projection.kernel, layer.query_residual.projection.bias
    kernel.assign(tf.fill(kernel.shape, 0.5))
    bias.assign(tf.range(16, dtype=tf.float32))
    # r(x) = 0.5 * sum(features(x)) + j for output j; h^q = h^m + 0.25 r.
    features = layer.query_residual.features(tf.reshape(x, [3, 64])).numpy()
    residual = 0.5 * features.sum(axis=1, keepdims=True) + np.arange(16)
    np.testing.assert_allclose(layer.query_embedding(x), layer.memory_embedding(x).numpy() + 0.25 * residual, rtol=1e-5)
    # The tied network has no residual, whatever residual_scale says.
    tied = address(True, residual_scale=0.25)
    np.testing.assert_array_equal(tied.query_embedding(x), tied.memory_embedding(x))
    assert not hasattr(tied, "query_residual")


def test_residual_scale_slows_the_residual_under_adam():
    # Adam's step does not depend on the gradient's scale (up to its epsilon, made negligible here),
    # so with h^q = h^m + c r the first update moves h^q - h^m = c r by c times what c = 1 moves it
    # (r's output layer starts at 0).
    x, memory = tf.constant(binary((4, 8, 8, 1), 1)), tf.constant(binary((6, 8, 8, 1), 2))
    moved = {}
    for scale in (1.0, 0.1):
        layer = address(False, residual_scale=scale)
        optimizer = tf.keras.optimizers.Adam(1e-3, epsilon=1e-12)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(tf.one_hot([5, 4, 3, 2], 6) * layer.posterior_logits(x, layer.memory_keys(memory)))
        weights = layer.query_residual.trainable_weights
        optimizer.apply_gradients([(g, w) for g, w in zip(tape.gradient(loss, weights), weights) if g is not None])
        moved[scale] = (layer.query_embedding(x) - layer.memory_embedding(x)).numpy()
    assert np.max(np.abs(moved[1.0])) > 1e-3
    np.testing.assert_allclose(moved[0.1], 0.1 * moved[1.0], rtol=1e-3, atol=2e-6)  # float32 rounding of h^m


def test_residual_scale_is_validated_and_round_trips():
    for bad in (0.0, -1.0, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match="residual_scale must be a finite number > 0"):
            address(False, residual_scale=bad)
    layer = address(False, residual_scale=0.3)
    assert StochasticAddress.from_config(layer.get_config()).residual_scale == 0.3


def test_kl_log_prob_and_learned_prior_against_numpy():
    # Identity embeddings (one linear hidden layer, both maps I), so e_a = m_a and e_q = x and every
    # number below is computed in NumPy from the hand-set memory, queries and prior query e^p.
    layer = StochasticAddress(event_shape=(3,), matching_dim=3, hidden_units=(3,), activation="linear",
                              prior="learned", seed=0)
    layer.build(None)
    eye = np.eye(3, dtype=np.float32)
    layer.memory_embedding.set_weights([eye, np.zeros(3, np.float32), eye, np.zeros(3, np.float32)])
    prior_query = np.array([2.0, -1.0, 0.5], np.float32)
    layer.prior_query.assign(prior_query)
    memory = np.array([[1, 0, 0], [0, 2, 0], [1, 1, 1], [-1, 0, 2]], np.float32)
    query = np.array([[0, 3, -1], [0, -1, 2]], np.float32)
    out = layer({"query": query, "memory": memory}, num_samples=5, seed=[1, 2])

    keys = memory / np.linalg.norm(memory, axis=1, keepdims=True)
    log_q = special.log_softmax(query @ keys.T, axis=1)  # [2, 4]
    log_p = special.log_softmax(keys @ prior_query)  # [4]
    # A non-uniform prior and posteriors far from it: KL(q || p) and KL(p || q) differ by > 0.2 nats.
    assert np.ptp(log_p) > 1.0
    kl = np.sum(np.exp(log_q) * (log_q - log_p), axis=1)
    assert np.all(np.abs(kl - np.sum(np.exp(log_p) * (log_p - log_q), axis=1)) > 0.2)
    np.testing.assert_allclose(out["prior_logits"], log_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["logits"], log_q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["kl"], kl, rtol=1e-5, atol=1e-6)
    samples = out["samples"].numpy()  # [5, 2]
    assert samples.shape == (5, 2) and samples.min() >= 0 and samples.max() < 4 and len(np.unique(samples)) > 1
    np.testing.assert_allclose(out["log_prob"], log_q[np.arange(2), samples], rtol=1e-5, atol=1e-6)
