"""Tied and untied addressing networks of `StochasticAddress` (h^q, h^m of Bornschein et al. 2017)."""

import numpy as np
import tensorflow as tf

from zoo.layers.stochastic_address import StochasticAddress


def binary(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) < 0.5).astype(np.float32)


def address(shared):
    layer = StochasticAddress(event_shape=(8, 8, 1), matching_dim=16, hidden_units=(64,), prior="flat",
                              shared_embedding=shared, seed=0)
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
