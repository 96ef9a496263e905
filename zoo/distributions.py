"""The one module that imports TensorFlow Probability.

Everything else in the zoo builds distributions through `tfd` from here, so the TFP
dependency (and its tf-keras requirement) is confined to one place.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def seed_pair(seed):
    """Returns a stateless int32 `[2]` seed for `tfd.*.sample(seed=...)`.

    Args:
        seed: a `keras.random.SeedGenerator` (advanced by one step), a Python int,
            or an integer tensor of shape `[2]` (already stateless).
    """
    if isinstance(seed, keras.random.SeedGenerator):
        # On the TF backend `next()` is int64; TFP's stateless samplers want int32.
        return tf.cast(seed.next(), tf.int32)
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        return tf.stack([tf.cast(seed, tf.int32), 0])
    return tf.cast(seed, tf.int32)


def diagonal_gaussian(mean, log_variance):
    """A diagonal Gaussian over the last axis, with float32 parameters."""
    mean = tf.cast(mean, tf.float32)
    log_variance = tf.cast(log_variance, tf.float32)
    return tfd.Independent(
        tfd.Normal(mean, tf.exp(0.5 * log_variance)), reinterpreted_batch_ndims=1
    )


def standard_normal(latent_dim):
    """The N(0, I) prior over a `latent_dim`-vector."""
    return tfd.Independent(
        tfd.Normal(tf.zeros([latent_dim]), tf.ones([latent_dim])),
        reinterpreted_batch_ndims=1,
    )


def likelihood(kind, params, event_ndims):
    """The observation model p(x|z) of a decoder's output parameters.

    Args:
        kind: "bernoulli" (params = {"logits"}) or "gaussian" (params = {"mean", "log_variance"}).
        params: dict of float tensors of shape `[..., *event_shape]`.
        event_ndims: number of trailing axes forming one observation.
    """
    if kind == "bernoulli":
        base = tfd.Bernoulli(logits=tf.cast(params["logits"], tf.float32), dtype=tf.float32)
    elif kind == "gaussian":
        scale = tf.exp(0.5 * tf.cast(params["log_variance"], tf.float32))
        base = tfd.Normal(tf.cast(params["mean"], tf.float32), scale)
    else:
        raise ValueError(f'likelihood must be "bernoulli" or "gaussian", got {kind!r}')
    return tfd.Independent(base, reinterpreted_batch_ndims=event_ndims)
