import keras
import numpy as np
from keras import ops

from zoo import validation
from zoo.layers.spectral_norm_regularizer import conv_kernel_matrix
from zoo.layers.squeeze_excitation import SqueezeExcitation

CELL_TYPES = ("encoder", "decoder")
# NVAE's batch normalization: PyTorch momentum 0.05 (Keras keeps 1 - 0.05 of the old statistics), eps 1e-5.
BN_MOMENTUM = 0.95
BN_EPSILON = 1e-5


def align_corners_upsampling_matrix(size):
    """`[2 * size, size]` bilinear weights of a 2x upsampling with aligned corners (PyTorch `align_corners=True`).

    Output position p reads input position p * (size - 1) / (2 * size - 1), so the first and last
    pixels of input and output coincide.
    """
    position = np.arange(2 * size) * ((size - 1) / (2 * size - 1) if size > 1 else 0.0)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, size - 1)
    fraction = position - low
    matrix = np.zeros((2 * size, size))
    np.add.at(matrix, (np.arange(2 * size), low), 1.0 - fraction)
    np.add.at(matrix, (np.arange(2 * size), high), fraction)
    return matrix


def nearest_upsample(x):
    """2x nearest-neighbour upsampling of NHWC maps."""
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


@keras.saving.register_keras_serializable(package="zoo")
class ResidualCell(keras.layers.Layer):
    """NVAE's residual cell for the encoder or the decoder (generative model), on NHWC maps.

        out = skip(x) + residual_scale * SE(branch(x))          residual_scale = 0.1 as in NVAE

    Encoder (bottom-up) cell, NVAE Fig. 3b (`res_bnswish` x 2):

        branch = BN - Swish - Conv3x3 - BN - Swish - Conv3x3

    Decoder (generative) cell, NVAE Fig. 3a (`mconv_e6k5g0`), an inverted residual with E = expansion:

        branch = BN - Conv1x1 (C -> E C) - BN - Swish - depthwise Conv5x5 - BN - Swish - Conv1x1 (E C -> filters) - BN

    Resampling happens in the branch's first convolution (the 3x3, or the depthwise one) and in
    the skip path, as in the authors' `get_skip_connection`:

        stride 1        skip = identity (filters must equal the input channels)
        stride 2        skip = factorized reduce: Swish, then four 1x1 stride-2 convolutions on x
                        shifted by (0, 0), (1, 1), (0, 1), (1, 0) pixels, concatenated to `filters`
        upsample        skip = bilinear 2x upsampling (aligned corners) - Conv1x1 (C -> filters);
                        the branch starts with a nearest 2x upsampling (decoder: before the first BN;
                        encoder: after the first BN - Swish)

    NVAE doubles the channels when it halves the resolution and halves them when it doubles it;
    `filters` is free here. Stride-2 convolutions pad symmetrically (PyTorch's `padding=k // 2`).

    Differences from the authors' code: convolutions are not weight-normalised, and two shifts
    that batch normalization cancels exactly in training are left out (the bias of the encoder's
    first convolution, the shift of the decoder's first BN, both followed by BN after a linear map).

    Mixed precision: sub-layers take this layer's dtype policy, so they compute in its compute
    dtype and keep float32 variables.

    Args:
        filters: int >= 1, output channels.
        cell_type: `"encoder"` or `"decoder"`. Default `"encoder"`.
        stride: 1 or 2, the branch's (and skip's) spatial stride; 2 halves height and width
            (both must be even). Default 1.
        upsample: bool, double height and width instead (stride must be 1). Default False.
        expansion: positive number, the decoder's channel expansion E (NVAE: 6 in the decoder
            tower, 3 in post-processing). Unused by encoder cells. Default 6.
        kernel_size: odd int or None, the spatial kernel (encoder 3x3, decoder depthwise);
            None gives NVAE's 3 (encoder) or 5 (decoder). Default None.
        squeeze_excitation: bool, gate the branch with `SqueezeExcitation`. Default True.
        residual_scale: float, the branch's weight in the sum. Default 0.1 (NVAE's).
        seed: int or None, seeds the initial weights. Default None.

    Example:

    >>> cell = ResidualCell(filters=8, cell_type="decoder", upsample=True)
    >>> cell(keras.ops.ones((2, 4, 4, 16))).shape
    TensorShape([2, 8, 8, 8])

    References:
        Vahdat & Kautz, "NVAE: A Deep Hierarchical Variational Autoencoder", NeurIPS 2020, sec. 3.1.1
        and Fig. 3; NVlabs/NVAE `model.Cell`, `neural_operations.{BNSwishConv, InvertedResidual,
        FactorizedReduce}`.
    """

    def __init__(
        self, filters, cell_type="encoder", stride=1, upsample=False, expansion=6, kernel_size=None,
        squeeze_excitation=True, residual_scale=0.1, seed=None, **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = validation.positive_int("filters", filters)
        if cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {CELL_TYPES}, got {cell_type!r}")
        self.cell_type = cell_type
        if isinstance(stride, bool) or stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.stride = int(stride)
        self.upsample = validation.boolean("upsample", upsample)
        if self.upsample and self.stride != 1:
            raise ValueError(f"a cell either upsamples or has stride 2, got upsample=True and stride={stride}")
        if isinstance(expansion, bool) or not isinstance(expansion, (int, float)) or not expansion > 0:
            raise ValueError(f"expansion must be a positive number, got {expansion!r}")
        self.expansion = expansion
        if kernel_size is None:
            kernel_size = 3 if cell_type == "encoder" else 5
        if validation.positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the padding keeps maps centred), got {kernel_size!r}")
        self.kernel_size = int(kernel_size)
        self.squeeze_excitation = validation.boolean("squeeze_excitation", squeeze_excitation)
        if isinstance(residual_scale, bool) or not isinstance(residual_scale, (int, float)):
            raise ValueError(f"residual_scale must be a number, got {residual_scale!r}")
        self.residual_scale = float(residual_scale)
        self.seed = validation.constructor_seed(seed)

    # Sub-layers ------------------------------------------------------------------------

    def _conv(self, filters, kernel_size, strides=1, use_bias=False, name=None):
        self._num_seeded += 1
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="valid" if strides == 2 else "same", use_bias=use_bias,
            kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, self._num_seeded)),
            dtype=self.dtype_policy, name=name,
        )

    def _batch_norm(self, name, center=True):
        return keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=center, dtype=self.dtype_policy, name=name
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"ResidualCell takes NHWC feature maps [batch, height, width, channels] with known channels, "
                f"got input shape {tuple(input_shape)}"
            )
        batch, height, width, channels = input_shape
        channels = int(channels)
        if self.stride == 1 and not self.upsample and self.filters != channels:
            raise ValueError(
                f"a stride-1 cell keeps its input's channels (the skip is the identity): filters={self.filters} "
                f"but the input has {channels} channels"
            )
        if self.stride == 2:
            if any(s is not None and s % 2 for s in (height, width)):
                raise ValueError(
                    f"a stride-2 cell needs an even height and width (its factorized-reduce skip), got input shape "
                    f"{tuple(input_shape)}"
                )
            if self.filters < 4:
                raise ValueError(f"a stride-2 cell needs filters >= 4 (four skip convolutions), got {self.filters}")
        if self.upsample and (height is None or width is None):
            raise ValueError(f"an upsampling cell needs a known height and width, got input shape {tuple(input_shape)}")
        self.input_channels = channels
        self._num_seeded = 0
        branch_shape = (batch, height, width, channels)
        if self.upsample:
            branch_shape = (batch, 2 * height, 2 * width, channels)
            self.upsampling_matrices = (align_corners_upsampling_matrix(height), align_corners_upsampling_matrix(width))

        if self.cell_type == "encoder":
            self.bn_0 = self._batch_norm("bn_0")
            self.conv_0 = self._conv(self.filters, self.kernel_size, self.stride, name="conv_0")
            self.bn_1 = self._batch_norm("bn_1")
            self.conv_1 = self._conv(self.filters, self.kernel_size, use_bias=True, name="conv_1")
            self.bn_0.build(input_shape)
            shape = self._build_conv(self.conv_0, branch_shape)
            self.bn_1.build(shape)
            shape = self._build_conv(self.conv_1, shape)
            self.branch_convs = [self.conv_0, self.conv_1]
            self.branch_norms = [self.bn_0, self.bn_1]
        else:
            hidden = int(round(channels * self.expansion))
            self.hidden_channels = hidden
            self.bn_0 = self._batch_norm("bn_0", center=False)
            self.conv_expand = self._conv(hidden, 1, name="conv_expand")
            self.bn_1 = self._batch_norm("bn_1")
            self._num_seeded += 1
            self.conv_depthwise = keras.layers.DepthwiseConv2D(
                self.kernel_size, strides=self.stride, padding="valid" if self.stride == 2 else "same", use_bias=False,
                depthwise_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, self._num_seeded)),
                dtype=self.dtype_policy, name="conv_depthwise",
            )
            self.bn_2 = self._batch_norm("bn_2")
            self.conv_project = self._conv(self.filters, 1, name="conv_project")
            self.bn_3 = self._batch_norm("bn_3")
            self.bn_0.build(branch_shape)
            shape = self._build_conv(self.conv_expand, branch_shape)
            self.bn_1.build(shape)
            shape = self._build_conv(self.conv_depthwise, shape)
            self.bn_2.build(shape)
            shape = self._build_conv(self.conv_project, shape)
            self.bn_3.build(shape)
            self.branch_convs = [self.conv_expand, self.conv_depthwise, self.conv_project]
            self.branch_norms = [self.bn_0, self.bn_1, self.bn_2, self.bn_3]

        if self.squeeze_excitation:
            self.squeeze_excitation_layer = SqueezeExcitation(
                seed=validation.derived_seed(self.seed, 100), dtype=self.dtype_policy, name="squeeze_excitation"
            )
            self.squeeze_excitation_layer.build(shape)

        self.skip_convs = []
        if self.stride == 2:
            quarter = self.filters // 4
            widths = [quarter, quarter, quarter, self.filters - 3 * quarter]
            self.skip_convs = [
                self._conv(f, 1, strides=2, use_bias=True, name=f"skip_conv_{i}") for i, f in enumerate(widths)
            ]
            for conv in self.skip_convs:
                conv.build(input_shape)
        elif self.upsample:
            self.skip_convs = [self._conv(self.filters, 1, name="skip_conv")]
            self.skip_convs[0].build(branch_shape)

    def _build_conv(self, conv, shape):
        if conv.strides[0] == 2:
            pad = self.kernel_size // 2 if conv.kernel_size[0] > 1 else 0
            shape = (shape[0], *(None if s is None else s + 2 * pad for s in shape[1:3]), shape[3])
        conv.build(shape)
        return conv.compute_output_shape(shape)

    # Forward pass ----------------------------------------------------------------------

    def _strided(self, conv, h):
        """`conv(h)`, symmetrically padded first when it has stride 2 (PyTorch's `padding=k // 2`)."""
        if conv.strides[0] == 2:
            pad = self.kernel_size // 2
            h = ops.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        return conv(h)

    def _branch(self, x, training):
        if self.cell_type == "encoder":
            h = keras.activations.silu(self.bn_0(x, training=training))
            if self.upsample:
                h = nearest_upsample(h)
            h = self._strided(self.conv_0, h)
            h = keras.activations.silu(self.bn_1(h, training=training))
            return self.conv_1(h)
        h = nearest_upsample(x) if self.upsample else x
        h = self.conv_expand(self.bn_0(h, training=training))  # [B, H, W, E C]
        h = keras.activations.silu(self.bn_1(h, training=training))
        h = self._strided(self.conv_depthwise, h)
        h = keras.activations.silu(self.bn_2(h, training=training))
        return self.bn_3(self.conv_project(h), training=training)

    def _skip(self, x):
        if self.stride == 2:
            h = keras.activations.silu(x)
            shifted = [h, h[:, 1:, 1:, :], h[:, :, 1:, :], h[:, 1:, :, :]]
            return ops.concatenate([conv(s) for conv, s in zip(self.skip_convs, shifted)], axis=-1)
        if self.upsample:
            rows, columns = (ops.cast(m, x.dtype) for m in self.upsampling_matrices)
            h = ops.einsum("ph,bhwc->bpwc", rows, x)
            h = ops.einsum("qw,bpwc->bpqc", columns, h)  # [B, 2H, 2W, C]
            return self.skip_convs[0](h)
        return x

    def call(self, inputs, training=False):
        branch = self._branch(inputs, training)
        if self.squeeze_excitation:
            branch = self.squeeze_excitation_layer(branch)
        return self._skip(inputs) + self.residual_scale * branch

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.stride == 2:
            height, width = (None if s is None else s // 2 for s in (height, width))
        elif self.upsample:
            height, width = (None if s is None else 2 * s for s in (height, width))
        return (batch, height, width, self.filters)

    # Regularisers ----------------------------------------------------------------------

    def conv_kernel_matrices(self):
        """Every convolution kernel of the cell (branch, then skip) as NVAE's spectral regulariser reshapes it."""
        return [conv_kernel_matrix(conv) for conv in self.branch_convs + self.skip_convs]

    def batch_norm_scales(self):
        """The `gamma` of every batch normalization of the cell, for `zoo.objectives.batch_norm_scale_penalty`."""
        return [bn.gamma for bn in self.branch_norms]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "cell_type": self.cell_type,
            "stride": self.stride,
            "upsample": self.upsample,
            "expansion": self.expansion,
            "kernel_size": self.kernel_size,
            "squeeze_excitation": self.squeeze_excitation,
            "residual_scale": self.residual_scale,
            "seed": self.seed,
        }
