import math

import keras
import tensorflow as tf

from zoo import validation
from zoo.layers.conv_stack import ConvStack
from zoo.layers.dense import Dense
from zoo.layers.dense_stack import DenseStack

ARCHITECTURES = ("mlp", "conv")


@keras.saving.register_keras_serializable(package="zoo")
class MatchingEmbedding(keras.layers.Layer):
    """Embeds examples `[N, *event_shape]` into a matching space `[N, matching_dim]`.

    The networks h^q (queries) and h^m (memory entries) of variational memory addressing
    (Bornschein et al. 2017): an MLP on the flattened example (`"mlp"`) or a `ConvStack`
    (`"conv"`) followed by a linear map to the matching space. No batch normalization:
    memory entries and queries are embedded in batches of unrelated sizes.

    Args:
        event_shape: tuple of ints, shape of one example.
        matching_dim: int, size of the matching space. Default `128`.
        architecture: `"mlp"` or `"conv"`. Default `"mlp"`.
        hidden_units: tuple of ints, MLP widths (`"mlp"` only). Default `(256, 128)`.
        filters: tuple of ints, conv maps (`"conv"` only). Default `(32, 32, 64, 64, 64, 64)`.
        strides: tuple of ints, conv strides (`"conv"` only). Default `(1, 2, 1, 2, 1, 2)`.
        activation: str, hidden activation. Default `"relu"`.
        projection_initializer: str, initializer of the linear map to the matching space.
            Default `"glorot_uniform"`; `"zeros"` makes the embedding start at 0.
        seed: int or None, seeds the initial weights. Default `None`.

    Example:

    >>> embed = MatchingEmbedding(event_shape=(8, 8, 1), matching_dim=4, hidden_units=(16,))
    >>> embed(keras.ops.ones((3, 8, 8, 1))).shape
    TensorShape([3, 4])
    """

    def __init__(
        self,
        event_shape,
        matching_dim=128,
        architecture="mlp",
        hidden_units=(256, 128),
        filters=(32, 32, 64, 64, 64, 64),
        strides=(1, 2, 1, 2, 1, 2),
        activation="relu",
        projection_initializer="glorot_uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.event_shape = validation.positive_ints("event_shape", event_shape)
        self.matching_dim = validation.positive_int("matching_dim", matching_dim)
        self.architecture = architecture
        self.hidden_units = validation.positive_ints("hidden_units", hidden_units)
        self.filters = validation.positive_ints("filters", filters)
        self.strides = tuple(strides)
        self.activation = activation
        self.projection_initializer = projection_initializer
        self.seed = validation.constructor_seed(seed)
        features_seed = validation.derived_seed(self.seed, 0)
        if architecture == "mlp":
            self.features = DenseStack(self.hidden_units, activation, batch_norm=False, seed=features_seed, name="features")
        else:
            if len(self.event_shape) != 3:
                raise ValueError(f'architecture="conv" needs event_shape (height, width, channels), got {event_shape!r}')
            self.features = ConvStack(self.filters, self.strides, activation, seed=features_seed, name="features")
        initializer = keras.initializers.get(projection_initializer)
        if isinstance(initializer, keras.initializers.GlorotUniform):
            initializer = keras.initializers.GlorotUniform(validation.derived_seed(self.seed, 1))
        self.projection = Dense(self.matching_dim, kernel_initializer=initializer, name="projection")

    def build(self, input_shape):
        if self.architecture == "mlp":
            self.features.build((None, math.prod(self.event_shape)))
            width = self.hidden_units[-1]
        else:
            self.features.build((None,) + self.event_shape)
            width = math.prod(self.features.feature_shapes(self.event_shape)[-1])
        self.projection.build((None, width))

    def call(self, inputs):
        if self.architecture == "mlp":
            h = self.features(tf.reshape(inputs, [-1, math.prod(self.event_shape)]))
        else:
            h = self.features(inputs)[-1]
            h = tf.reshape(h, [-1, math.prod(h.shape[1:])])
        return self.projection(h)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.matching_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "event_shape": self.event_shape,
            "matching_dim": self.matching_dim,
            "architecture": self.architecture,
            "hidden_units": self.hidden_units,
            "filters": self.filters,
            "strides": self.strides,
            "activation": self.activation,
            "projection_initializer": self.projection_initializer,
            "seed": self.seed,
        }
