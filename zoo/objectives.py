"""Pure tensor functions for variational objectives. No layers, no state.

Shape convention: importance samples lead, `[K, B]` for K samples of a batch of B.
"""

import math

import tensorflow as tf


def log_mean_exp(x, axis=0):
    """log(mean(exp(x))) along `axis`, computed stably."""
    n = tf.cast(tf.shape(x)[axis], x.dtype)
    return tf.reduce_logsumexp(x, axis=axis) - tf.math.log(n)


def iwae_bound(log_weights):
    """The K-sample importance-weighted bound of Burda et al. (2016), per example.

        L_K(x) = log (1/K) sum_k p(x, z_k) / q(z_k | x),   z_k ~ q(z | x)

    K = 1 gives the ELBO. Args: `log_weights` `[K, B]`. Returns `[B]`.
    """
    return log_mean_exp(log_weights, axis=0)


def elbo(log_px_z, kl):
    """ELBO = E_q log p(x|z) - KL(q(z|x) || p(z)), per example (inputs `[K, B]` or `[B]`)."""
    return log_px_z - kl


def gaussian_kl(mean, log_variance):
    """KL(N(mean, exp(log_variance)) || N(0, I)), summed over the last axis."""
    return 0.5 * tf.reduce_sum(
        tf.exp(log_variance) + tf.square(mean) - 1.0 - log_variance, axis=-1
    )


def bits_per_dim(nll_nats, num_dims):
    """Converts a negative log-likelihood in nats per example into bits per dimension."""
    return nll_nats / (num_dims * math.log(2.0))
