import keras
import numpy as np

MASK_TYPES = ("A", "B")


def causal_mask(kernel_size, mask_type):
    """The `[kh, kw]` 0/1 mask of a PixelCNN kernel: the rows above the centre, and the centre row left of it.

    Mask "A" also zeroes the centre (the pixel being predicted), mask "B" keeps it.
    """
    height, width = kernel_size
    mask = np.zeros((height, width), np.float32)
    mask[: height // 2] = 1.0
    mask[height // 2, : width // 2 + (mask_type == "B")] = 1.0
    return mask


@keras.saving.register_keras_serializable(package="zoo")
class MaskedConv2D(keras.layers.Conv2D):
    """A 2-D convolution whose kernel sees only the pixels before the centre in raster order (PixelCNN).

    The kernel is multiplied by a fixed mask before every convolution: with mask "A" the
    output at (i, j) depends on the input at the pixels (i', j') with i' < i, or i' = i and
    j' < j, inside the kernel's window; mask "B" also lets it see (i, j) itself. A first layer
    reading the image takes mask "A" (the pixel it predicts stays hidden), the layers after it
    mask "B". Channels are not ordered: all channels of a pixel are hidden or seen together
    (the zoo's autoregressive unit is the pixel, see `zoo.layers.PixelCNN`).

    Args:
        filters: int, output channels.
        kernel_size: int or pair of odd ints. A `(1, k)` kernel is the horizontal stack's
            convolution of a gated PixelCNN.
        mask_type: `"A"` or `"B"`. Default `"B"`.
        **kwargs: any other `keras.layers.Conv2D` argument (activation, initialisers, ...);
            `padding` must be `"same"` and `strides` and `dilation_rate` 1, so that output
            (i, j) is centred on input (i, j).

    Example:

    >>> conv = MaskedConv2D(4, 3, mask_type="A")
    >>> conv(keras.ops.ones((2, 5, 5, 1))).shape
    TensorShape([2, 5, 5, 4])

    References:
        van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016, sec. 3.4.
    """

    def __init__(self, filters, kernel_size, mask_type="B", **kwargs):
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        for key, allowed in (("padding", "same"), ("strides", (1, 1)), ("dilation_rate", (1, 1))):
            value = kwargs.get(key, allowed)
            if (tuple(value) if isinstance(value, (list, tuple)) else value) not in (allowed, 1):
                raise ValueError(f"MaskedConv2D needs {key}={allowed!r} (outputs centred on their pixel), got {value!r}")
        kwargs["padding"] = "same"
        super().__init__(filters, kernel_size, **kwargs)
        if any(size % 2 == 0 for size in self.kernel_size):
            raise ValueError(f"MaskedConv2D needs an odd kernel_size (a centre pixel), got {kernel_size!r}")
        self.mask_type = mask_type
        self.kernel_mask = causal_mask(self.kernel_size, mask_type)[:, :, None, None]  # [kh, kw, 1, 1]

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel * keras.ops.cast(self.kernel_mask, kernel.dtype))

    def get_config(self):
        return {**super().get_config(), "mask_type": self.mask_type}
