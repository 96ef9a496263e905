import keras
from keras import ops

from zoo import validation

ATTENTIONS = ("sigmoid", "softmax")
COMPOSITIONS = ("ladder", "sum")
# The ladder composition's per-unit vectors and their initial values: the block starts as
# the identity on h_g with every path from the memory closed (Li et al. 2016, thu-ml/MEM_DGM).
LADDER_INIT = {"a1": 0.0, "a2": 1.0, "a3": 0.0, "a4": 0.0, "b1": 0.0, "c1": 0.0, "c2": 1.0, "c3": 0.0, "c4": 0.0}


@keras.saving.register_keras_serializable(package="zoo")
class MemoryBlock(keras.layers.Layer):
    """An external memory read by a hidden layer of a generative network (MEM-VAE).

    A trainable memory M of `num_slots` slots, each as wide as the layer, is addressed
    by a controller from the layer's state h_g, read, and merged back into h_g:

        p   = f_a(h_g C + b)                   slot preferences [B, S]; f_a = sigmoid or softmax
        h_m = p M                              the read, [B, W]
        out = act(f_c(h_g, h_m))

    with the ladder-style gated composition (MEM-VAE)

        f_c = a1 + a2 h_g + a3 h_m + a4 h_g h_m + b1 sigmoid(c1 + c2 h_g + c3 h_m + c4 h_g h_m)

    (nine per-unit vectors, element-wise products; initialised so f_c(h_g, h_m) = h_g), or
    the plain sum f_c = h_g + h_m (VIS-MEM-VAE). With `memory_enabled=False` the read is
    replaced by a vector of ones, as in the paper's appendix C.

    Parameters: W*S + S (controller) + S*W (memory) + 9*W (ladder only).

    Args:
        num_slots: int >= 1, number of memory slots S.
        attention: `"sigmoid"` (MEM-VAE) or `"softmax"` (VIS-MEM-VAE). Default `"sigmoid"`.
        composition: `"ladder"` (MEM-VAE) or `"sum"` (VIS-MEM-VAE). Default `"ladder"`.
        activation: str, applied to the composition (the generative network's
            hidden activation). Default `"relu"`.
        seed: int or None, seeds the initial controller and memory. Default `None`.

    Example:

    >>> block = MemoryBlock(num_slots=4)
    >>> block(keras.ops.ones((2, 6))).shape
    TensorShape([2, 6])
    >>> block.address(keras.ops.ones((2, 6))).shape
    TensorShape([2, 4])

    References:
        Li, Zhu & Zhang, "Learning to Generate with Memory", ICML 2016, sec. 3 and appendix C.
    """

    def __init__(self, num_slots, attention="sigmoid", composition="ladder", activation="relu", seed=None, **kwargs):
        super().__init__(**kwargs)
        num_slots = validation.positive_int("num_slots", num_slots)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if composition not in COMPOSITIONS:
            raise ValueError(f"composition must be one of {COMPOSITIONS}, got {composition!r}")
        self.num_slots = num_slots
        self.attention = attention
        self.composition = composition
        self.activation = activation
        self.activation_fn = validation.activation(activation)
        self.seed = validation.constructor_seed(seed)

    def build(self, input_shape):
        width = input_shape[-1]
        if width is None:
            raise ValueError(f"MemoryBlock needs a known last axis, got input shape {input_shape}")
        self.width = int(width)
        self.controller_kernel = self.add_weight(
            shape=(self.width, self.num_slots),
            initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, 0)),
            name="controller_kernel",
        )
        self.controller_bias = self.add_weight(shape=(self.num_slots,), initializer="zeros", name="controller_bias")
        self.memory = self.add_weight(
            shape=(self.num_slots, self.width),
            initializer=keras.initializers.RandomNormal(stddev=0.01, seed=validation.derived_seed(self.seed, 1)),
            name="memory",
        )
        if self.composition == "ladder":
            self.ladder = {
                name: self.add_weight(
                    shape=(self.width,), initializer=keras.initializers.Constant(value), name=name
                )
                for name, value in LADDER_INIT.items()
            }

    def address(self, h_g):
        """Slot preferences f_a(h_g C + b), `[..., num_slots]`."""
        logits = ops.matmul(h_g, self.controller_kernel) + self.controller_bias
        return ops.sigmoid(logits) if self.attention == "sigmoid" else ops.softmax(logits, axis=-1)

    def read(self, preferences):
        """The memory read h_m = preferences M, `[..., width]`."""
        return ops.matmul(preferences, self.memory)

    def compose(self, h_g, h_m):
        """act(f_c(h_g, h_m)), `[..., width]`."""
        if self.composition == "sum":
            return self.activation_fn(h_g + h_m)
        v = self.ladder
        product = h_g * h_m
        gate = ops.sigmoid(v["c1"] + v["c2"] * h_g + v["c3"] * h_m + v["c4"] * product)
        return self.activation_fn(v["a1"] + v["a2"] * h_g + v["a3"] * h_m + v["a4"] * product + v["b1"] * gate)

    def call(self, inputs, memory_enabled=True):
        h_m = self.read(self.address(inputs)) if memory_enabled else ops.ones_like(inputs)
        return self.compose(inputs, h_m)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_slots": self.num_slots,
            "attention": self.attention,
            "composition": self.composition,
            "activation": self.activation,
            "seed": self.seed,
        }
