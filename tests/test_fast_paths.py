"""The fast paths compute exactly what the reference implementations compute.

`zoo.layers.Dense` (row-blocked products where measured faster) vs `keras.layers.Dense`,
`zoo.distributions.log_likelihood` (plain ops) vs TFP's `log_prob`, and VMA's reads of few entries
(down path and skip convolutions once per entry) vs gathering the entries first: in value and in
first and second derivatives.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.distributions import tfd


def test_compile_defaults_to_keras_adam():
    model = zoo.VAE(input_shape=(4, 4, 1), hidden_units=(8,), latent_dim=2)
    model.compile()
    assert type(model.optimizer) is keras.optimizers.Adam and np.isclose(float(model.optimizer.learning_rate), 1e-3)


def _derivatives(matmul, x, kernel):
    """The product, its first derivatives and second derivatives (of the squared first ones), all as arrays."""
    weights = tf.sin(tf.reshape(tf.range(x.shape[0] * kernel.shape[1], dtype=tf.float32), [-1, kernel.shape[1]]))

    @tf.function
    def run(x, kernel):
        with tf.GradientTape() as outer:
            outer.watch([x, kernel])
            with tf.GradientTape() as inner:
                inner.watch([x, kernel])
                y = matmul(x, kernel)
                loss = tf.reduce_sum(tf.sin(y) * weights)
            dx, dkernel = inner.gradient(loss, [x, kernel])
            penalty = tf.reduce_sum(dx**2) + tf.reduce_sum(dkernel**2)
        return [y, dx, dkernel, *outer.gradient(penalty, [x, kernel])]

    return [np.asarray(t) for t in run(x, kernel)]


@pytest.mark.parametrize("blocks", [2, 3])
def test_blocked_matmul_matches_matmul_to_second_order(blocks):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(96, 64)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(64, 32)).astype(np.float32) / 8)
    got = _derivatives(lambda a, b: zoo.layers.dense.blocked_matmul(a, b, blocks), x, kernel)
    want = _derivatives(tf.matmul, x, kernel)
    for g, w in zip(got, want):
        scale = np.abs(w).max()
        assert scale > 1e-2  # every order is non-trivial
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)


def _ops(layer, x):
    return {op.type for op in tf.function(layer).get_concrete_function(x).graph.get_operations()}


def test_dense_matches_keras_dense_on_the_blocked_path(monkeypatch):
    monkeypatch.setattr(zoo.layers.dense, "block_count", lambda *shape: 2)
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 32, 64)).astype(np.float32))
    layers = [zoo.layers.Dense(16, activation="tanh"), keras.layers.Dense(16, activation="tanh")]
    for layer in layers:
        layer.build(x.shape)
    layers[1].set_weights(layers[0].get_weights())
    assert "BatchMatMulV2" in _ops(layers[0], x) and "BatchMatMulV2" not in _ops(layers[1], x)
    results = []
    for layer in layers:
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(tf.sin(y))
            dx, dkernel, dbias = inner.gradient(loss, [x, *layer.trainable_variables])
            penalty = tf.reduce_sum(dx**2)
        results.append([y, dx, dkernel, dbias, *outer.gradient(penalty, [x, *layer.trainable_variables])])
    for got, want in zip(*results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
    assert results[0][0].shape == (3, 32, 16)
    restored = keras.layers.deserialize(keras.layers.serialize(layers[0]))
    assert type(restored) is zoo.layers.Dense and restored.units == 16


def test_block_count_measures_once_per_shape_and_only_products_worth_splitting(monkeypatch):
    measured = []

    def fake_fastest(rows, in_features, out_features, dtype, counts):
        measured.append((rows, in_features, out_features, counts))
        return counts[-1]

    monkeypatch.setattr(zoo.layers.dense, "_fastest", fake_fastest)
    monkeypatch.setattr(zoo.layers.dense, "_num_threads", lambda: 4)
    monkeypatch.setattr(zoo.layers.dense, "CHOICES", {})
    block_count = zoo.layers.dense.block_count
    assert block_count(16, 512, 256) == 1  # 2.1M multiply-adds: never split, never timed
    assert block_count(97, 512, 256) == 1  # no block count divides 97 rows
    assert block_count(2**13, 256, 256) == 1  # above MAX_TIMED_MACS: not timed
    assert measured == []
    assert block_count(96, 512, 256) == 3  # 12.6M: 2 or 3 blocks of >= 4.2M (4 would get 3.1M)
    assert block_count(96, 512, 256) == 3
    assert measured == [(96, 512, 256, [1, 2, 3])]  # timed once, then cached


def test_block_count_keeps_a_split_only_when_it_is_clearly_faster():
    choose = zoo.layers.dense.choose
    assert choose({1: 1.0, 2: 0.7, 3: 0.8}) == 2
    assert choose({1: 1.0, 2: 0.95}) == 1  # within the 10% margin: Keras's path
    assert choose({1: 1.0, 2: 1.3}) == 1


def test_block_count_times_on_this_machine():
    key = (128, 512, 256, "float32")
    zoo.layers.dense.CHOICES.pop(key, None)
    choice = zoo.layers.dense.block_count(128, 512, 256)
    candidates = [b for b in (2, 4) if b <= zoo.layers.dense._num_threads()]
    if candidates:  # timed once, then cached
        assert choice in [1] + candidates and zoo.layers.dense.CHOICES[key] == choice
    else:  # one intra-op thread: nothing to time, Keras's product
        assert choice == 1 and key not in zoo.layers.dense.CHOICES


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_log_likelihood_matches_tfp_to_second_order(kind):
    rng = np.random.default_rng(0)
    x = (rng.random((5, 4, 3, 1)) < 0.5).astype(np.float32) if kind == "bernoulli" else rng.normal(size=(5, 4, 3, 1)).astype(np.float32)
    names = ("logits",) if kind == "bernoulli" else ("mean", "log_variance")
    params = {name: tf.constant(rng.normal(size=(2, 5, 4, 3, 1)).astype(np.float32) * 3) for name in names}

    def reference(params):
        if kind == "bernoulli":
            dist = tfd.Bernoulli(logits=params["logits"], dtype=tf.float32)
        else:
            dist = tfd.Normal(params["mean"], tf.exp(0.5 * params["log_variance"]))
        return tf.reduce_sum(dist.log_prob(x), axis=[-3, -2, -1])

    def derivatives(log_likelihood):
        values = list(params.values())
        with tf.GradientTape() as outer:
            outer.watch(values)
            with tf.GradientTape() as inner:
                inner.watch(values)
                result = log_likelihood(dict(zip(params, values)))
                total = tf.reduce_sum(result)
            first = inner.gradient(total, values)
            penalty = tf.add_n([tf.reduce_sum(g**2) for g in first])
        return [result, *first, *outer.gradient(penalty, values)]

    got = derivatives(lambda p: zoo.distributions.log_likelihood(kind, p, x, event_ndims=3))
    want = derivatives(reference)
    assert got[0].shape == (2, 5)
    for g, w in zip(got, want):
        assert np.abs(w).max() > 1e-2
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_log_likelihood_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match='likelihood must be "bernoulli", "gaussian" or "logistic_mixture", got \'poisson\''):
        zoo.distributions.log_likelihood("poisson", {}, tf.zeros([1]), 1)


def _second_order(fn, variables, weights):
    """fn's value, the gradient of sum(sin(fn) * weights) and the gradient of that gradient's squared norm."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = fn()
            loss = tf.reduce_sum(tf.sin(value) * weights)
        first = inner.gradient(loss, variables)
        penalty = tf.add_n([tf.reduce_sum(g**2) for g in first])
    second = outer.gradient(penalty, variables)
    return [np.asarray(t) for t in [value, *first, *second]]


def _assert_all_close(got, want, rtol=1e-4):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        scale = np.abs(w).max()
        assert scale > 1e-6  # every order is non-trivial
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-5 * scale)


def test_skip_decoder_convolves_shared_skips_once_per_context_to_second_order():
    """`skip_rows`: the skip maps' share of each up-convolution once per context, gathered; same as gathering first."""
    decoder = zoo.layers.SkipDecoder((8, 8, 1), filters=(4, 6), strides=(1, 2), seed=0)
    skips_of = zoo.layers.ConvStack(filters=(4, 6), strides=(1, 2), seed=1)
    rng = np.random.default_rng(0)
    z = tf.Variable(rng.normal(size=(7, 3)).astype(np.float32))
    context = tf.Variable(rng.normal(size=(3, 8, 8, 1)).astype(np.float32))  # 3 contexts, 7 rows
    rows = tf.constant([2, 0, 1, 1, 2, 0, 2])
    decoder(z, skips_of(context), skip_rows=rows)  # builds
    variables = [z, context, *decoder.trainable_variables]
    weights = tf.constant(rng.normal(size=(7, 8, 8, 1)).astype(np.float32))
    shared = lambda: decoder(z, skips_of(context), skip_rows=rows)["logits"]  # noqa: E731
    gathered = lambda: decoder(z, [tf.gather(s, rows) for s in skips_of(context)])["logits"]  # noqa: E731
    _assert_all_close(_second_order(shared, variables, weights), _second_order(gathered, variables, weights))


def test_vma_reads_entry_features_once_with_the_same_bound():
    """With fewer memory entries than reads, VMA runs the down path once per entry and gathers: same numbers."""
    model = zoo.VMA(input_shape=(8, 8, 1), architecture="conv", filters=(4, 4), strides=(1, 2), latent_dim=2,
                    matching_dim=4, seed=0)
    rng = np.random.default_rng(0)
    x = tf.constant((rng.random((5, 8, 8, 1)) < 0.5).astype(np.float32))
    memory = tf.constant((rng.random((3, 8, 8, 1)) < 0.5).astype(np.float32))  # 3 entries < 4 x 5 reads
    weights = lambda x, memory: model.log_importance_weights((x, memory), 4, tf.constant([1, 2]))  # noqa: E731
    static = tf.function(weights)
    dynamic = tf.function(weights, input_signature=[tf.TensorSpec([5, 8, 8, 1]), tf.TensorSpec([None, 8, 8, 1])])
    ops = lambda f: [op.type for op in f.get_concrete_function(x, memory).graph.get_operations()]  # noqa: E731
    # The down path and the decoder's skip convolutions run on the 3 entries: gathers of feature
    # maps and skip convolutions instead of gathering the memory once.
    assert ops(static).count("GatherV2") > ops(dynamic).count("GatherV2") + 1
    assert ops(static).count("Conv2DBackpropInput") > ops(dynamic).count("Conv2DBackpropInput")
    got, want = static(x, memory).numpy(), dynamic(x, memory).numpy()
    assert got.shape == (4, 5) and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    signs = tf.constant(rng.normal(size=(4, 5)).astype(np.float32))
    _assert_all_close(
        _second_order(lambda: static(x, memory), model.trainable_variables, signs),
        _second_order(lambda: dynamic(x, memory), model.trainable_variables, signs),
    )
