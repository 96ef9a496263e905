import math

import keras
import tensorflow as tf

from zoo import validation
from zoo.layers.conv_stack import checked_conv_args, conv_feature_shapes
from zoo.layers.dense import Dense


# Its head is one convolution per parameter map; the logistic mixture is not wired in.
SKIP_DECODER_LIKELIHOODS = ("bernoulli", "gaussian")


@keras.saving.register_keras_serializable(package="zoo")
class SkipDecoder(keras.layers.Layer):
    """An up-scaling convolutional decoder that mirrors a `ConvStack`, with optional skip inputs.

    A dense projection of the input vector gives the top map; each ConvStack layer i is
    then undone, from the top down, by a 3x3 Conv2DTranspose with the same stride,
    cropped to the resolution below. With `skip_connections=True` the i-th map of a
    context's ConvStack (e.g. a memory entry's down-scaling path, Bornschein et al. 2017)
    is concatenated before undoing layer i. A 3x3 convolution gives the parameters of
    p(x | ...): Bernoulli `{"logits", "mean"}` or Gaussian `{"mean", "log_variance"}`,
    each `[N, *event_shape]`.

    Args:
        event_shape: tuple `(H, W, C)`, shape of one observation.
        filters: sequence of ints, the mirrored ConvStack's filters. Default `(32, 32, 64, 64, 64, 64)`.
        strides: sequence of ints, the mirrored ConvStack's strides. Default `(1, 2, 1, 2, 1, 2)`.
        activation: str, hidden activation: a Keras activation or one of `zoo.validation.EXTRA_ACTIVATIONS`.
            Default `"relu"`.
        likelihood: `"bernoulli"` or `"gaussian"`. Default `"bernoulli"`.
        skip_connections: bool, whether `call` takes the context's maps. Default `True`.
        seed: int or None, seeds the initial weights. Default `None`.

    Example:

    >>> decoder = SkipDecoder(event_shape=(7, 7, 1), filters=(4, 8), strides=(1, 2))
    >>> skips = ConvStack(filters=(4, 8), strides=(1, 2))(keras.ops.ones((2, 7, 7, 1)))
    >>> decoder(keras.ops.ones((2, 3)), skips)["logits"].shape
    TensorShape([2, 7, 7, 1])
    """

    def __init__(
        self,
        event_shape,
        filters=(32, 32, 64, 64, 64, 64),
        strides=(1, 2, 1, 2, 1, 2),
        activation="relu",
        likelihood="bernoulli",
        skip_connections=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if likelihood not in SKIP_DECODER_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {SKIP_DECODER_LIKELIHOODS}, got {likelihood!r}")
        self.event_shape = validation.positive_ints("event_shape", event_shape)
        if len(self.event_shape) != 3:
            raise ValueError(f"event_shape must be (height, width, channels), got {event_shape!r}")
        self.filters, self.strides = checked_conv_args(filters, strides)
        self.activation = activation
        self.likelihood = likelihood
        self.skip_connections = validation.boolean("skip_connections", skip_connections)
        self.seed = validation.constructor_seed(seed)
        self.map_shapes = conv_feature_shapes(self.event_shape, self.filters, self.strides)
        initializer = lambda i: keras.initializers.GlorotUniform(validation.derived_seed(self.seed, i))  # noqa: E731
        activation_fn = validation.activation(activation)
        self.projection = Dense(
            math.prod(self.map_shapes[-1]), activation=activation_fn, kernel_initializer=initializer(0), name="projection"
        )
        self.up_layers = [
            keras.layers.Conv2DTranspose(
                self.filters[max(i - 1, 0)], 3, strides=self.strides[i], padding="same",
                activation=activation_fn, kernel_initializer=initializer(i + 2),
                name=f"conv_transpose_{i}",
            )
            for i in range(len(self.filters))
        ]
        num_params = 1 if likelihood == "bernoulli" else 2
        # float32 under any dtype policy: the head's outputs are the parameters of p(x|z).
        self.head = keras.layers.Conv2D(
            self.event_shape[-1] * num_params, 3, padding="same", kernel_initializer=initializer(1), dtype="float32",
            name="head",
        )

    def build(self, input_shape):
        self.projection.build((None, input_shape[-1]))
        channels = self.map_shapes[-1][-1]
        for i in reversed(range(len(self.filters))):
            height, width, skip_channels = self.map_shapes[i]
            in_channels = channels + (skip_channels if self.skip_connections else 0)
            self.up_layers[i].build((None, height, width, in_channels))
            channels = self.up_layers[i].filters
        self.head.build((None,) + self.event_shape[:2] + (channels,))

    def call(self, inputs, skips=None, skip_rows=None):
        """Decodes `inputs` `[N, D]`; `skips` are the context's maps, one per `ConvStack` layer.

        With `skip_rows` (int `[N]`), `skips` hold the maps of fewer contexts `[M, ...]` and row
        n decodes with context `skip_rows[n]` (VMA: many reads of few memory entries). An
        up-convolution is linear in its input, so the skip maps' share of it is computed once
        per context and gathered: the same numbers as gathering the maps first.
        """
        if self.skip_connections != (skips is not None):
            raise ValueError(
                f"SkipDecoder(skip_connections={self.skip_connections}) "
                f"{'needs' if self.skip_connections else 'takes no'} skip maps"
            )
        h = tf.reshape(self.projection(inputs), (-1,) + self.map_shapes[-1])
        for i in reversed(range(len(self.filters))):
            layer = self.up_layers[i]
            if skips is None:
                h = layer(h)
            elif skip_rows is None:
                h = layer(tf.concat([h, skips[i]], axis=-1))
            else:
                h = self._up_with_shared_skips(layer, h, skips[i], skip_rows)
            height, width = (self.map_shapes[i - 1] if i > 0 else self.event_shape)[:2]
            h = h[:, :height, :width, :]
        out = self.head(h)
        if self.likelihood == "bernoulli":
            return {"logits": out, "mean": tf.sigmoid(out)}
        mean, log_variance = tf.split(out, 2, axis=-1)
        return {"mean": mean, "log_variance": log_variance}

    @staticmethod
    def _up_with_shared_skips(layer, h, skips, rows):
        """`layer(concat([h, gather(skips, rows)]))` for a `Conv2DTranspose`, its kernel split by input channels."""
        kernel = tf.cast(layer.kernel, h.dtype)  # [3, 3, filters, channels of h + channels of skips]
        channels = h.shape[-1]
        up = lambda v, k: keras.ops.conv_transpose(v, k, layer.strides, padding=layer.padding)  # noqa: E731
        y = up(h, kernel[..., :channels]) + tf.gather(up(tf.cast(skips, h.dtype), kernel[..., channels:]), rows)
        return layer.activation(tf.nn.bias_add(y, tf.cast(layer.bias, h.dtype)))

    def get_config(self):
        return {
            **super().get_config(),
            "event_shape": self.event_shape,
            "filters": self.filters,
            "strides": self.strides,
            "activation": self.activation,
            "likelihood": self.likelihood,
            "skip_connections": self.skip_connections,
            "seed": self.seed,
        }
