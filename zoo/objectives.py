"""Pure tensor functions for variational objectives. No layers, no state.

Shape convention: importance samples lead, `[K, B]` for K samples of a batch of B.
"""

import math

import numpy as np
import tensorflow as tf

from zoo import validation
from zoo.distributions import tfp


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


def gaussian_kl(mean, log_variance, prior_mean=0.0, prior_log_variance=0.0, axis=-1):
    """KL(N(mean, exp(log_variance)) || N(prior_mean, exp(prior_log_variance))), diagonal.

    Summed over `axis` (None: per unit, no sum); the prior defaults to N(0, I):

        KL = 1/2 sum (exp(lv - plv) + (m - pm)^2 exp(-plv) - 1 - lv + plv)
    """
    per_unit = 0.5 * (
        tf.exp(log_variance - prior_log_variance)
        + tf.square(mean - prior_mean) * tf.exp(-prior_log_variance)
        - 1.0
        - log_variance
        + prior_log_variance
    )
    return per_unit if axis is None else tf.reduce_sum(per_unit, axis=axis)


def gaussian_log_density(z, mean, log_variance):
    """log N(z; mean, diag exp(log_variance)) per unit (not summed): the terms of a diagonal Gaussian."""
    return -0.5 * (math.log(2 * math.pi) + log_variance + tf.square(z - mean) * tf.exp(-log_variance))


def precision_weighted(mean_a, log_variance_a, mean_b, log_variance_b):
    """Product of two diagonal Gaussians, renormalised (the Ladder VAE's merge, Sonderby et al. 2016, eq. 18-19).

        var = 1 / (1/var_a + 1/var_b),   mean = (mean_a/var_a + mean_b/var_b) var

    Returns `(mean, log_variance)`.
    """
    precision_a, precision_b = tf.exp(-log_variance_a), tf.exp(-log_variance_b)
    log_variance = -tf.math.log(precision_a + precision_b)
    return (mean_a * precision_a + mean_b * precision_b) * tf.exp(log_variance), log_variance


def bits_per_dim(nll_nats, num_dims):
    """Converts a negative log-likelihood in nats per example into bits per dimension."""
    return nll_nats / (num_dims * math.log(2.0))


VIMCO_BASELINES = ("arithmetic", "geometric")


def vimco_surrogate(log_weights, discrete_log_prob, baseline="geometric"):
    """A surrogate of the K-sample bound whose gradient is the VIMCO estimator (Mnih & Rezende, 2016).

    For K samples (a_k, z_k) ~ q(a|x) q(z|a, x), with a discrete and z reparameterised,

        L     = log (1/K) sum_k w_k,     log w_k = log p(x, a_k, z_k) - log q(a_k, z_k | x)
        L^-k  = L with w_k replaced by a mean of the other K - 1 weights
        grad  = sum_k (L - L^-k) grad log q(a_k|x)  +  grad L (through w_k: z_k and every density)

    `baseline` picks the mean in L^-k:

        "arithmetic"  L^-k = log (1/(K-1)) sum_{j != k} w_j          (Bornschein et al. 2017, eq. 8)
        "geometric"   L^-k = log (1/K) (sum_{j != k} w_j + exp((1/(K-1)) sum_{j != k} log w_j))
                                                                     (Mnih & Rezende 2016)

    When log w_k contains -log q(a_k|x), as in VMA, the second term adds -w~_k (the normalised
    weight) to the first, so the per-sample learning signal is L - L^-k - w~_k, the paper's
    eq. 8. Both baselines are unbiased. The default is the geometric mean: on a trained VMA
    (`vma_mnist_recall`) it gave a slightly lower variance of the address network's gradient
    than the arithmetic mean, while the arithmetic mean was lower at initialisation
    (`experiments/vimco_baseline_variance.py`, RESULTS.md).

    The returned value equals L (so `-mean` is the loss to report); its gradient is the
    estimator above, because the learning signals L - L^-k are held constant with
    `stop_gradient` and the score term `log q - stop_gradient(log q)` is zero in value.
    TFP's `csiszar_vimco` stops gradients through every sample, which would drop the
    reparameterised z path, hence this function.

    Args:
        log_weights: float `[K, B]`, differentiable in every parameter (z reparameterised).
        discrete_log_prob: float `[K, B]`, log q(a_k | x) of the sampled discrete variables.
        baseline: `"arithmetic"` or `"geometric"`, the mean that replaces w_k in L^-k.

    Returns:
        float `[B]`, equal in value to `iwae_bound(log_weights)`.
    """
    if baseline not in VIMCO_BASELINES:
        raise ValueError(f"baseline must be one of {VIMCO_BASELINES}, got {baseline!r}")
    num_samples = log_weights.shape[0]
    if num_samples is None or num_samples < 2:
        raise ValueError(
            "the VIMCO baseline leaves one sample out, so it needs a static number of samples K >= 2, "
            f"got log_weights of shape {log_weights.shape.as_list()}"
        )
    if discrete_log_prob.shape[0] != num_samples:
        raise ValueError(
            f"log_weights {log_weights.shape.as_list()} and discrete_log_prob "
            f"{discrete_log_prob.shape.as_list()} must have the same leading K"
        )
    bound = iwae_bound(log_weights)  # [B]
    if baseline == "geometric":
        log_swap_one_out, _ = tfp.stats.log_soomean_exp(log_weights, axis=0)  # [K, B]
    else:
        leave_one_out = tf.where(tf.eye(num_samples, dtype=tf.bool), -math.inf, 0.0)  # [K, K]
        others = log_weights[tf.newaxis] + tf.cast(leave_one_out, log_weights.dtype)[:, :, tf.newaxis]  # [K, K, B]
        log_swap_one_out = tf.reduce_logsumexp(others, axis=1) - math.log(num_samples - 1)  # [K, B]
    learning_signal = tf.stop_gradient(bound[tf.newaxis] - log_swap_one_out)  # [K, B]
    score = discrete_log_prob - tf.stop_gradient(discrete_log_prob)  # zero in value
    return bound + tf.reduce_sum(learning_signal * score, axis=0)


# NVAE (Vahdat & Kautz 2020) ------------------------------------------------------------


KL_BALANCE_SCALINGS = ("equal", "linear", "sqrt", "square")


def kl_balance_alpha(groups_per_scale, scaling="square"):
    """NVAE's per-group KL balancing factors alpha_l, as the authors' `utils.kl_balancer_coeff`.

    Groups are listed top-down, in the order the decoder samples them (the coarsest scale first),
    the order of `kl_per_group`'s last axis. At the i-th scale from the top (each one twice the
    resolution of the one before, so 4^i times the latent positions),

        equal   1        linear   2^i        sqrt   sqrt(2^i)        square   4^i / groups at that scale

    then divided by their minimum. NVAE trains with "square".

    Args:
        groups_per_scale: sequence of ints >= 1, latent groups per scale, from the finest
            (largest) scale to the coarsest, as the authors' `groups_per_scale`.
        scaling: one of `"equal"`, `"linear"`, `"sqrt"`, `"square"`. Default `"square"`.

    Returns:
        float32 numpy array `[sum(groups_per_scale)]`.
    """
    groups = validation.positive_ints("groups_per_scale", groups_per_scale)
    if scaling not in KL_BALANCE_SCALINGS:
        raise ValueError(f"scaling must be one of {KL_BALANCE_SCALINGS}, got {scaling!r}")
    values = []
    for i, count in enumerate(reversed(groups)):  # i = 0 is the coarsest scale
        value = {"equal": 1.0, "linear": 2.0**i, "sqrt": math.sqrt(2.0**i), "square": 4.0**i / count}[scaling]
        values += [value] * count
    alpha = np.asarray(values, np.float64)
    return (alpha / alpha.min()).astype(np.float32)


def kl_balance_coefficients(kl_per_group, alpha=None):
    """NVAE's KL balancing coefficients gamma_l, as in the authors' `utils.kl_balancer` (held constant).

        m_l     = mean over the batch of |KL_l| + 0.01
        gamma_l = (m_l / alpha_l) / mean_k (m_k / alpha_k)

    so the coefficients average 1, a group with a larger KL (per unit of alpha, i.e. per latent
    position at its scale) gets a larger weight, and no group's KL collapses to 0 early in training. NVAE
    applies them only while the KL is warmed up (`balanced_kl`); gradients do not flow through them.

    Args:
        kl_per_group: float `[B, G]`, each example's KL of each latent group (top-down order).
        alpha: float `[G]` (`kl_balance_alpha`), or None for equal factors. Default None.

    Returns:
        float `[G]`.
    """
    kl_per_group = tf.convert_to_tensor(kl_per_group)
    if kl_per_group.shape.rank != 2:
        raise ValueError(f"kl_per_group must have shape [batch, groups], got shape {kl_per_group.shape.as_list()}")
    magnitude = tf.reduce_mean(tf.abs(kl_per_group), axis=0) + 0.01  # [G]
    if alpha is not None:
        alpha = tf.cast(alpha, kl_per_group.dtype)
        if alpha.shape.rank != 1 or alpha.shape[0] != kl_per_group.shape[-1]:
            raise ValueError(
                f"alpha must have shape [{kl_per_group.shape[-1]}] (one factor per group), got shape {alpha.shape.as_list()}"
            )
        magnitude = magnitude / alpha
    return tf.stop_gradient(magnitude / tf.reduce_mean(magnitude))


def balanced_kl(kl_per_group, kl_coefficient, alpha=None):
    """NVAE's KL term per example, as the authors' `utils.kl_balancer(..., kl_balance=True)`.

        kl = kl_coefficient * sum_l gamma_l KL_l    while kl_coefficient < 1 (warm-up)
        kl = sum_l KL_l                              once kl_coefficient = 1

    Args:
        kl_per_group: float `[B, G]`.
        kl_coefficient: float scalar (Python or tensor), e.g. `kl_warmup(step, ...)`.
        alpha: float `[G]` or None, as in `kl_balance_coefficients`.

    Returns:
        float `[B]`.
    """
    kl_per_group = tf.convert_to_tensor(kl_per_group)
    kl_coefficient = tf.cast(kl_coefficient, kl_per_group.dtype)
    gamma = kl_balance_coefficients(kl_per_group, alpha)
    gamma = tf.where(kl_coefficient < 1.0, gamma, tf.ones_like(gamma))
    return kl_coefficient * tf.reduce_sum(kl_per_group * gamma, axis=-1)


def kl_warmup(step, warmup_steps, min_coefficient=1e-4):
    """The KL warm-up coefficient, as NVAE's `utils.kl_coeff`; `LevelStack.kl_weight` calls it.

        beta(step) = max(min(step / warmup_steps, 1), min_coefficient)

    NVAE uses warmup_steps = 30% of the training updates (`--kl_anneal_portion`) and
    min_coefficient 1e-4 (`--kl_const_coeff`); min_coefficient 0 is a plain linear warm-up.
    The authors also hold beta at the floor for the first 0.01% of the updates
    (`--kl_const_portion`), a handful of updates: left out.

    Args:
        step: int or integer/float scalar tensor, the training step.
        warmup_steps: positive number, steps over which beta rises linearly to 1.
        min_coefficient: float in [0, 1], beta's floor. Default 1e-4.

    Returns:
        float32 scalar tensor.
    """
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, float)) or not warmup_steps > 0:
        raise ValueError(f"warmup_steps must be a positive number, got {warmup_steps!r}")
    if isinstance(min_coefficient, bool) or not isinstance(min_coefficient, (int, float)) or not 0 <= min_coefficient <= 1:
        raise ValueError(f"min_coefficient must be a number in [0, 1], got {min_coefficient!r}")
    step = tf.cast(step, tf.float32)
    return tf.maximum(tf.minimum(step / warmup_steps, 1.0), min_coefficient)


def batch_norm_scale_penalty(scales):
    """NVAE's batch-normalization regulariser, as the authors' `AutoEncoder.batchnorm_loss`.

        L_BN = sum over BN layers of max_c |gamma_c|

    NVAE adds `lambda * L_BN` to the loss with the spectral regulariser's lambda.

    Args:
        scales: sequence of float vectors, the `gamma` of every batch-normalization layer
            (e.g. `ResidualCell.batch_norm_scales()`).

    Returns:
        float32 scalar tensor (0 for an empty sequence).
    """
    scales = list(scales)
    if not scales:
        return tf.constant(0.0)
    return tf.add_n([tf.reduce_max(tf.abs(tf.cast(s, tf.float32))) for s in scales])
