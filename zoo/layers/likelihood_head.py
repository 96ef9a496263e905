import math

import keras
import tensorflow as tf

from zoo import distributions, validation
from zoo.layers.dense import Dense

LIKELIHOODS = ("bernoulli", "gaussian", "logistic_mixture")
# The parameter heads of each likelihood, in the order their initial weights are seeded.
HEAD_NAMES = {
    "bernoulli": ("logits",),
    "gaussian": ("mean", "log_variance"),
    "logistic_mixture": ("logits", "means", "log_scales"),
}


@keras.saving.register_keras_serializable(package="zoo")
class LikelihoodHead(keras.layers.Layer):
    """Maps decoder features to the parameters of p(x | z), shaped like the data.

    Bernoulli: `{"logits", "mean"}`; Gaussian: `{"mean", "log_variance"}` (both heads
    linear), each `[..., *event_shape]` for features `[..., H]`. Logistic mixture (8-bit data,
    see `zoo.distributions.discretized_logistic_mixture_log_prob`): `{"logits", "means",
    "log_scales"}` `[..., *event_shape, num_mixtures]`, one mixture per element (per channel,
    no coupling of the channels), and `mean` `[..., *event_shape]` in [0, 1]
    (`zoo.distributions.discretized_logistic_mixture_mean`).

    Args:
        event_shape: tuple of ints, the shape of one observation, e.g. `(28, 28, 1)`.
        likelihood: `"bernoulli"` (binary data), `"gaussian"` (continuous data) or
            `"logistic_mixture"` (8-bit data k / 255). Default `"bernoulli"`.
        num_mixtures: int >= 1, components of the logistic mixture (unused by the other
            likelihoods). Default 10 (PixelCNN++, NVAE).
        seed: int or None, seeds the initial weights. Default `None`.

    Example:

    >>> head = LikelihoodHead(event_shape=(2, 2, 1))
    >>> head(keras.ops.ones((3, 5)))["logits"].shape
    TensorShape([3, 2, 2, 1])
    >>> head = LikelihoodHead(event_shape=(2, 2, 3), likelihood="logistic_mixture", num_mixtures=4)
    >>> head(keras.ops.ones((3, 5)))["means"].shape
    TensorShape([3, 2, 2, 3, 4])
    """

    def __init__(self, event_shape, likelihood="bernoulli", num_mixtures=10, seed=None, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.event_shape = validation.positive_ints("event_shape", event_shape)
        self.likelihood = likelihood
        self.num_mixtures = validation.positive_int("num_mixtures", num_mixtures)
        self.seed = validation.constructor_seed(seed)
        units = math.prod(self.event_shape)
        if likelihood == "logistic_mixture":
            units *= self.num_mixtures
        # float32 heads under any dtype policy: the parameters of p(x|z) enter the log-likelihood.
        self.heads = {
            name: Dense(units, kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, i)),
                        dtype="float32", name=name)
            for i, name in enumerate(HEAD_NAMES[likelihood])
        }

    def build(self, input_shape):
        for head in self.heads.values():
            head.build(input_shape)

    def call(self, inputs):
        event_shape = self.event_shape + ((self.num_mixtures,) if self.likelihood == "logistic_mixture" else ())
        shape = tf.concat([tf.shape(inputs)[:-1], event_shape], axis=0)
        params = {name: tf.reshape(head(inputs), shape) for name, head in self.heads.items()}
        if self.likelihood == "bernoulli":
            params["mean"] = tf.sigmoid(params["logits"])
        elif self.likelihood == "logistic_mixture":
            params["mean"] = tf.cast(
                distributions.discretized_logistic_mixture_mean(params["logits"], params["means"]), params["means"].dtype
            )
        return params

    def get_config(self):
        return {
            **super().get_config(),
            "event_shape": self.event_shape,
            "likelihood": self.likelihood,
            "num_mixtures": self.num_mixtures,
            "seed": self.seed,
        }
