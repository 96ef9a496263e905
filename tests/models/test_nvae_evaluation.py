"""NVAE's evaluation runs the bottom-up pass once per image per call, and gets the numbers of one pass per sample.

The reference evaluates every importance sample with the full forward pass through public
methods: for a chunk of S samples on B images, `log_importance_weights(tile(x, S), 1, seed)`
runs the encoder on each of the S x B rows and draws the same noise as S samples of B images
(the noise of one chunk is one stateless draw of shape [S * B, ...], sample-major), so its
weights reshaped to [S, B] are the chunk's weights.
"""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

import zoo
from tests.goldens import binary_images

SEED = (3, 4)
TINY = dict(input_shape=(8, 8, 1), scales=[{"groups": 1, "latent_channels": 2}, {"groups": 2, "latent_channels": 2}],
            channels=4, seed=0)
DECODERS = {
    "factorized": {},
    "pixelcnn": dict(decoder_type="pixelcnn", pixelcnn_filters=4, pixelcnn_blocks=2),
}


def _model(decoder):
    model = zoo.NVAE(**TINY, **DECODERS[decoder])
    model(tf.zeros((1, 8, 8, 1)))
    # Moving statistics away from (0, 1), so inference-mode batch norm is not the identity and
    # features computed with batch statistics (training mode) would not pass.
    rng = np.random.default_rng(1)
    for variable in model.non_trainable_variables:
        if "moving_mean" in variable.path:
            variable.assign(rng.normal(0.0, 0.5, variable.shape))
        elif "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 2.0, variable.shape))
    return model


def _reference_weights(model, x, sizes, seed):
    """[k, B] log-weights, each sample's row through the full forward pass (chunk i on the seed folded with i)."""
    base = zoo.distributions.seed_pair(seed)
    chunks = []
    for i, size in enumerate(sizes):
        rows = tf.tile(tf.constant(x), [size, 1, 1, 1])  # [S * B, ...], sample-major
        weights = model.log_importance_weights(rows, 1, tf.random.experimental.stateless_fold_in(base, i))
        chunks.append(tf.reshape(weights, [size, len(x)]).numpy())
    return np.concatenate(chunks)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_evaluation_equals_the_full_forward_pass_per_sample(decoder):
    model = _model(decoder)
    model.rows_per_chunk = 3 * 2  # batch 3 -> 2 samples per chunk: k = 5 is chunks of 2, 2, 1
    for x in (binary_images((3, 8, 8, 1), seed=0), binary_images((3, 8, 8, 1), seed=1)):  # features not kept across calls
        expected = _reference_weights(model, x, [2, 2, 1], SEED)  # [5, 3]
        assert expected.std(axis=0).min() > 0.05 and expected.std(axis=1).min() > 0.05  # samples and images differ
        estimates = model.importance_sampling(x, num_samples=5, seed=SEED)
        np.testing.assert_allclose(estimates["log_likelihood"], special.logsumexp(expected, axis=0) - np.log(5),
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(estimates["elbo"], expected.mean(axis=0), rtol=1e-5, atol=1e-4)
        served = tf.function(model.served_log_likelihood)(tf.constant(x), tf.constant(5), tf.constant(SEED))
        np.testing.assert_allclose(served["log_likelihood"], estimates["log_likelihood"], rtol=1e-5, atol=1e-4)
        # One chunk of all 5 samples, features given: the first chunk's seed.
        features = model.importance_features(x)
        first = tf.random.experimental.stateless_fold_in(zoo.distributions.seed_pair(SEED), 0)
        np.testing.assert_allclose(model.log_importance_weights(tf.constant(x), 5, first, features=features),
                                   _reference_weights(model, x, [5], SEED), rtol=1e-5, atol=1e-4)


def test_the_given_features_are_the_ones_used():
    model = _model("factorized")
    x, other = binary_images((3, 8, 8, 1), seed=0), binary_images((3, 8, 8, 1), seed=1)
    seed = tf.constant(SEED)
    own = model.log_importance_weights(tf.constant(x), 2, seed, features=model.importance_features(x))
    np.testing.assert_allclose(own, model.log_importance_weights(tf.constant(x), 2, seed), rtol=1e-5, atol=1e-4)
    wrong = model.log_importance_weights(tf.constant(x), 2, seed, features=model.importance_features(other))
    assert np.abs(own - wrong).max() > 0.1


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_the_bottom_up_pass_runs_once_per_call(decoder):
    # A counter in the stem (the bottom-up pass's first layer) counts its executions, in graphs too.
    model = _model(decoder)
    model.rows_per_chunk = 3 * 2  # k = 5: three chunks
    runs, stem_call = tf.Variable(0), model.stem.call

    def counted(*args, **kwargs):
        runs.assign_add(1)
        return stem_call(*args, **kwargs)

    model.stem.call = counted
    x = binary_images((3, 8, 8, 1))
    model.log_likelihood(x, num_samples=5, seed=SEED)
    assert int(runs.numpy()) == 1
    tf.function(model.served_log_likelihood)(tf.constant(x), tf.constant(5), tf.constant(SEED))
    assert int(runs.numpy()) == 2
