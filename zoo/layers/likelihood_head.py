import math

import keras
import tensorflow as tf

from zoo import validation
from zoo.layers.dense import Dense

LIKELIHOODS = ("bernoulli", "gaussian")


@keras.saving.register_keras_serializable(package="zoo")
class LikelihoodHead(keras.layers.Layer):
    """Maps decoder features to the parameters of p(x | z), shaped like the data.

    Bernoulli: `{"logits", "mean"}`; Gaussian: `{"mean", "log_variance"}` (both heads
    linear), each `[..., *event_shape]` for features `[..., H]`.

    Args:
        event_shape: tuple of ints, the shape of one observation, e.g. `(28, 28, 1)`.
        likelihood: `"bernoulli"` (binary data) or `"gaussian"` (continuous data). Default `"bernoulli"`.
        seed: int or None, seeds the initial weights. Default `None`.

    Example:

    >>> head = LikelihoodHead(event_shape=(2, 2, 1))
    >>> head(keras.ops.ones((3, 5)))["logits"].shape
    TensorShape([3, 2, 2, 1])
    """

    def __init__(self, event_shape, likelihood="bernoulli", seed=None, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.event_shape = validation.positive_ints("event_shape", event_shape)
        self.likelihood = likelihood
        self.seed = validation.constructor_seed(seed)
        units = math.prod(self.event_shape)
        names = ("logits",) if likelihood == "bernoulli" else ("mean", "log_variance")
        self.heads = {
            name: Dense(units, kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, i)), name=name) for i, name in enumerate(names)
        }

    def build(self, input_shape):
        for head in self.heads.values():
            head.build(input_shape)

    def call(self, inputs):
        shape = tf.concat([tf.shape(inputs)[:-1], self.event_shape], axis=0)
        params = {name: tf.reshape(head(inputs), shape) for name, head in self.heads.items()}
        if self.likelihood == "bernoulli":
            params["mean"] = tf.sigmoid(params["logits"])
        return params

    def get_config(self):
        return {
            **super().get_config(),
            "event_shape": self.event_shape,
            "likelihood": self.likelihood,
            "seed": self.seed,
        }
