import keras
import tensorflow as tf

from zoo import validation
from zoo.layers.dense import Dense


@keras.saving.register_keras_serializable(package="zoo")
class DenseStack(keras.layers.Layer):
    """A stack of fully connected hidden layers: Dense -> [BatchNormalization] -> activation.

    Works on inputs of any rank (the last axis is the feature axis), so importance
    samples `[K, B, D]` pass through without reshaping; batch statistics are then taken
    over all K * B rows.

    Args:
        hidden_units: sequence of ints, the width of each hidden layer. Default `(500, 500)`.
        activation: str, Keras activation applied after each layer. Default `"relu"`.
        batch_norm: bool, batch normalization (with scale and shift) before each
            activation, as in Li et al. (2016). Default `True`.
        seed: int or None, seeds the initial weights (the same seed, the same weights). Default `None`.

    Example:

    >>> stack = DenseStack(hidden_units=(8, 4))
    >>> stack(keras.ops.ones((2, 3))).shape
    TensorShape([2, 4])
    """

    def __init__(self, hidden_units=(500, 500), activation="relu", batch_norm=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = validation.positive_ints("hidden_units", hidden_units)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.seed = validation.constructor_seed(seed)
        self.dense_layers = [
            Dense(
                units,
                kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, i)),
                name=f"dense_{i}",
            )
            for i, units in enumerate(self.hidden_units)
        ]
        self.norm_layers = (
            [keras.layers.BatchNormalization(name=f"batch_norm_{i}") for i in range(len(self.hidden_units))]
            if self.batch_norm
            else []
        )
        self.activation_fn = keras.activations.get(activation)

    def build(self, input_shape):
        shape = (None, input_shape[-1])
        for i, dense in enumerate(self.dense_layers):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.batch_norm:
                self.norm_layers[i].build(shape)

    def call(self, inputs, training=False):
        # Batch normalization wants rank 2: fold leading axes (e.g. [K, B]) into one.
        leading = tf.shape(inputs)[:-1]
        h = tf.reshape(inputs, [-1, inputs.shape[-1]])
        for i, dense in enumerate(self.dense_layers):
            h = dense(h)
            if self.batch_norm:
                h = self.norm_layers[i](h, training=training)
            h = self.activation_fn(h)
        return tf.reshape(h, tf.concat([leading, [self.hidden_units[-1]]], axis=0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.hidden_units[-1],)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "seed": self.seed,
        }
