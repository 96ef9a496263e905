"""The one module that imports TensorFlow Probability.

Everything else in the zoo builds distributions through `tfd` from here, so the TFP
dependency (and its tf-keras requirement) is confined to one place.
"""

import math

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


def log_likelihood(kind, params, x, event_ndims):
    """log p(x|z) of a decoder's output parameters, summed over the `event_ndims` trailing axes.

    Plain TensorFlow ops rather than `tfd.Bernoulli` / `tfd.Normal`: this sits in every
    training step, and TFP's broadcasting and `multiply_no_nan` guards cost about three
    times the element-wise work of the formulas themselves (profiled on CPU). Same values:
    Bernoulli  log p = x * logits - softplus(logits);
    Gaussian   log p = -(log(2 pi) + log_var + (x - mean)^2 / exp(log_var)) / 2.

    Args:
        kind: "bernoulli" (params = {"logits"}) or "gaussian" (params = {"mean", "log_variance"}).
        params: dict of float tensors of shape `[..., *event_shape]`.
        x: float tensor broadcastable against the parameters.
        event_ndims: number of trailing axes forming one observation.
    """
    x = tf.cast(x, tf.float32)
    if kind == "bernoulli":
        logits = tf.cast(params["logits"], tf.float32)
        log_prob = x * logits - tf.nn.softplus(logits)
    elif kind == "gaussian":
        log_variance = tf.cast(params["log_variance"], tf.float32)
        squared = tf.math.squared_difference(x, tf.cast(params["mean"], tf.float32))
        log_prob = -0.5 * (math.log(2 * math.pi) + log_variance + squared * tf.exp(-log_variance))
    else:
        raise ValueError(f'likelihood must be "bernoulli" or "gaussian", got {kind!r}')
    return tf.reduce_sum(log_prob, axis=list(range(-event_ndims, 0)))


# NVAE (Vahdat & Kautz 2020) ------------------------------------------------------------

# NVAE's `Normal` adds this to exp(log_scale), so no scale gets closer to 0 than 0.01.
NVAE_SCALE_FLOOR = 1e-2


def soft_clamp(x, limit=5.0):
    """A smooth, differentiable clamp of `x` into (-limit, limit): `limit * tanh(x / limit)`.

    About the identity for |x| << limit. NVAE applies it with limit 5 (`soft_clamp5`) to the
    mean and the log-scale of every Normal it builds.

    Args:
        x: float tensor.
        limit: positive float, the bound. Default 5.0 (NVAE's).
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    return limit * tf.tanh(x / limit)


def nvae_normal(mean, log_scale, temperature=1.0):
    """An element-wise Normal parameterised as NVAE's `distributions.Normal`, with float32 parameters.

        loc   = soft_clamp(mean, 5)
        scale = (exp(soft_clamp(log_scale, 5)) + 0.01) * temperature

    Args:
        mean, log_scale: float tensors of the same shape (e.g. `[B, H, W, C]`).
        temperature: positive float, scales the standard deviation when sampling (NVAE's `t`). Default 1.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    loc = soft_clamp(tf.cast(mean, tf.float32))
    scale = (tf.exp(soft_clamp(tf.cast(log_scale, tf.float32))) + NVAE_SCALE_FLOOR) * temperature
    return tfd.Normal(loc, scale)


def residual_normal(prior_mean, prior_log_scale, delta_mean, delta_log_scale, temperature=1.0):
    """NVAE's residual Normal posterior: the encoder predicts a shift of the prior, not the posterior.

        q(z_l | z_<l, x) = N(mu_p + dmu, sigma_p * dsigma),   log dsigma = delta_log_scale

    built as `nvae_normal(prior_mean + delta_mean, prior_log_scale + delta_log_scale)`, i.e. the
    sums are soft-clamped and floored as in the authors' `Normal(mu_p + mu_q, log_sig_p + log_sig_q)`
    (`model.py`, `res_dist`). `zoo.objectives.residual_normal_kl` is its KL to the prior in closed
    form (eq. 2, without the clamp).

    Args:
        prior_mean, prior_log_scale: float tensors, the prior's parameters mu_p and log sigma_p.
        delta_mean, delta_log_scale: float tensors of the same shape, dmu and log dsigma.
        temperature: positive float, as in `nvae_normal`. Default 1.

    Returns:
        an element-wise `tfd.Normal` (build it inside a loss or a layer; `call` returns tensors).

    References:
        Vahdat & Kautz, "NVAE: A Deep Hierarchical Variational Autoencoder", NeurIPS 2020, sec. 3.2, eq. 2.
    """
    prior_mean = tf.cast(prior_mean, tf.float32)
    prior_log_scale = tf.cast(prior_log_scale, tf.float32)
    return nvae_normal(
        prior_mean + tf.cast(delta_mean, tf.float32),
        prior_log_scale + tf.cast(delta_log_scale, tf.float32),
        temperature,
    )
