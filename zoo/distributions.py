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
        pair = tf.cast(seed.next(), tf.int32)
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            # Every replica advances the same generator: without its id, each part of the global
            # batch would draw the same noise.
            pair = tf.random.experimental.stateless_fold_in(pair, replica.replica_id_in_sync_group)
        return pair
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
    training step, and TFP's broadcasting and `multiply_no_nan` guards cost more than the
    element-wise work of the formulas themselves. Same values:
    Bernoulli  log p = x * logits - softplus(logits);
    Gaussian   log p = -(log(2 pi) + log_var + (x - mean)^2 / exp(log_var)) / 2;
    "logistic_mixture": the 8-bit discretized logistic mixture, see `discretized_logistic_mixture_log_prob`.

    Args:
        kind: "bernoulli" (params = {"logits"}), "gaussian" (params = {"mean", "log_variance"}) or
            "logistic_mixture" (params = {"logits", "means", "log_scales"}, each `[..., *event_shape, M]`).
        params: dict of float tensors of shape `[..., *event_shape]` (`[..., *event_shape, M]` for the mixture).
        x: float tensor broadcastable against the parameters (without the mixture axis).
        event_ndims: number of trailing axes forming one observation.
    """
    x = tf.cast(x, tf.float32)
    if kind == "logistic_mixture":
        log_prob = discretized_logistic_mixture_log_prob(params["logits"], params["means"], params["log_scales"], x)
    elif kind == "bernoulli":
        logits = tf.cast(params["logits"], tf.float32)
        log_prob = x * logits - tf.nn.softplus(logits)
    elif kind == "gaussian":
        log_variance = tf.cast(params["log_variance"], tf.float32)
        squared = tf.math.squared_difference(x, tf.cast(params["mean"], tf.float32))
        log_prob = -0.5 * (math.log(2 * math.pi) + log_variance + squared * tf.exp(-log_variance))
    else:
        raise ValueError(f'likelihood must be "bernoulli", "gaussian" or "logistic_mixture", got {kind!r}')
    return tf.reduce_sum(log_prob, axis=list(range(-event_ndims, 0)))


# The 8-bit discretized logistic mixture (Salimans et al. 2017) ---------------------------

# PixelCNN++ (and NVAE's `DiscMixLogistic`) clamp the components' log-scales below at -7.
MIN_LOG_SCALE = -7.0
# 8-bit data: 256 values k / 255, bins of width 2 / 255 on the [-1, 1] scale.
NUM_BINS = 256
_BIN_WIDTH = 2.0 / (NUM_BINS - 1)
# Below this bin width in units of the scale, log(expm1(d)) is taken from its series (d -> 0).
_SMALL_WIDTH = 1e-3


def discretized_logistic_mixture_log_prob(logits, means, log_scales, x):
    """Element-wise log P(x) of 8-bit values under a mixture of discretized logistics, `[..., C]`.

    Every channel has its own mixture, independent of the other channels: no autoregressive
    coupling of R, G and B (PixelCNN++'s and NVAE's `coeffs`), and no mixture weights shared
    across channels. For x = k / 255 (k = 0..255), x' = 2 x - 1 on [-1, 1] and one component
    (mu, s = exp(max(log_scale, -7))):

        P(k) = sigma((x' + 1/255 - mu) / s) - sigma((x' - 1/255 - mu) / s)   0 < k < 255
        P(0) = sigma((x' + 1/255 - mu) / s)                                  (CDF from -inf)
        P(255) = 1 - sigma((x' - 1/255 - mu) / s)                            (CDF to +inf)
        log P(x) = logsumexp_m [log_softmax(logits)_m + log P_m(x)]

    The middle bins are computed as log sigma(b) + log(1 - sigma(a)) + log(expm1(a - b)) with
    a, b the upper and lower standardised edges (an identity of sigma(a) - sigma(b)): softplus
    forms only, no difference of two CDFs, so the value stays finite and accurate for
    components far from x or much narrower or wider than a bin, where PixelCNN++ switches to
    the density at the bin centre. The 256 probabilities sum to 1 by construction. `x` is
    snapped to the nearest k / 255 (`zoo.validation.examples` checks the data are 8-bit).

    Args:
        logits: float tensor `[..., C, M]`, unnormalised log mixture weights.
        means: float tensor `[..., C, M]`, component locations on the [-1, 1] scale.
        log_scales: float tensor `[..., C, M]`, log of the components' scales (clamped below at -7).
        x: float tensor `[..., C]` with values k / 255 in [0, 1].

    References:
        Salimans, Karpathy, Chen & Kingma, "PixelCNN++", ICLR 2017, sec. 2.1; NVlabs/NVAE
        `distributions.py`, `DiscMixLogistic.log_prob`.
    """
    logits = tf.cast(logits, tf.float32)
    means = tf.cast(means, tf.float32)
    log_scales = tf.maximum(tf.cast(log_scales, tf.float32), MIN_LOG_SCALE)
    k = tf.round(tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0) * (NUM_BINS - 1))  # [..., C]
    # The bin edges x' +- 1/255 = (2k - 255 +- 1) / 255, integers over 255: no rounding before mu is subtracted.
    upper_edge = ((2.0 * k - (NUM_BINS - 2)) / (NUM_BINS - 1))[..., None]  # [..., C, 1]
    lower_edge = ((2.0 * k - NUM_BINS) / (NUM_BINS - 1))[..., None]
    inv_scale = tf.exp(-log_scales)
    upper = inv_scale * (upper_edge - means)  # a, [..., C, M]
    lower = inv_scale * (lower_edge - means)  # b
    # log(expm1(d)) for the bin width d = a - b = (2/255) / s, from log d when d is tiny.
    log_width = math.log(_BIN_WIDTH) - log_scales
    width = tf.exp(log_width)
    small = width < _SMALL_WIDTH
    log_expm1 = tf.where(small, log_width + 0.5 * width, tf.math.log(tf.math.expm1(tf.where(small, 1.0, width))))
    log_cdf_upper = -tf.nn.softplus(-upper)  # log sigma(a)
    log_survival_lower = -tf.nn.softplus(lower)  # log (1 - sigma(b))
    log_middle = -tf.nn.softplus(-lower) - tf.nn.softplus(upper) + log_expm1
    log_probs = tf.where(
        tf.equal(k, 0.0)[..., None], log_cdf_upper,
        tf.where(tf.equal(k, NUM_BINS - 1.0)[..., None], log_survival_lower, log_middle),
    )  # [..., C, M]
    return tf.reduce_logsumexp(log_probs + _log_softmax(logits), axis=-1)


def _log_softmax(logits):
    # Not tf.nn.log_softmax: its CPU kernel takes at most 5 axes, and [S, B, H, W, C, M] has 6.
    return logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)


def discretized_logistic_mixture_mean(logits, means):
    """An approximate mean of the discretized logistic mixture, in [0, 1], `[..., C]`.

        mean = (sum_m softmax(logits)_m clip(mu_m, -1, 1) + 1) / 2

    i.e. each component's expected value approximated by its logistic mean clipped to [-1, 1]
    (as NVAE's `DiscMixLogistic.mean`), not the exact expectation of the 256-valued variable
    (which differs for components wider than a bin near the edges).

    Args:
        logits, means: float tensors `[..., C, M]` (see `discretized_logistic_mixture_log_prob`).
    """
    weights = tf.exp(_log_softmax(tf.cast(logits, tf.float32)))
    clipped = tf.clip_by_value(tf.cast(means, tf.float32), -1.0, 1.0)
    # Clipped again: float32 weights may sum to 1 +- 1e-7.
    return tf.clip_by_value(0.5 * (tf.reduce_sum(weights * clipped, axis=-1) + 1.0), 0.0, 1.0)


def discretized_logistic_mixture_sample(logits, means, log_scales, seed):
    """Draws 8-bit values k / 255 from the discretized logistic mixture, `[..., C]`.

    Exact for `discretized_logistic_mixture_log_prob`: a component m ~ softmax(logits) (Gumbel
    max), u ~ Logistic(mu_m, s_m) on the [-1, 1] scale, and k the bin of u, the edge bins
    reaching to -inf and +inf, i.e. k = clip(round((u + 1) * 255 / 2), 0, 255).

    Args:
        logits, means, log_scales: float tensors `[..., C, M]` (see `discretized_logistic_mixture_log_prob`).
        seed: int32 `[2]`, a stateless seed.
    """
    logits = tf.cast(logits, tf.float32)
    seed = seed_pair(seed)
    # Uniforms in [0, 1): u = 0 gives -inf (a Gumbel never chosen, a logistic in bin 0), which clip handles.
    gumbel = -tf.math.log(-tf.math.log(tf.random.stateless_uniform(tf.shape(logits), seed)))
    chosen = tf.one_hot(tf.argmax(logits + gumbel, axis=-1), tf.shape(logits)[-1], dtype=tf.float32)
    location = tf.reduce_sum(tf.cast(means, tf.float32) * chosen, axis=-1)
    log_scale = tf.maximum(tf.reduce_sum(tf.cast(log_scales, tf.float32) * chosen, axis=-1), MIN_LOG_SCALE)
    v = tf.random.stateless_uniform(tf.shape(location), tf.random.experimental.stateless_fold_in(seed, 1))
    u = location + tf.exp(log_scale) * (tf.math.log(v) - tf.math.log1p(-v))
    return tf.clip_by_value(tf.round((u + 1.0) * ((NUM_BINS - 1) / 2.0)), 0.0, NUM_BINS - 1.0) / (NUM_BINS - 1)


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
    (`model.py`, `res_dist`). Its KL to the prior is taken on these clamped parameters, as the
    authors' `Normal.kl` does; the paper's eq. 2 is the same KL without the clamp.

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
