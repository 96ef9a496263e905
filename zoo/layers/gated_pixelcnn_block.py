import keras
import tensorflow as tf

from zoo import validation
from zoo.layers.masked_conv2d import MASK_TYPES, MaskedConv2D


def gate(pre_activation):
    """tanh(a) * sigmoid(b) of the two channel halves (a, b) of `pre_activation`."""
    a, b = tf.split(pre_activation, 2, axis=-1)
    return tf.tanh(a) * tf.sigmoid(b)


@keras.saving.register_keras_serializable(package="zoo")
class GatedPixelCNNBlock(keras.layers.Layer):
    """One gated PixelCNN layer with separate vertical and horizontal stacks: no blind spot.

    The vertical stack v at row i has seen only rows < i of the image; the horizontal stack h
    at (i, j) only the pixels before (i, j) in raster order. With F = `filters`, k =
    `kernel_size`, r = k // 2, and c the conditioning map (if any):

        v_pre = conv_{(r+1) x k}(v) + V_v c                    (rows i - r .. i of v, columns j - r .. j + r)
        v_out = tanh(v_pre[:F]) * sigmoid(v_pre[F:])
        h_pre = conv_{1 x k, masked}(h) + conv_1x1(v_pre) + V_h c
        h_out = h + conv_1x1(tanh(h_pre[:F]) * sigmoid(h_pre[F:]))

    The vertical convolution is causal over rows (padded above only) and sees the row of v it
    writes, which holds only rows above the image's; the link conv_1x1(v_pre) hands h the
    whole band above, to the right of j as well, which is what removes the blind spot of
    stacked masked convolutions (van den Oord et al. 2016b, Figure 1). The first block (mask
    "A") reads the image in both stacks: its vertical input is shifted down one row, its
    horizontal kernel (a `MaskedConv2D`) hides the centre, and h has no residual; later blocks
    (mask "B") read the previous block's v and h. The horizontal stack's convolutions are one
    row high, so `horizontal` runs on any band of rows (one row while sampling).

    Call with `[v, h]` (the first block: `[x, x]`), plus the conditioning map `[N, H, W,
    condition_channels]` as a third element when `condition_channels` is set; returns
    `[v_out, h_out]`, each `[N, H, W, filters]`.

    Args:
        filters: int, F, channels of each stack's output.
        kernel_size: odd int >= 3, k. Default 3.
        mask_type: `"A"` (the first block, reading the image) or `"B"`. Default `"B"`.
        condition_channels: int or None, channels of the conditioning map (None: unconditional). Default None.
        seed: int or None, seeds the initial weights. Default None.

    Example:

    >>> block = GatedPixelCNNBlock(filters=4, mask_type="A")
    >>> x = keras.ops.ones((2, 5, 5, 1))
    >>> [tuple(t.shape) for t in block([x, x])]
    [(2, 5, 5, 4), (2, 5, 5, 4)]

    References:
        van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
        Generation with PixelCNN Decoders", NIPS 2016, sec. 2.1-2.3.
    """

    def __init__(self, filters, kernel_size=3, mask_type="B", condition_channels=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = validation.positive_int("filters", filters)
        self.kernel_size = validation.positive_int("kernel_size", kernel_size, minimum=3)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre pixel), got {kernel_size!r}")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        self.mask_type = mask_type
        self.condition_channels = (
            None if condition_channels is None else validation.positive_int("condition_channels", condition_channels)
        )
        self.seed = validation.constructor_seed(seed)
        init = lambda i: keras.initializers.GlorotUniform(validation.derived_seed(self.seed, i))  # noqa: E731
        radius = self.kernel_size // 2
        self.vertical_conv = keras.layers.Conv2D(
            2 * self.filters, (radius + 1, self.kernel_size), padding="valid", kernel_initializer=init(0), name="vertical"
        )
        self.horizontal_conv = MaskedConv2D(
            2 * self.filters, (1, self.kernel_size), mask_type=mask_type, kernel_initializer=init(1), name="horizontal"
        )
        self.link = keras.layers.Conv2D(2 * self.filters, 1, kernel_initializer=init(2), name="link")
        self.horizontal_output = keras.layers.Conv2D(self.filters, 1, kernel_initializer=init(3), name="horizontal_output")
        if self.condition_channels is not None:
            self.condition_vertical = keras.layers.Conv2D(
                2 * self.filters, 1, use_bias=False, kernel_initializer=init(4), name="condition_vertical"
            )
            self.condition_horizontal = keras.layers.Conv2D(
                2 * self.filters, 1, use_bias=False, kernel_initializer=init(5), name="condition_horizontal"
            )

    def build(self, input_shape):
        v_shape, h_shape = tuple(input_shape[0]), tuple(input_shape[1])
        radius = self.kernel_size // 2
        # The vertical convolution reads v padded by r rows above and r columns on either side (see `vertical`).
        padded = lambda n, extra: None if n is None else n + extra  # noqa: E731
        self.vertical_conv.build((v_shape[0], padded(v_shape[1], radius), padded(v_shape[2], 2 * radius), v_shape[3]))
        self.horizontal_conv.build(h_shape)
        wide = h_shape[:-1] + (2 * self.filters,)
        self.link.build(wide)
        self.horizontal_output.build(h_shape[:-1] + (self.filters,))
        if self.condition_channels is not None:
            condition_shape = h_shape[:-1] + (self.condition_channels,)
            self.condition_vertical.build(condition_shape)
            self.condition_horizontal.build(condition_shape)

    def condition_terms(self, condition):
        """`(V_v c, V_h c)`, each `[N, H, W, 2 filters]`, or None without conditioning (they do not depend on x)."""
        if self.condition_channels is None:
            return None
        return self.condition_vertical(condition), self.condition_horizontal(condition)

    def vertical(self, v, terms=None):
        """The vertical stack on whole images: `(v_out, link)`, `link` being h's input from v (and c)."""
        radius = self.kernel_size // 2
        shift = 1 if self.mask_type == "A" else 0  # the image's row i stays hidden from the first block
        v = tf.pad(v, [[0, 0], [radius + shift, 0], [radius, radius], [0, 0]])
        if shift:
            v = v[:, :-1]
        pre = self.vertical_conv(v)
        if terms is None:
            return gate(pre), self.link(pre)
        pre += terms[0]
        return gate(pre), self.link(pre) + terms[1]

    def horizontal(self, h, link):
        """The horizontal stack on any band of rows of h, given the same rows of `link`."""
        out = self.horizontal_output(gate(self.horizontal_conv(h) + link))
        return out if self.mask_type == "A" else h + out

    def call(self, inputs):
        v, h = inputs[0], inputs[1]
        terms = self.condition_terms(inputs[2]) if self.condition_channels is not None else None
        v_out, link = self.vertical(v, terms)
        return [v_out, self.horizontal(h, link)]

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[1])[:-1] + (self.filters,)
        return [shape, shape]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "mask_type": self.mask_type,
            "condition_channels": self.condition_channels,
            "seed": self.seed,
        }
