"""NVAE's building blocks (Vahdat & Kautz 2020): distributions, KL terms and schedules, cells, regularisers.

Reference values are computed by hand or by an independent route (TFP, NumPy, the authors'
formulas transcribed line by line), never by the function under test.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import distributions, objectives
from zoo.layers import ResidualCell, SpectralNormRegularizer, SqueezeExcitation
from zoo.layers.residual_cell import align_corners_upsampling_matrix
from zoo.layers.spectral_norm_regularizer import conv_kernel_matrix

# Distributions -----------------------------------------------------------------------------


def test_soft_clamp_is_limit_times_tanh():
    x = tf.constant([0.0, 5.0, -10.0, 100.0, 0.01])
    # 5 tanh(1) = 3.80797..., 5 tanh(-2) = -4.82013..., and ~x near 0.
    np.testing.assert_allclose(
        distributions.soft_clamp(x), [0.0, 3.8079707797788, -4.8201379003791, 5.0, 0.0099999933], rtol=1e-6
    )
    np.testing.assert_allclose(distributions.soft_clamp(tf.constant(1.0), limit=2.0), 0.9242343145200195, rtol=1e-6)
    with pytest.raises(ValueError, match="limit must be a positive number, got 0"):
        distributions.soft_clamp(x, limit=0)


def test_residual_normal_shifts_the_prior_then_clamps_and_floors_as_the_authors_normal():
    prior_mean, prior_log_scale = np.array([0.3, 4.0]), np.array([-0.2, 4.5])
    delta_mean, delta_log_scale = np.array([0.5, 3.0]), np.array([0.1, 2.0])
    q = distributions.residual_normal(prior_mean, prior_log_scale, delta_mean, delta_log_scale)
    # mu = 5 tanh((mu_p + dmu) / 5), sigma = exp(5 tanh((log s_p + log ds) / 5)) + 0.01
    np.testing.assert_allclose(q.loc, 5 * np.tanh(np.array([0.8, 7.0]) / 5), rtol=1e-6)
    np.testing.assert_allclose(q.scale, np.exp(5 * np.tanh(np.array([-0.1, 6.5]) / 5)) + 0.01, rtol=1e-6)
    assert q.scale.dtype == tf.float32
    hot = distributions.residual_normal(prior_mean, prior_log_scale, delta_mean, delta_log_scale, temperature=0.5)
    np.testing.assert_allclose(hot.scale, 0.5 * q.scale.numpy(), rtol=1e-6)


def authors_kl_balancer_coeff(num_scales, groups_per_scale, fun):
    """The authors' `utils.kl_balancer_coeff`, transcribed to NumPy."""
    parts = []
    for i in range(num_scales):
        g = groups_per_scale[num_scales - i - 1]
        value = {"equal": 1.0, "linear": 2.0**i, "sqrt": np.sqrt(2.0**i), "square": np.square(2.0**i) / g}[fun]
        parts.append(value * np.ones(g))
    coeff = np.concatenate(parts)
    return coeff / coeff.min()


def authors_kl_balancer(kl_all, kl_coeff, alpha_i):
    """The authors' `utils.kl_balancer(kl_all, kl_coeff, kl_balance=True, alpha_i)`, transcribed to NumPy."""
    if kl_coeff < 1.0:
        alpha_i = alpha_i[None]
        kl_coeff_i = np.mean(np.abs(kl_all), axis=0, keepdims=True) + 0.01
        total_kl = np.sum(kl_coeff_i)
        kl_coeff_i = kl_coeff_i / alpha_i * total_kl
        kl_coeff_i = kl_coeff_i / np.mean(kl_coeff_i, axis=1, keepdims=True)
        return kl_coeff * np.sum(kl_all * kl_coeff_i, axis=1), kl_coeff_i[0]
    return kl_coeff * np.sum(kl_all, axis=1), np.ones(kl_all.shape[1])


def test_kl_balance_alpha_is_the_authors_coefficients_in_top_down_order():
    # Two groups at the finest scale, one at the coarsest: top-down [1, 4 / 2, 4 / 2].
    np.testing.assert_allclose(objectives.kl_balance_alpha((2, 1)), [1.0, 2.0, 2.0])
    np.testing.assert_allclose(objectives.kl_balance_alpha((1, 1, 1), "linear"), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(objectives.kl_balance_alpha((1, 1), "sqrt"), [1.0, math.sqrt(2.0)])
    for groups in ((2, 1), (4, 4, 2), (1, 3)):
        for fun in objectives.KL_BALANCE_SCALINGS:
            np.testing.assert_allclose(
                objectives.kl_balance_alpha(groups, fun), authors_kl_balancer_coeff(len(groups), groups, fun), rtol=1e-6
            )
    with pytest.raises(ValueError, match="scaling must be one of"):
        objectives.kl_balance_alpha((2, 1), "cubic")


def test_kl_balance_coefficients_on_a_hand_example():
    kl = np.array([[1.0, 3.0, -2.0], [3.0, 1.0, 6.0]], np.float32)
    alpha = np.array([1.0, 2.0, 2.0], np.float32)
    # m = mean |KL| + 0.01 = [2.01, 2.01, 4.01]; m / alpha = [2.01, 1.005, 2.005], mean 5.02 / 3.
    expected = np.array([2.01, 1.005, 2.005]) / (5.02 / 3)
    np.testing.assert_allclose(objectives.kl_balance_coefficients(kl, alpha), expected, rtol=1e-6)
    np.testing.assert_allclose(objectives.kl_balance_coefficients(kl, alpha), authors_kl_balancer(kl, 0.5, alpha)[1], rtol=1e-6)
    # Without alpha: proportional to m alone.
    np.testing.assert_allclose(objectives.kl_balance_coefficients(kl), np.array([2.01, 2.01, 4.01]) / (8.03 / 3), rtol=1e-6)
    with pytest.raises(ValueError, match=r"alpha must have shape \[3\]"):
        objectives.kl_balance_coefficients(kl, alpha[:2])


def test_balanced_kl_matches_the_authors_balancer_and_stops_gradients_through_the_coefficients():
    rng = np.random.default_rng(1)
    kl = rng.gamma(2.0, size=(5, 4)).astype(np.float32)
    alpha = objectives.kl_balance_alpha((2, 2), "square")
    for beta in (0.3, 1.0):
        expected, _ = authors_kl_balancer(kl, beta, alpha)
        np.testing.assert_allclose(objectives.balanced_kl(kl, beta, alpha), expected, rtol=1e-5)
    kl_tensor = tf.constant(kl)
    with tf.GradientTape() as tape:
        tape.watch(kl_tensor)
        total = tf.reduce_sum(objectives.balanced_kl(kl_tensor, tf.constant(0.3), alpha))
    gamma = authors_kl_balancer(kl, 0.3, alpha)[1]
    np.testing.assert_allclose(tape.gradient(total, kl_tensor), np.broadcast_to(0.3 * gamma, kl.shape), rtol=1e-5)


def test_kl_warmup_is_the_authors_kl_coeff():
    def authors(step, total_step, constant_step, min_kl_coeff):
        return max(min((step - constant_step) / total_step, 1.0), min_kl_coeff)

    for step in (0, 1, 50, 99, 100, 250):
        np.testing.assert_allclose(objectives.kl_warmup(step, 100, 1e-4), authors(step, 100, 0, 1e-4), rtol=1e-6)
        np.testing.assert_allclose(objectives.kl_warmup(tf.constant(step), 100, 0.0), min(step / 100, 1.0), rtol=1e-6)
    np.testing.assert_allclose(objectives.kl_warmup(50, 100, 1e-4), 0.5)
    with pytest.raises(ValueError, match="warmup_steps must be a positive number, got 0"):
        objectives.kl_warmup(3, 0)


def test_batch_norm_scale_penalty():
    penalty = objectives.batch_norm_scale_penalty([tf.constant([1.0, -3.0]), tf.constant([0.5, 0.2, -0.1])])
    np.testing.assert_allclose(penalty, 3.5)
    assert objectives.batch_norm_scale_penalty([]).numpy() == 0.0


# Layers --------------------------------------------------------------------------------------

def maps(shape=(2, 8, 8, 8), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def test_squeeze_excitation_on_a_constant_input_is_a_hand_computed_gate():
    channel_values = np.linspace(-1.0, 2.0, 8).astype(np.float32)
    x = np.broadcast_to(channel_values, (3, 4, 4, 8)).copy()
    se = SqueezeExcitation(seed=0)
    out = se(x).numpy()
    assert se.hidden_units == 4  # max(8 // 16, 4)
    w1, b1 = se.squeeze.kernel.numpy(), se.squeeze.bias.numpy()
    w2, b2 = se.excite.kernel.numpy(), se.excite.bias.numpy()
    gate = sigmoid(np.maximum(channel_values @ w1 + b1, 0.0) @ w2 + b2)  # the mean of a constant map is the constant
    np.testing.assert_allclose(out, x * gate, rtol=1e-5, atol=1e-6)
    wide = SqueezeExcitation(seed=0)
    wide.build((None, 2, 2, 128))
    assert wide.hidden_units == 8 and wide.excite.kernel.shape == (8, 128)


@pytest.mark.parametrize("cell_type", ["encoder", "decoder"])
@pytest.mark.parametrize(
    "kwargs, in_channels, expected",
    [
        (dict(filters=8), 8, (2, 8, 8, 8)),
        (dict(filters=16, stride=2), 8, (2, 4, 4, 16)),
        (dict(filters=4, upsample=True), 8, (2, 16, 16, 4)),
    ],
)
def test_residual_cell_shapes(cell_type, kwargs, in_channels, expected):
    cell = ResidualCell(cell_type=cell_type, seed=0, **kwargs)
    x = maps((2, 8, 8, in_channels))
    assert tuple(cell(x).shape) == expected
    assert tuple(cell(x, training=True).shape) == expected
    assert cell.compute_output_shape((2, 8, 8, in_channels)) == expected
    assert tuple(keras.ops.shape(ResidualCell(cell_type=cell_type, **kwargs)(keras.Input((8, 8, in_channels))))[1:]) == expected[1:]


def test_residual_cell_sub_layers_follow_the_authors_cells():
    encoder = ResidualCell(filters=8, seed=0)
    encoder.build((None, 8, 8, 8))
    assert [tuple(c.kernel.shape) for c in encoder.branch_convs] == [(3, 3, 8, 8), (3, 3, 8, 8)]
    decoder = ResidualCell(filters=8, cell_type="decoder", expansion=6, seed=0)
    decoder.build((None, 8, 8, 8))
    # 1x1 expand to 6 C = 48, 5x5 depthwise, 1x1 project; BN before, between and after.
    assert [tuple(c.kernel.shape) for c in decoder.branch_convs] == [(1, 1, 8, 48), (5, 5, 48, 1), (1, 1, 48, 8)]
    assert len(decoder.batch_norm_scales()) == 4 and len(encoder.batch_norm_scales()) == 2
    reduce = ResidualCell(filters=10, stride=2, seed=0)
    reduce.build((None, 8, 8, 5))
    assert [c.filters for c in reduce.skip_convs] == [2, 2, 2, 4]  # C // 4 three times, the rest last


def zero_branch(cell):
    """Zeroes the last operation of the branch: the encoder's last conv, the decoder's last BN's scale and shift."""
    if cell.cell_type == "encoder":
        cell.conv_1.kernel.assign(tf.zeros_like(cell.conv_1.kernel))
        cell.conv_1.bias.assign(tf.zeros_like(cell.conv_1.bias))
    else:
        cell.bn_3.gamma.assign(tf.zeros_like(cell.bn_3.gamma))
        cell.bn_3.beta.assign(tf.zeros_like(cell.bn_3.beta))


@pytest.mark.parametrize("cell_type", ["encoder", "decoder"])
def test_a_stride_1_cell_with_a_zero_branch_is_the_identity(cell_type):
    x = maps()
    cell = ResidualCell(filters=8, cell_type=cell_type, seed=0)
    cell(x)
    assert not np.allclose(cell(x), x, atol=1e-3)
    zero_branch(cell)
    np.testing.assert_array_equal(cell(x, training=True), x)


@pytest.mark.parametrize("cell_type", ["encoder", "decoder"])
def test_a_stride_2_cell_with_a_zero_branch_is_the_factorized_reduce(cell_type):
    x = maps((2, 8, 8, 6))
    cell = ResidualCell(filters=8, cell_type=cell_type, stride=2, seed=0)
    cell(x)
    zero_branch(cell)
    h = silu(x)
    shifted = [h[:, 0::2, 0::2], h[:, 1::2, 1::2], h[:, 0::2, 1::2], h[:, 1::2, 0::2]]  # 1x1 stride-2 taps
    expected = np.concatenate(
        [s @ conv.kernel.numpy()[0, 0] + conv.bias.numpy() for conv, s in zip(cell.skip_convs, shifted)], axis=-1
    )
    np.testing.assert_allclose(cell(x), expected, rtol=1e-5, atol=1e-5)


def test_align_corners_upsampling_matrix_by_hand():
    # 2 -> 4 pixels with aligned corners reads positions 0, 1/3, 2/3, 1.
    np.testing.assert_allclose(align_corners_upsampling_matrix(2), [[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]])
    np.testing.assert_allclose(align_corners_upsampling_matrix(1), [[1], [1]])


@pytest.mark.parametrize("cell_type", ["encoder", "decoder"])
def test_an_upsampling_cell_with_a_zero_branch_is_bilinear_upsampling_and_a_1x1_conv(cell_type):
    x = maps((2, 4, 6, 8))
    cell = ResidualCell(filters=4, cell_type=cell_type, upsample=True, seed=0)
    cell(x)
    zero_branch(cell)
    upsampled = tf.compat.v1.image.resize_bilinear(x, (8, 12), align_corners=True).numpy()  # the authors' UpSample
    expected = upsampled @ cell.skip_convs[0].kernel.numpy()[0, 0]
    np.testing.assert_allclose(cell(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell_type", ["encoder", "decoder"])
def test_the_branch_enters_the_sum_scaled_by_residual_scale(cell_type):
    x = maps()
    small = ResidualCell(filters=8, cell_type=cell_type, seed=3)
    full = ResidualCell(filters=8, cell_type=cell_type, residual_scale=1.0, seed=3)
    assert small.residual_scale == 0.1
    branch = full(x).numpy() - x
    assert np.abs(branch).max() > 1e-2
    np.testing.assert_allclose(small(x).numpy() - x, 0.1 * branch, rtol=1e-4, atol=1e-6)


def test_residual_cell_under_mixed_precision_computes_in_float16_with_float32_weights():
    for kwargs in (dict(filters=16, stride=2), dict(filters=4, cell_type="decoder", upsample=True)):
        cell = ResidualCell(dtype="mixed_float16", seed=0, **kwargs)
        out = cell(maps(), training=True)
        assert out.dtype == tf.float16
        assert {w.dtype for w in cell.weights} == {"float32"}
        reference = ResidualCell(seed=0, **kwargs)(maps(), training=True)
        np.testing.assert_allclose(out.numpy().astype(np.float32), reference, atol=5e-2)


def test_residual_cell_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        ResidualCell(filters=8, stride=3)
    with pytest.raises(ValueError, match="either upsamples or has stride 2"):
        ResidualCell(filters=8, stride=2, upsample=True)
    with pytest.raises(ValueError, match="cell_type must be one of"):
        ResidualCell(filters=8, cell_type="generative")
    with pytest.raises(ValueError, match="filters=8 but the input has 4 channels"):
        ResidualCell(filters=8)(maps((2, 8, 8, 4)))
    with pytest.raises(ValueError, match="even height and width"):
        ResidualCell(filters=8, stride=2)(maps((2, 7, 8, 4)))


def test_residual_cell_keras_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 8)), ResidualCell(filters=16, cell_type="decoder", stride=2, seed=1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(maps(), np.zeros((2, 4, 4, 16), np.float32), verbose=0)  # moves the BN statistics
    model.save(tmp_path / "cell.keras")
    loaded = keras.saving.load_model(tmp_path / "cell.keras")
    np.testing.assert_allclose(loaded(maps(seed=5)), model(maps(seed=5)), rtol=0, atol=0)


# Spectral regularisation --------------------------------------------------------------------


def test_conv_kernel_matrix_is_the_authors_weight_view():
    conv = keras.layers.Conv2D(3, 3)
    conv.build((None, 8, 8, 4))
    kernel = conv.kernel.numpy()  # [kh, kw, in, out]; PyTorch's weight is [out, in, kh, kw]
    np.testing.assert_array_equal(conv_kernel_matrix(conv), kernel.transpose(3, 2, 0, 1).reshape(3, 36))
    depthwise = keras.layers.DepthwiseConv2D(5)
    depthwise.build((None, 8, 8, 6))
    kernel = depthwise.kernel.numpy()  # [kh, kw, in, 1]; PyTorch's weight is [in, 1, kh, kw]
    np.testing.assert_array_equal(conv_kernel_matrix(depthwise), kernel[..., 0].transpose(2, 0, 1).reshape(6, 25))
    with pytest.raises(ValueError, match="got Dense"):
        conv_kernel_matrix(keras.layers.Dense(2))


def test_power_iteration_converges_to_the_largest_singular_values():
    rng = np.random.default_rng(0)
    kernels = [rng.normal(size=(3, 3, 4, 6)).astype(np.float32) for _ in range(2)]
    kernels.append(rng.normal(size=(1, 1, 6, 24)).astype(np.float32))
    matrices = [k.transpose(3, 2, 0, 1).reshape(k.shape[3], -1) for k in kernels]  # the authors' view
    expected = sum(np.linalg.svd(m, compute_uv=False)[0] for m in matrices)
    regularizer = SpectralNormRegularizer(seed=0)
    estimate = regularizer(matrices, training=True)  # 40 iterations the first time
    assert len(regularizer.left_vectors) == 2  # two [6, 36] kernels are iterated as one stack
    np.testing.assert_allclose(estimate, expected, rtol=1e-3)
    for _ in range(10):
        estimate = regularizer(matrices, training=True)  # 4 more each time, from the stored vectors
    np.testing.assert_allclose(estimate, expected, rtol=1e-5)
    assert not regularizer.trainable_weights and regularizer.initialized.numpy()


def test_spectral_regularizer_updates_only_in_training_and_its_gradient_is_u_v_transpose():
    rng = np.random.default_rng(1)
    matrix = tf.constant(rng.normal(size=(5, 7)).astype(np.float32))
    regularizer = SpectralNormRegularizer(num_power_iterations=2, initial_power_iterations=200, seed=1)
    regularizer.build([(5, 7)])
    u_before = regularizer.left_vectors[0].numpy().copy()
    regularizer([matrix], training=False)
    np.testing.assert_array_equal(regularizer.left_vectors[0], u_before)
    assert not regularizer.initialized.numpy()
    with tf.GradientTape() as tape:
        tape.watch(matrix)
        sigma = regularizer([matrix], training=True)
    assert not np.allclose(regularizer.left_vectors[0], u_before)
    u, s, vt = np.linalg.svd(matrix.numpy())
    np.testing.assert_allclose(sigma, s[0], rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(sigma, matrix), np.outer(u[:, 0], vt[0]), atol=1e-4)


def test_spectral_regularizer_on_a_cell_and_under_xla():
    cell = ResidualCell(filters=8, cell_type="decoder", stride=2, seed=0)
    cell.build((None, 8, 8, 4))
    matrices = cell.conv_kernel_matrices()
    assert len(matrices) == 3 + 4  # expand, depthwise, project + four factorized-reduce convolutions
    expected = sum(np.linalg.svd(m.numpy(), compute_uv=False)[0] for m in matrices)
    regularizer = SpectralNormRegularizer(initial_power_iterations=100, seed=0)
    regularizer.build([m.shape for m in matrices])
    step = tf.function(lambda: regularizer(cell.conv_kernel_matrices(), training=True), jit_compile=True)
    np.testing.assert_allclose(step(), expected, rtol=1e-3)
    np.testing.assert_allclose(step(), expected, rtol=1e-3)
