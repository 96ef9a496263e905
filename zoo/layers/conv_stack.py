import keras
import tensorflow as tf

from zoo import validation


def checked_conv_args(filters, strides):
    """`(filters, strides)` as tuples of ints, or a ValueError saying what is wrong."""
    checked_filters = validation.positive_ints("filters", filters)
    checked_strides = tuple(strides)
    if len(checked_strides) != len(checked_filters) or any(
        isinstance(s, bool) or not isinstance(s, int) or s not in (1, 2) for s in checked_strides
    ):
        raise ValueError(
            f"strides must hold one value in {{1, 2}} per layer ({len(checked_filters)} layers), got {strides!r}"
        )
    return checked_filters, checked_strides


def conv_feature_shapes(image_shape, filters, strides):
    """Static `(H, W, C)` of each map of a `ConvStack(filters, strides)` on images `(H, W, C)`."""
    height, width = image_shape[:2]
    shapes = []
    for f, s in zip(filters, strides):
        height, width = -(-height // s), -(-width // s)  # "same" padding rounds up
        shapes.append((height, width, f))
    return shapes


@keras.saving.register_keras_serializable(package="zoo")
class ConvStack(keras.layers.Layer):
    """A down-scaling stack of 3x3 convolutions that returns every layer's feature map.

    Layer i is Conv2D(filters[i], 3x3, stride strides[i], "same") -> activation. All the
    maps are returned (not just the last) so a decoder can take skip connections from
    each resolution, as in the convolutional VMA of Bornschein et al. (2017). Inputs of
    rank > 4 (e.g. importance samples `[K, B, H, W, C]`) are folded to rank 4 and back.

    Args:
        filters: sequence of ints, feature maps per layer. Default `(32, 32, 64, 64, 64, 64)`.
        strides: sequence of ints (1 or 2), one per layer. Default `(1, 2, 1, 2, 1, 2)`.
        activation: str, the activation after each convolution: a Keras activation or one of
            `zoo.validation.EXTRA_ACTIVATIONS`. Default `"relu"`.
        seed: int or None, seeds the initial weights. Default `None`.

    Example:

    >>> stack = ConvStack(filters=(4, 8), strides=(1, 2))
    >>> [tuple(f.shape) for f in stack(keras.ops.ones((2, 7, 7, 1)))]
    [(2, 7, 7, 4), (2, 4, 4, 8)]
    """

    def __init__(
        self, filters=(32, 32, 64, 64, 64, 64), strides=(1, 2, 1, 2, 1, 2), activation="relu", seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters, self.strides = checked_conv_args(filters, strides)
        self.activation = activation
        self.seed = validation.constructor_seed(seed)
        activation_fn = validation.activation(activation)
        self.conv_layers = [
            keras.layers.Conv2D(
                f, 3, strides=s, padding="same", activation=activation_fn,
                kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, i)), name=f"conv_{i}",
            )
            for i, (f, s) in enumerate(zip(self.filters, self.strides))
        ]

    def feature_shapes(self, image_shape):
        """Static `(H, W, C)` of every returned map for images of shape `image_shape` `(H, W, C)`."""
        return conv_feature_shapes(image_shape, self.filters, self.strides)

    def build(self, input_shape):
        shape = (None,) + tuple(input_shape[-3:])
        for conv, out in zip(self.conv_layers, self.feature_shapes(input_shape[-3:])):
            conv.build(shape)
            shape = (None,) + out

    def call(self, inputs):
        if inputs.shape.rank == 4:
            h, unfold = inputs, lambda t: t
        else:
            leading, static_leading = tf.shape(inputs)[:-3], inputs.shape[:-3]
            h = tf.reshape(inputs, tf.concat([[-1], tf.shape(inputs)[-3:]], axis=0))
            unfold = lambda t: tf.ensure_shape(  # noqa: E731
                tf.reshape(t, tf.concat([leading, tf.shape(t)[1:]], axis=0)), static_leading + t.shape[1:]
            )
        maps = []
        for conv in self.conv_layers:
            h = conv(h)
            maps.append(unfold(h))
        return maps

    def compute_output_shape(self, input_shape):
        leading = tuple(input_shape)[:-3]
        return [leading + s for s in self.feature_shapes(tuple(input_shape)[-3:])]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "activation": self.activation,
            "seed": self.seed,
        }
