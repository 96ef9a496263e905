import keras
import tensorflow as tf

from zoo import validation
from zoo.layers.dense import Dense
from zoo.layers.memory_block import MemoryBlock


@keras.saving.register_keras_serializable(package="zoo")
class DenseStack(keras.layers.Layer):
    """A stack of fully connected hidden layers: Dense -> [BatchNormalization] -> activation [-> MemoryBlock].

    The deterministic cell of every MLP level of the zoo's level stacks (`zoo.HierarchicalVAE`):
    an encoder's bottom-up network, a decoder's top-down network. A layer with `num_slots` > 0
    is followed by a `MemoryBlock` that reads an external memory (MEM-VAE's generative network).

    Works on inputs of any rank (the last axis is the feature axis), so importance
    samples `[K, B, D]` pass through without reshaping; batch statistics are then taken
    over all K * B rows.

    Args:
        hidden_units: sequence of ints, the width of each hidden layer. Default `(500, 500)`.
        activation: str, Keras activation applied after each layer. Default `"relu"`.
        batch_norm: bool, batch normalization (with scale and shift) before each
            activation, as in Li et al. (2016). Default `True`.
        num_slots: None or one int >= 0 per hidden layer (in this stack's order): the memory
            slots read after that layer (0: no memory). Default `None` (no memory).
        attention, composition: the `MemoryBlock` settings. Defaults `"sigmoid"`, `"ladder"`.
        seed: int or None, seeds the initial weights (the same seed, the same weights). Default `None`.

    Example:

    >>> stack = DenseStack(hidden_units=(8, 4))
    >>> stack(keras.ops.ones((2, 3))).shape
    TensorShape([2, 4])
    >>> stack = DenseStack(hidden_units=(8, 4), num_slots=(3, 0))
    >>> [p.shape for p in stack.run(keras.ops.ones((2, 3)))["slot_preferences"]]
    [TensorShape([2, 3])]
    """

    def __init__(
        self,
        hidden_units=(500, 500),
        activation="relu",
        batch_norm=True,
        num_slots=None,
        attention="sigmoid",
        composition="ladder",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_units = validation.positive_ints("hidden_units", hidden_units)
        self.activation = activation
        self.batch_norm = validation.boolean("batch_norm", batch_norm)
        self.num_slots = (
            None if num_slots is None else validation.per_layer("num_slots", num_slots, len(self.hidden_units), int)
        )
        self.attention = attention
        self.composition = composition
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
        # memory_blocks[i] follows hidden layer i (None: no memory there).
        self.memory_blocks = [
            MemoryBlock(
                slots, attention, composition, activation,
                seed=validation.derived_seed(self.seed, 100 + i), name=f"memory_block_{i}",
            ) if slots else None
            for i, slots in enumerate(self.num_slots or (0,) * len(self.hidden_units))
        ]
        self.activation_fn = validation.activation(activation)

    def build(self, input_shape):
        shape = (None, input_shape[-1])
        for i, dense in enumerate(self.dense_layers):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.batch_norm:
                self.norm_layers[i].build(shape)
            if self.memory_blocks[i] is not None:
                self.memory_blocks[i].build(shape)

    def run(self, inputs, training=False, memory_enabled=None, start=0):
        """Runs hidden layers `start`.. on `inputs` and returns what each computed.

        `memory_enabled`: None (every memory read) or one bool per hidden layer; a disabled
        block reads a vector of ones. Returns a dict: `pre_activations` and `states` (one
        `[..., units]` tensor per layer run: the Dense output and the layer's output), and
        `slot_preferences` (the attention of every memory block that read, in order).
        """
        # Batch normalization wants rank 2: fold leading axes (e.g. [K, B]) into one.
        leading = tf.shape(inputs)[:-1]
        h = tf.reshape(inputs, [-1, inputs.shape[-1]])
        unfold = lambda t: tf.reshape(t, tf.concat([leading, tf.shape(t)[-1:]], axis=0))  # noqa: E731
        outputs = {"pre_activations": [], "states": [], "slot_preferences": []}
        for i in range(start, len(self.hidden_units)):
            h = self.dense_layers[i](h)
            outputs["pre_activations"].append(unfold(h))
            if self.batch_norm:
                h = self.norm_layers[i](h, training=training)
            h = self.activation_fn(h)
            block = self.memory_blocks[i]
            if block is not None:
                if memory_enabled is None or memory_enabled[i]:
                    preferences = block.address(h)  # [N, S]
                    outputs["slot_preferences"].append(unfold(preferences))
                    h = block.compose(h, block.read(preferences))
                else:
                    h = block(h, memory_enabled=False)
            outputs["states"].append(unfold(h))
        return outputs

    def call(self, inputs, training=False, memory_enabled=None):
        return self.run(inputs, training, memory_enabled)["states"][-1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.hidden_units[-1],)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "num_slots": self.num_slots,
            "attention": self.attention,
            "composition": self.composition,
            "seed": self.seed,
        }
