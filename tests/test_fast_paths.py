"""The training step's fast paths compute exactly what the reference implementations compute.

`zoo.optimizers.Adam` (fused kernel) vs `keras.optimizers.Adam`, `zoo.layers.Dense` (row-blocked
products) vs `keras.layers.Dense`, and `zoo.distributions.log_likelihood` (plain ops) vs TFP's `log_prob`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.distributions import tfd


INITIAL = np.random.default_rng(0).normal(size=(30, 7)).astype(np.float32)


def _adam_trajectory(optimizer, steps=20):
    variable = keras.Variable(INITIAL)
    for step in range(steps):
        gradient = np.random.default_rng(step + 1).normal(size=(30, 7)).astype(np.float32)
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
    return [variable.numpy(), optimizer._momentums[0].numpy(), optimizer._velocities[0].numpy()]


@pytest.mark.parametrize("kwargs", [dict(learning_rate=1e-2), dict(learning_rate=3e-3, beta_1=0.5, epsilon=1e-4)])
def test_fused_adam_follows_keras_adam(kwargs):
    fused = _adam_trajectory(zoo.optimizers.Adam(**kwargs))
    reference = _adam_trajectory(keras.optimizers.Adam(**kwargs))
    for got, want in zip(fused, reference):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(fused[0] - INITIAL).max() > kwargs["learning_rate"]  # the trajectories went somewhere


def test_fused_adam_amsgrad_and_serialization():
    amsgrad = _adam_trajectory(zoo.optimizers.Adam(learning_rate=1e-2, amsgrad=True))
    reference = _adam_trajectory(keras.optimizers.Adam(learning_rate=1e-2, amsgrad=True))
    np.testing.assert_allclose(amsgrad[0], reference[0], rtol=1e-5, atol=1e-6)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(zoo.optimizers.Adam(learning_rate=2e-4)))
    assert type(restored) is zoo.optimizers.Adam and np.isclose(float(restored.learning_rate), 2e-4)


def test_compile_defaults_to_the_fused_adam():
    model = zoo.VAE(input_shape=(4, 4, 1), hidden_units=(8,), latent_dim=2)
    model.compile()
    assert type(model.optimizer) is zoo.optimizers.Adam and np.isclose(float(model.optimizer.learning_rate), 1e-3)


def _product_and_gradients(matmul, x, kernel, static):
    weights = tf.sin(tf.reshape(tf.range(tf.size(x) // x.shape[-1] * kernel.shape[1], dtype=tf.float32), [-1, kernel.shape[1]]))

    def run(x, kernel):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = matmul(x, kernel)
            loss = tf.reduce_sum(tf.reshape(y, [-1, kernel.shape[1]]) * weights)
        return y, *tape.gradient(loss, [x, kernel])

    signature = [tf.TensorSpec(x.shape if static else [None, *x.shape[1:]]), tf.TensorSpec(kernel.shape)]
    function = tf.function(run, input_signature=signature)
    ops = {op.type for op in function.get_concrete_function().graph.get_operations()}
    return [np.asarray(t) for t in function(x, kernel)], ops


@pytest.mark.parametrize("blocks", [2, 3])
@pytest.mark.parametrize("shape", [(96, 512), (2, 48, 512), (97, 512)])
@pytest.mark.parametrize("static", [True, False])
def test_blocked_matmul_matches_matmul(blocks, shape, static):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(512, 256)).astype(np.float32))  # 96 x 512 x 256 = 3 x MIN_BLOCK_MACS
    got, ops = _product_and_gradients(lambda a, b: zoo.layers.dense.blocked_matmul(a, b, blocks), x, kernel, static)
    want, _ = _product_and_gradients(lambda a, b: tf.tensordot(a, b, 1), x, kernel, static)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-3)
    # Static shapes decide the blocking while tracing (97 rows: one block, a plain MatMul);
    # unknown row counts decide it at run time.
    assert ("BatchMatMulV2" in ops) == (not static or shape[0] != 97)
    assert ("FloorMod" in ops) == (not static)


def test_blocked_matmul_blocks_large_products_only():
    def block_shapes(rows, blocks):
        x, kernel = tf.zeros([rows, 512]), tf.zeros([512, 256])
        graph = tf.function(lambda a, b: zoo.layers.dense.blocked_matmul(a, b, blocks)).get_concrete_function(x, kernel).graph
        return [tuple(op.inputs[0].shape) for op in graph.get_operations() if "MatMul" in op.type]

    assert zoo.layers.dense.MIN_BLOCK_MACS == 2**22
    assert block_shapes(96, 2) == [(2, 48, 512)]  # 12.6M multiply-adds: two blocks of 6.3M
    assert block_shapes(96, 4) == [(3, 32, 512)]  # four would get 3.1M each; 3 divides 96
    assert block_shapes(16, 2) == [(16, 512)]  # 2.1M: one block
    assert block_shapes(97, 2) == [(97, 512)]  # rows not divisible: one block


def test_dense_matches_keras_dense():
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 32, 512)).astype(np.float32))
    layers = [zoo.layers.Dense(256, activation="tanh"), keras.layers.Dense(256, activation="tanh")]
    for layer in layers:
        layer.build(x.shape)
    layers[1].set_weights(layers[0].get_weights())
    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y))
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_variables])])
    for got, want in zip(*results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
    assert results[0][0].shape == (3, 32, 256)
    restored = keras.layers.deserialize(keras.layers.serialize(layers[0]))
    assert type(restored) is zoo.layers.Dense and restored.units == 256


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_log_likelihood_matches_tfp(kind):
    rng = np.random.default_rng(0)
    x = (rng.random((5, 4, 3, 1)) < 0.5).astype(np.float32) if kind == "bernoulli" else rng.normal(size=(5, 4, 3, 1)).astype(np.float32)
    raw = {name: rng.normal(size=(2, 5, 4, 3, 1)).astype(np.float32) * 3 for name in ("logits", "mean", "log_variance")}
    if kind == "bernoulli":
        params = {"logits": raw["logits"]}
        reference = tfd.Bernoulli(logits=params["logits"], dtype=tf.float32)
    else:
        params = {"mean": raw["mean"], "log_variance": raw["log_variance"]}
        reference = tfd.Normal(params["mean"], np.exp(0.5 * params["log_variance"]))
    got = zoo.distributions.log_likelihood(kind, params, x, event_ndims=3)
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got, tf.reduce_sum(reference.log_prob(x), axis=[-3, -2, -1]), rtol=1e-5, atol=1e-4)


def test_log_likelihood_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match='likelihood must be "bernoulli" or "gaussian", got \'poisson\''):
        zoo.distributions.log_likelihood("poisson", {}, tf.zeros([1]), 1)
