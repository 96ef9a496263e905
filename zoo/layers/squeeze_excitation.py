import keras
from keras import ops

from zoo import validation


@keras.saving.register_keras_serializable(package="zoo")
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-excitation channel gating of NHWC feature maps, as NVAE's `SE`.

        s    = mean over H, W of x                                   [B, C]
        gate = sigmoid(W_2 relu(W_1 s + b_1) + b_2)                  [B, C]
        out  = x * gate                                              (broadcast over H, W)

    with max(C // reduction, min_hidden_units) hidden units (NVAE: `max(C // 16, 4)`).

    Args:
        reduction: int >= 1, channels per hidden unit. Default 16 (NVAE's).
        min_hidden_units: int >= 1, the fewest hidden units. Default 4 (NVAE's).
        seed: int or None, seeds the initial weights. Default None.

    Example:

    >>> se = SqueezeExcitation()
    >>> se(keras.ops.ones((2, 8, 8, 32))).shape
    TensorShape([2, 8, 8, 32])

    References:
        Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018; Vahdat & Kautz, "NVAE: A Deep
        Hierarchical Variational Autoencoder", NeurIPS 2020, sec. 3.1.1 (NVlabs/NVAE `neural_operations.SE`).
    """

    def __init__(self, reduction=16, min_hidden_units=4, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.reduction = validation.positive_int("reduction", reduction)
        self.min_hidden_units = validation.positive_int("min_hidden_units", min_hidden_units)
        self.seed = validation.constructor_seed(seed)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"SqueezeExcitation takes NHWC feature maps [batch, height, width, channels] with known channels, "
                f"got input shape {tuple(input_shape)}"
            )
        channels = int(input_shape[-1])
        self.hidden_units = max(channels // self.reduction, self.min_hidden_units)
        self.squeeze = keras.layers.Dense(
            self.hidden_units, activation="relu", dtype=self.dtype_policy, name="squeeze",
            kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, 0)),
        )
        self.excite = keras.layers.Dense(
            channels, activation="sigmoid", dtype=self.dtype_policy, name="excite",
            kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, 1)),
        )
        self.squeeze.build((None, channels))
        self.excite.build((None, self.hidden_units))

    def call(self, inputs):
        # The spatial mean in float32: a float16 sum over H * W positions loses precision.
        pooled = ops.mean(ops.cast(inputs, "float32"), axis=(1, 2))  # [B, C]
        gate = self.excite(self.squeeze(pooled))  # [B, C]
        return inputs * ops.cast(gate, inputs.dtype)[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "min_hidden_units": self.min_hidden_units,
            "seed": self.seed,
        }
