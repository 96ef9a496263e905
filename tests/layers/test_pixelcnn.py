"""PixelCNN layers and decoders: the autoregressive property on the real layers, exact sampling, bad inputs."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import zoo
from tests.goldens import binary_images
from zoo import distributions
from zoo.layers import GatedPixelCNNBlock, MaskedConv2D, PixelCNN
from zoo.layers.masked_conv2d import causal_mask


def dependence(fn, x):
    """`[H, W, H, W]` bools: does output pixel (i, j) (any channel) depend on input pixel (i', j') (any channel)?"""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)  # [1, H, W, C_out]
    jacobian = tape.jacobian(y, x)  # [1, H, W, C_out, 1, H, W, C_in]; None when y ignores x
    jacobian = np.zeros(y.shape + x.shape) if jacobian is None else np.abs(jacobian.numpy())
    return jacobian.sum(axis=(0, 3, 4, 7)) > 0


def window(height, width, rows, columns):
    """`[H, W, H, W]` bools: (i', j') with i' - i in `rows(i)` and j' - j in `columns(i, i')` (inclusive ranges)."""
    out = np.zeros((height, width, height, width), bool)
    for i, j, k, l in itertools.product(range(height), range(width), range(height), range(width)):
        low, high = rows
        if low <= k - i <= high:
            c_low, c_high = columns(k - i)
            out[i, j, k, l] = c_low <= l - j <= c_high
    return out


def raster_after(height, width, inclusive):
    """`[H, W, H, W]` bools: (i', j') at (if `inclusive`) or after (i, j) in raster order."""
    index = np.arange(height * width).reshape(height, width)
    later = index[None, None] > index[:, :, None, None]
    return later | (index[None, None] == index[:, :, None, None]) if inclusive else later


def random_image(shape, seed=0):
    return np.random.default_rng(seed).normal(size=(1, *shape)).astype(np.float32)


# The autoregressive property ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [(3, 5), (5, 5), (1, 3)])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv2d_sees_exactly_its_masked_window(kernel_size, mask_type):
    height, width = 7, 6
    conv = MaskedConv2D(3, kernel_size, mask_type=mask_type)
    seen = dependence(conv, random_image((height, width, 2)))
    mask = causal_mask(kernel_size, mask_type)
    kh, kw = kernel_size[0] // 2, kernel_size[1] // 2
    expected = np.zeros_like(seen)
    for i, j, di, dj in itertools.product(range(height), range(width), range(-kh, kh + 1), range(-kw, kw + 1)):
        if 0 <= i + di < height and 0 <= j + dj < width:
            expected[i, j, i + di, j + dj] = mask[di + kh, dj + kw] > 0
    np.testing.assert_array_equal(seen, expected)
    assert not np.any(seen & raster_after(height, width, inclusive=mask_type == "A"))
    centre = seen[np.arange(height), :, np.arange(height)][:, np.arange(width), np.arange(width)]
    assert np.all(centre) == (mask_type == "B")


def test_first_gated_block_reads_only_pixels_before_in_each_stack():
    height, width, r = 6, 7, 1
    block = GatedPixelCNNBlock(4, kernel_size=3, mask_type="A", condition_channels=2, seed=0)
    condition = tf.constant(random_image((height, width, 2), seed=1))
    vertical = dependence(lambda x: block([x, x, condition])[0], random_image((height, width, 2)))
    horizontal = dependence(lambda x: block([x, x, condition])[1], random_image((height, width, 2)))
    rows_above = window(height, width, (-1 - r, -1), lambda di: (-r, r))
    np.testing.assert_array_equal(vertical, rows_above)  # v: rows above only
    np.testing.assert_array_equal(horizontal, rows_above | window(height, width, (0, 0), lambda di: (-r, -1)))
    assert not np.any(horizontal & raster_after(height, width, inclusive=True))


def test_later_gated_block_keeps_the_stacks_causal():
    height, width, r = 6, 7, 2
    block = GatedPixelCNNBlock(3, kernel_size=5, mask_type="B", seed=0)
    v, h = random_image((height, width, 3)), random_image((height, width, 3), seed=1)
    h_from_h = dependence(lambda t: block([tf.constant(v), t])[1], h)
    h_from_v = dependence(lambda t: block([t, tf.constant(h)])[1], v)
    v_from_v = dependence(lambda t: block([t, tf.constant(h)])[0], v)
    np.testing.assert_array_equal(h_from_h, window(height, width, (0, 0), lambda di: (-r, 0)))  # mask B: (i, j) too
    # v at row i holds only image rows < i, so h may read all of v's rows up to i, on both sides of j.
    np.testing.assert_array_equal(h_from_v, window(height, width, (-r, 0), lambda di: (-r, r)))
    np.testing.assert_array_equal(v_from_v, window(height, width, (-r, 0), lambda di: (-r, r)))


def pixelcnn_receptive_field(height, width, kernel_size, num_blocks):
    """The pixels a PixelCNN's output at (i, j) must read: every pixel before it within L r (r = k // 2) rows and
    columns, i.e. rows i - 1 - L r .. i - 1 at columns j -+ L r and row i at columns j - L r .. j - 1."""
    reach = num_blocks * (kernel_size // 2)
    return window(height, width, (-1 - reach, -1), lambda di: (-reach, reach)) | window(
        height, width, (0, 0), lambda di: (-reach, -1)
    )


@pytest.mark.parametrize(
    "kernel_size, num_blocks, condition_shape",
    [(3, 2, None), (3, 3, (3, 4, 2)), (5, 1, (5,))],
)
def test_pixelcnn_output_depends_on_every_earlier_pixel_in_its_field_and_no_other(kernel_size, num_blocks, condition_shape):
    height, width = 6, 8
    pixelcnn = PixelCNN((height, width, 2), filters=4, num_blocks=num_blocks, kernel_size=kernel_size,
                        condition_shape=condition_shape, seed=0)
    condition = None if condition_shape is None else tf.constant(random_image(condition_shape, seed=2))
    logits = lambda x: pixelcnn(x if condition is None else [x, condition])["logits"]  # noqa: E731
    seen = dependence(logits, random_image((height, width, 2)))
    assert not np.any(seen & raster_after(height, width, inclusive=True))  # nothing at or after (i, j)
    np.testing.assert_array_equal(seen, pixelcnn_receptive_field(height, width, kernel_size, num_blocks))  # no blind spot


def test_without_the_concatenation_nothing_reads_the_image():
    pixelcnn = PixelCNN((5, 5, 1), filters=4, num_blocks=2, condition_shape=(3,), concatenate_input=False, seed=0)
    condition = tf.constant(random_image((3,), seed=1))
    assert not np.any(dependence(lambda x: pixelcnn([x, condition])["logits"], random_image((5, 5, 1))))
    greedy = pixelcnn.generate(condition)
    np.testing.assert_array_equal(greedy["image"], tf.cast(greedy["logits"] > 0, tf.float32))


# Sampling --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "logistic_mixture"])
def test_the_greedy_image_is_a_fixed_point_of_the_teacher_forced_pass(likelihood):
    # The loop computes each pixel's parameters from the vertical stacks of the image so far and the one-row
    # horizontal stacks; the greedy image equals its own rounded teacher-forced means only if those are the
    # parameters of the full pass at every pixel.
    pixelcnn = PixelCNN((4, 5, 2), likelihood, filters=6, num_blocks=2, condition_shape=(2, 5, 3), num_mixtures=3, seed=1)
    condition = tf.constant(np.random.default_rng(0).normal(size=(3, 2, 5, 3)).astype(np.float32))
    greedy = pixelcnn.generate(condition)
    image = greedy["image"]
    forced = pixelcnn([image, condition])
    if likelihood == "bernoulli":
        np.testing.assert_array_equal(image, tf.cast(forced["logits"] > 0, tf.float32))
        assert 0 < np.mean(image) < 1
    elif likelihood == "gaussian":
        np.testing.assert_allclose(image, forced["mean"], atol=1e-5)
    else:
        np.testing.assert_allclose(image, np.round(forced["mean"].numpy() * 255) / 255, atol=1e-6)
    for key in forced:
        np.testing.assert_allclose(greedy[key], forced[key], atol=1e-6)
    drawn = pixelcnn.generate(condition, seed=[4, 2])["image"]
    np.testing.assert_array_equal(drawn, pixelcnn.generate(condition, seed=[4, 2])["image"])
    assert not np.array_equal(drawn, pixelcnn.generate(condition, seed=[4, 3])["image"])


ALL_2x2_IMAGES = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32).reshape(16, 2, 2, 1)


def assert_frequencies_match(samples, probabilities):
    """Counts of the 16 images in `samples` against `probabilities`: a chi-square test and 5 binomial s.e. each."""
    codes = (samples.reshape(-1, 4) @ (2 ** np.arange(3, -1, -1))).astype(int)  # the row of ALL_2x2_IMAGES
    counts = np.bincount(codes, minlength=16)
    n = len(codes)
    frequencies = counts / n
    standard_error = np.sqrt(probabilities * (1 - probabilities) / n)
    assert np.all(np.abs(frequencies - probabilities) <= 5 * standard_error), (frequencies, probabilities)
    assert stats.chisquare(counts, n * probabilities / probabilities.sum()).pvalue > 1e-4


def test_tiny_pixelcnn_draws_the_exact_distribution_it_assigns():
    pixelcnn = PixelCNN((2, 2, 1), filters=8, num_blocks=2, condition_shape=(3,), seed=3)
    pixelcnn.build(None)
    kernel, bias = pixelcnn.head_output.get_weights()
    pixelcnn.head_output.set_weights([8.0 * kernel, bias])  # a peaked, uneven distribution over the 16 images
    condition = tf.constant([[0.5, -1.0, 2.0]])
    log_p = distributions.log_likelihood(
        "bernoulli", pixelcnn([ALL_2x2_IMAGES, tf.tile(condition, [16, 1])]), ALL_2x2_IMAGES, 3
    ).numpy().astype(np.float64)
    probabilities = np.exp(log_p)
    np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)
    assert probabilities.max() > 3 * probabilities.min()
    samples = pixelcnn.generate(tf.tile(condition, [20_000, 1]), seed=[7, 1])["image"].numpy()
    assert_frequencies_match(samples, probabilities)


def test_tiny_pixelvae_samples_and_likelihood_at_k_5000_match_its_exact_marginal():
    # One latent dimension: p(x) = integral N(z; 0, 1) p(x | z) dz is a quadrature over a grid of z.
    model = zoo.VAE(input_shape=(2, 2, 1), hidden_units=(8,), latent_dim=1, batch_norm=False, decoder_type="pixelcnn",
                    pixelcnn_filters=4, pixelcnn_blocks=1, seed=0)
    kernel, bias = model.observation.head_output.get_weights()
    model.observation.head_output.set_weights([4.0 * kernel, bias])
    z, step = np.linspace(-8.0, 8.0, 1601, dtype=np.float32), 16.0 / 1600
    features = tf.repeat(model.decoder(z[:, None]), 16, axis=0)  # [Z * 16, F]: every image at every z
    images = np.tile(ALL_2x2_IMAGES, (len(z), 1, 1, 1))
    log_px_z = distributions.log_likelihood("bernoulli", model.observation([images, features]), images, 3)
    joint = np.exp(log_px_z.numpy().reshape(len(z), 16).astype(np.float64)) * stats.norm.pdf(z)[:, None]
    exact = joint.sum(axis=0) * step
    np.testing.assert_allclose(exact.sum(), 1.0, atol=1e-5)
    # q(z | x) = N(0, 1), the prior: bounded importance weights p(x | z), so k = 5000 pins p(x) to about 1%.
    for head in (model.posterior.mean_head, model.posterior.log_variance_head):
        head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    model.rows_per_chunk = 16 * 1000  # k = 5000 in 5 chunks
    estimate = np.exp(model.log_likelihood(ALL_2x2_IMAGES, num_samples=5000, seed=1).numpy().astype(np.float64))
    np.testing.assert_allclose(estimate, exact, rtol=0.05)
    samples = model.sample(20_000, seed=3).numpy()
    assert set(np.unique(samples)) <= {0.0, 1.0}
    assert_frequencies_match(samples, exact)


def test_logistic_mixture_draws_match_its_256_probabilities():
    logits = tf.constant([[1.0, 0.0, -0.5]])
    means = tf.constant([[-0.9, 0.2, 0.95]])
    log_scales = tf.constant([[-3.0, -1.0, -5.0]])
    values = tf.range(256, dtype=tf.float32)[:, None] / 255  # [256, 1]: every 8-bit value of one channel
    probabilities = np.exp(distributions.discretized_logistic_mixture_log_prob(
        tf.tile(logits[None], [256, 1, 1]), tf.tile(means[None], [256, 1, 1]), tf.tile(log_scales[None], [256, 1, 1]),
        values,
    ).numpy()[:, 0].astype(np.float64))
    np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)
    n = 100_000
    draws = distributions.discretized_logistic_mixture_sample(
        tf.tile(logits[None], [n, 1, 1]), tf.tile(means[None], [n, 1, 1]), tf.tile(log_scales[None], [n, 1, 1]), [5, 6]
    ).numpy()[:, 0]
    k = np.round(draws * 255).astype(int)
    np.testing.assert_allclose(draws, k / 255, atol=1e-7)
    # 16 bins of 16 values (each expected well above 5 draws)
    counts = np.bincount(k // 16, minlength=16)
    expected = n * probabilities.reshape(16, 16).sum(axis=1) / probabilities.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-4, (counts, expected)


def test_pixel_decoders_sample_reproducibly_and_decode_greedily():
    model = zoo.VAE(input_shape=(4, 3, 1), hidden_units=(8,), latent_dim=2, decoder_type="pixelcnn",
                    pixelcnn_filters=4, pixelcnn_blocks=2, seed=0)
    first = model.sample(6, seed=1).numpy()
    np.testing.assert_array_equal(first, model.sample(6, seed=1))
    assert not np.array_equal(first, model.sample(6, seed=2))
    assert set(np.unique(first)) <= {0.0, 1.0}
    # Temperature scales the latent prior; the pixels are still drawn from p(x | z).
    assert set(np.unique(model.sample(50, seed=1, temperature=0.0))) == {0.0, 1.0}
    decoded = model.decode(np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(decoded["image"], model.decode(np.zeros((2, 2), np.float32))["image"])
    np.testing.assert_array_equal(decoded["image"], tf.cast(decoded["logits"] > 0, tf.float32))
    # reconstruct: the conditional means given x's earlier pixels, as in the bound's teacher-forced pass. With the
    # posterior mean pinned to z0, teacher forcing on decode(z0)'s greedy image gives decode's own pixel means.
    z0 = np.array([0.3, -0.2], np.float32)
    model.posterior.mean_head.set_weights([np.zeros((8, 2), np.float32), z0])
    greedy = model.decode(np.stack([z0, z0]))
    np.testing.assert_allclose(model.reconstruct(greedy["image"]), greedy["mean"], rtol=1e-5, atol=1e-6)
    # A pixel's own value and later ones never reach its mean: flipping the last pixel changes nothing.
    x = binary_images((3, 4, 3, 1))
    flipped = x.copy()
    flipped[:, -1, -1] = 1 - flipped[:, -1, -1]
    np.testing.assert_allclose(model.reconstruct(flipped), model.reconstruct(x), rtol=1e-6)
    assert np.abs(model.reconstruct(1 - x) - model.reconstruct(x)).max() > 1e-3  # earlier pixels do reach it


# Presets ---------------------------------------------------------------------------------------------------------


def test_pixelvae_presets_build_and_the_ablation_drops_only_the_image_input():
    pixelvae = zoo.models.LatentVariableModel.from_preset("pixelvae_mnist")
    assert isinstance(pixelvae, zoo.VAE) and isinstance(pixelvae.observation, PixelCNN)
    assert pixelvae.observation.num_blocks == 5 and pixelvae.observation.filters == 32
    with_image = zoo.NVAE.from_preset("pixelvae_hierarchical_mnist")
    without = zoo.NVAE.from_preset("pixelvae_hierarchical_mnist_no_concatenation")
    assert with_image.num_groups == 4 and with_image.pixelcnn.condition_shape == (28, 28, 16)
    differences = {k for k, v in with_image.get_config().items() if without.get_config()[k] != v}
    assert differences == {"concatenate_input", "name"}
    # The first block's two input kernels lose the image's channel: (2 x 3 + 1 x 3) x 1 x 64 weights.
    assert with_image.count_params() - without.count_params() == (2 * 3 + 3) * 64
    trainable = lambda model: sum(int(np.prod(w.shape)) for w in model.trainable_weights)  # noqa: E731
    assert (trainable(pixelvae), trainable(with_image)) == (1_528_001, 593_349)
    for name in ("pixelvae_mnist", "pixelvae_hierarchical_mnist", "pixelvae_hierarchical_mnist_no_concatenation"):
        assert zoo.presets.PRESETS[name]["reference"].startswith("Gulrajani et al. 2017")


# Bad inputs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: MaskedConv2D(2, 3, mask_type="C"), r"mask_type must be one of \('A', 'B'\), got 'C'"),
        (lambda: MaskedConv2D(2, (2, 3)), r"MaskedConv2D needs an odd kernel_size \(a centre pixel\), got \(2, 3\)"),
        (lambda: MaskedConv2D(2, 3, padding="valid"), "MaskedConv2D needs padding='same'"),
        (lambda: MaskedConv2D(2, 3, strides=2), r"MaskedConv2D needs strides=\(1, 1\)"),
        (lambda: GatedPixelCNNBlock(4, kernel_size=4), "kernel_size must be odd"),
        (lambda: GatedPixelCNNBlock(4, mask_type="b"), "mask_type must be one of"),
        (lambda: GatedPixelCNNBlock(0), "filters must be an int >= 1, got 0"),
        (lambda: PixelCNN((28, 28)), r"PixelCNN needs event_shape \(height, width, channels\), got \(28, 28\)"),
        (lambda: PixelCNN((8, 8, 1), likelihood="categorical"), r"likelihood must be one of \('bernoulli', 'gaussian'"),
        (lambda: PixelCNN((8, 8, 1), concatenate_input=False), "concatenate_input=False leaves the PixelCNN without inputs"),
        (lambda: PixelCNN((8, 8, 1), concatenate_input="no", condition_shape=(2,)), "concatenate_input must be a bool"),
        (lambda: PixelCNN((8, 8, 1), condition_shape=(3, 3, 2)), r"divide the image's \(8, 8\), got \(3, 3, 2\)"),
        (lambda: PixelCNN((8, 8, 1), condition_shape=(2, 2)), "condition_shape must be None, .features,. or"),
        (lambda: PixelCNN((8, 8, 1), num_blocks=0), "num_blocks must be an int >= 1"),
        (lambda: zoo.VAE(input_shape=(8, 8, 1), decoder_type="pixel"), r"decoder_type must be one of \('factorized', 'pixelcnn'\)"),
        (lambda: zoo.NVAE(input_shape=(8, 8, 1), decoder_type="autoregressive"), "decoder_type must be one of"),
        (lambda: zoo.VAE(input_shape=(8, 8, 1), concatenate_input=1), "concatenate_input must be a bool, got 1"),
        (lambda: zoo.VAE(input_shape=(64,), decoder_type="pixelcnn"), r"PixelCNN needs event_shape \(height, width, channels\)"),
        (lambda: zoo.VAE(input_shape=(8, 8, 1), decoder_type="pixelcnn", pixelcnn_kernel_size=2), "kernel_size must be an int >= 3"),
        (lambda: zoo.VAE(input_shape=(8, 8, 1), decoder_type="pixelcnn", pixelcnn_filters=-1), "pixelcnn_filters must be an int >= 1"),
    ],
)
def test_bad_constructor_arguments_raise_value_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_generate_calls_raise_value_errors():
    conditioned = PixelCNN((4, 4, 1), filters=4, num_blocks=1, condition_shape=(3,), seed=0)
    with pytest.raises(ValueError, match=r"this PixelCNN is conditioned on \(3,\): generate needs a condition"):
        conditioned.generate(seed=[1, 2])
    with pytest.raises(ValueError, match=r"condition must have shape \[N, 3\], got \(2, 4\)"):
        conditioned.generate(np.zeros((2, 4), np.float32))
    unconditioned = PixelCNN((4, 4, 1), filters=4, num_blocks=1, seed=0)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        unconditioned.generate(num_samples=0)
    assert unconditioned.generate(num_samples=3, seed=[1, 1])["image"].shape == (3, 4, 4, 1)


def test_pixel_models_reject_bad_inputs():
    model = zoo.VAE(input_shape=(4, 4, 1), hidden_units=(8,), latent_dim=2, decoder_type="pixelcnn",
                    pixelcnn_filters=4, pixelcnn_blocks=1, seed=0)
    x = binary_images((2, 4, 4, 1))
    with pytest.raises(ValueError, match="Bernoulli likelihood expects x binary"):
        model.reconstruct(x * 0.5)
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 4, 4, 1\], got shape \[2, 16\]"):
        model.log_likelihood(x.reshape(2, 16), num_samples=3)
    with pytest.raises(ValueError, match=r"z must be float latents of shape \[N, 2\]"):
        model.decode(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        model.sample(0)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        model.sample(2, temperature=-1.0)
    assert math.isfinite(float(model.log_likelihood(x, num_samples=3, seed=0)[0]))
