"""The VIMCO estimator as the papers write it: per-sample learning signals and unbiasedness."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import objectives

# Fixed log weights of K = 4 samples for B = 3 examples, split as log w = log p(x, a, z) - log q(a|x).
LOG_JOINT = np.array([[-1.0, 0.3, -5.0], [2.0, -0.7, -4.0], [0.1, 0.1, -9.0], [-3.0, 1.5, -4.5]])
LOG_Q = np.array([[-0.2, -1.9, -0.7], [-2.3, -0.4, -1.2], [-1.1, -1.1, -3.0], [-0.6, -2.8, -0.9]])


def eq8_learning_signals(log_weights, baseline):
    """Bornschein et al. (2017), eq. 8, by hand: f_k = L - L^-k - w~_k, `[K, B]`."""
    w = np.exp(log_weights)
    num_samples = w.shape[0]
    bound = np.log(w.mean(axis=0))
    others = w.sum(axis=0) - w  # sum_{j != k} w_j
    if baseline == "arithmetic":
        leave_one_out = np.log(others / (num_samples - 1))
    else:  # w_k replaced by the geometric mean of the other K - 1 weights
        geometric = np.exp((log_weights.sum(axis=0) - log_weights) / (num_samples - 1))
        leave_one_out = np.log((others + geometric) / num_samples)
    return bound - leave_one_out - w / w.sum(axis=0)


@pytest.mark.parametrize("baseline", objectives.VIMCO_BASELINES)
def test_vimco_gradient_is_eq8_learning_signal(baseline):
    log_q = tf.Variable(LOG_Q)
    with tf.GradientTape() as tape:
        # log q(a_k|x) enters the weights and the score term, as in VMA.
        surrogate = objectives.vimco_surrogate(tf.constant(LOG_JOINT) - log_q, log_q, baseline=baseline)
        total = tf.reduce_sum(surrogate)
    signals = tape.gradient(total, log_q).numpy()
    expected = eq8_learning_signals(LOG_JOINT - LOG_Q, baseline)
    np.testing.assert_allclose(signals, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(surrogate, np.log(np.mean(np.exp(LOG_JOINT - LOG_Q), axis=0)), rtol=1e-12)


def test_vimco_baselines_differ_on_these_weights():
    # Without this the test above could not tell the two baselines (or no baseline) apart.
    arithmetic, geometric = (eq8_learning_signals(LOG_JOINT - LOG_Q, b) for b in ("arithmetic", "geometric"))
    assert np.max(np.abs(arithmetic - geometric)) > 0.1
    no_baseline = np.log(np.mean(np.exp(LOG_JOINT - LOG_Q), axis=0)) - np.exp(LOG_JOINT - LOG_Q) / np.sum(
        np.exp(LOG_JOINT - LOG_Q), axis=0
    )
    assert np.max(np.abs(arithmetic - no_baseline)) > 1 and np.max(np.abs(geometric - no_baseline)) > 1


@pytest.mark.parametrize("baseline", objectives.VIMCO_BASELINES)
def test_vimco_expected_gradient_is_exact_gradient(baseline):
    # A model whose only latent is a in {0, 1, 2}: log w = phi_a - log q(a). With K = 3 there are
    # 27 address tuples; summing the surrogate's gradient over all of them, each weighted by its
    # probability, gives the estimator's expectation without Monte Carlo error.
    theta = tf.Variable([0.3, -0.5, 1.0], dtype=tf.float64)  # q(a) logits
    phi = tf.Variable([-1.0, 0.5, -2.0], dtype=tf.float64)  # log p(x, a)
    tuples = tf.constant(list(itertools.product(range(3), repeat=3)), dtype=tf.int32)  # [27, K]
    with tf.GradientTape(persistent=True) as tape:
        log_q = tf.gather(tf.nn.log_softmax(theta), tf.transpose(tuples))  # [K, 27]
        log_weights = tf.gather(phi, tf.transpose(tuples)) - log_q
        probability = tf.exp(tf.reduce_sum(log_q, axis=0))  # [27]
        exact = tf.reduce_sum(probability * objectives.iwae_bound(log_weights))  # E_q L, differentiated exactly
        expected_estimate = tf.reduce_sum(
            tf.stop_gradient(probability) * objectives.vimco_surrogate(log_weights, log_q, baseline=baseline)
        )
    exact_grad = np.concatenate([tf.convert_to_tensor(g) for g in tape.gradient(exact, [theta, phi])])
    estimate_grad = np.concatenate([tf.convert_to_tensor(g) for g in tape.gradient(expected_estimate, [theta, phi])])
    np.testing.assert_allclose(estimate_grad, exact_grad, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(exact_grad[:3])) > 0.05  # the address gradient is not trivially zero


def test_vimco_rejects_an_unknown_baseline():
    with pytest.raises(ValueError, match=r"baseline must be one of \('arithmetic', 'geometric'\), got 'harmonic'"):
        objectives.vimco_surrogate(tf.zeros([2, 3]), tf.zeros([2, 3]), baseline="harmonic")
    with pytest.raises(ValueError, match="vimco_baseline must be one of"):
        zoo.VMA(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, matching_dim=4, vimco_baseline="none")


def test_vma_threads_its_baseline_into_the_loss():
    rng = np.random.default_rng(0)
    x = tf.constant((rng.random((6, 8, 8, 1)) < 0.5).astype(np.float32))
    memory = tf.constant((rng.random((5, 8, 8, 1)) < 0.5).astype(np.float32))
    model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, matching_dim=4, seed=0)
    clone = zoo.VMA.from_config({**model.get_config(), "vimco_baseline": "arithmetic"})
    assert clone.vimco_baseline == "arithmetic" and clone.get_config()["vimco_baseline"] == "arithmetic"
    # Same outputs, two baselines: equal losses, different address-network gradients.
    with tf.GradientTape(persistent=True) as tape:
        outputs = model({"x": x, "memory": memory}, training=True)
        losses = {}
        for baseline in objectives.VIMCO_BASELINES:
            model.vimco_baseline = baseline
            losses[baseline] = model.compute_loss(y_pred=outputs)
    grads = {
        b: np.concatenate([tf.reshape(g, [-1]) for g in tape.gradient(loss, model.address.trainable_weights)])
        for b, loss in losses.items()
    }
    np.testing.assert_allclose(losses["arithmetic"], losses["geometric"], rtol=1e-6)
    assert np.max(np.abs(grads["arithmetic"] - grads["geometric"])) > 1e-6
