"""What VMA and its soft-attention baseline share: the memory input and the encoder/decoder.

Both models read a memory M of raw examples `[M, *input_shape]`: learned (a trainable
variable, `memory_size` entries) or given with every batch. Inputs are

- a tensor `x` `[B, *input_shape]` (learned memory only),
- a dict `{"x": [B, ...], "memory": [M, ...]}` (what `model.fit` takes: a `tf.data`
  element that is a 2-tuple would be read by Keras as `(x, y)`; other keys, such as
  episode labels, are ignored), or
- a tuple `(x, memory)` for direct calls and the public methods.

A memory given with the batch takes the place of a learned one. The networks: one
down-scaling path applied to x and to memory entries (tied between the encoder and the
decoder's memory input), an up-scaling decoder with skip connections from a memory read at
every level, for "mlp" as for "conv", so that the decoder sees a memory entry at every
resolution and not only through the top layer's features.
"""

import math

import keras
import tensorflow as tf

from zoo import distributions
from zoo.layers.conv_stack import ConvStack
from zoo.layers.dense_stack import DenseStack
from zoo.layers.likelihood_head import LikelihoodHead
from zoo.layers.matching_embedding import ARCHITECTURES
from zoo.layers.skip_decoder import SkipDecoder
from zoo.models.base import _INVALID_INPUT, LatentVariableModel, _check_positive_int

_MEMORY_NOT_FINITE = "memory contains NaN or Inf values; expected finite values"
# Importance-sample rows per chunk of `log_likelihood` for conv models, whose rows carry feature maps.
CONV_ROWS_PER_CHUNK = 1024


class MemoryConditionedModel(LatentVariableModel):
    """Base class of the memory models: memory handling, tied down-scaling path, conditioned decoder.

    Args:
        input_shape: tuple of ints, shape of one example and of one memory entry.
        architecture: `"mlp"` or `"conv"`.
        hidden_units: MLP widths of the down path (the decoder mirrors them).
        filters, strides: conv maps and strides of the down path (the decoder mirrors them).
        latent_dim: int, size of z.
        matching_dim: int, size of the addressing / attention matching space.
        memory_size: int, entries of a learned memory; None when the memory comes with each batch.
        activation: str, hidden activation.
        likelihood, num_importance_samples, seed: as `LatentVariableModel`.
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        architecture="mlp",
        hidden_units=(256, 128),
        filters=(32, 32, 64, 64, 64, 64),
        strides=(1, 2, 1, 2, 1, 2),
        latent_dim=32,
        matching_dim=128,
        memory_size=None,
        activation="relu",
        likelihood="bernoulli",
        num_importance_samples=4,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            input_shape=input_shape,
            likelihood=likelihood,
            num_importance_samples=num_importance_samples,
            seed=seed,
            **kwargs,
        )
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if memory_size is not None and (isinstance(memory_size, bool) or int(memory_size) < 1):
            raise ValueError(f"memory_size must be an int >= 1 (learned memory) or None (memory given per batch), got {memory_size!r}")
        self.architecture = architecture
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.filters = tuple(int(f) for f in filters)
        self.strides = tuple(int(s) for s in strides)
        self.latent_dim = int(latent_dim)
        self.matching_dim = int(matching_dim)
        self.memory_size = None if memory_size is None else int(memory_size)
        self.activation = activation
        if architecture == "mlp":
            # Layer by layer, so the decoder can take a skip connection from every level (as in "conv").
            dense = lambda units, name: DenseStack((units,), activation, batch_norm=False, name=name)  # noqa: E731
            self.encoder = [dense(u, f"encoder_{i}") for i, u in enumerate(self.hidden_units)]
            self.projection = dense(self.hidden_units[-1], "projection")
            self.decoder = [dense(self.hidden_units[max(i - 1, 0)], f"decoder_{i}") for i in range(len(self.hidden_units))]
            self.observation = LikelihoodHead(self.input_shape, likelihood, name="observation")
        else:
            if len(self.input_shape) != 3:
                raise ValueError(f'architecture="conv" needs input_shape (height, width, channels), got {input_shape!r}')
            self.encoder = ConvStack(self.filters, self.strides, activation, name="encoder")
            self.decoder = SkipDecoder(
                self.input_shape, self.filters, self.strides, activation, likelihood, name="decoder"
            )
            self.rows_per_chunk = CONV_ROWS_PER_CHUNK

    def _seed_offset(self, offset):
        """A distinct seed for each stochastic sub-layer (None stays None)."""
        return None if self.seed is None else self.seed + offset

    def build_shapes(self):
        """Input shapes to build with; Keras's default SavedModel signature follows them (dict with a per-batch memory)."""
        shape = (None,) + self.input_shape
        return shape if self.memory_size is not None else {"x": shape, "memory": shape}

    def build_memory_and_coder(self):
        """Builds the learned memory (if any), the down path and the decoder."""
        if self.memory_size is not None:
            self.memory = self.add_weight(
                shape=(self.memory_size,) + self.input_shape,
                initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=self.seed),
                name="memory",
            )
        if self.architecture == "mlp":
            width = math.prod(self.input_shape)
            for layer in self.encoder:
                layer.build((None, width))
                width = layer.hidden_units[-1]
            self.projection.build((None, self.latent_dim))
            for i in reversed(range(len(self.hidden_units))):
                self.decoder[i].build((None, width + self.hidden_units[i]))
                width = self.decoder[i].hidden_units[-1]
            self.observation.build((None, width))
        else:
            self.encoder.build((None,) + self.input_shape)
            self.decoder.build((None, self.latent_dim))

    @property
    def feature_dim(self):
        """Width of `summary(features(v))`."""
        if self.architecture == "mlp":
            return self.hidden_units[-1]
        return math.prod(self.encoder.feature_shapes(self.input_shape)[-1])

    # Networks ---------------------------------------------------------------------

    def features(self, v):
        """The tied down path on examples `[N, *input_shape]`: a list of feature tensors, finest first."""
        if self.architecture == "mlp":
            h = tf.reshape(v, [-1, math.prod(self.input_shape)])
            features = []
            for layer in self.encoder:
                h = layer(h)
                features.append(h)
            return features
        return self.encoder(v)

    @staticmethod
    def summary(maps):
        """The top feature map flattened, `[N, feature_dim]`."""
        top = maps[-1]
        return tf.reshape(top, [-1, math.prod(top.shape[1:])])

    def decode_params(self, z, context):
        """Likelihood parameters of p(x | z, context) for `z` `[N, D]` and a memory read `context`.

        `context` is a list shaped like `features` (one tensor per down-path layer); layer i
        of the down path is undone, from the top, after concatenating `context[i]`: skip
        connections from the memory's down-scaling path to the decoder's up-scaling path.
        """
        if self.architecture == "mlp":
            h = self.projection(z)
            for i in reversed(range(len(self.hidden_units))):
                h = self.decoder[i](tf.concat([h, context[i]], axis=-1))
            return self.observation(h)
        return self.decoder(z, context)

    def log_px(self, x, params):
        return distributions.log_likelihood(self.likelihood, params, x, len(self.input_shape))

    # Inputs -----------------------------------------------------------------------

    def split_inputs(self, inputs):
        """`(x, memory)` from a tensor, a dict `{"x", "memory"}` or a tuple `(x, memory)`."""
        if isinstance(inputs, dict):
            if "x" not in inputs:
                raise ValueError(
                    f'{type(self).__name__} expects a dict with keys "x" and (optionally) "memory", '
                    f"got keys {sorted(inputs)}"
                )
            x, memory = inputs["x"], inputs.get("memory")
        elif isinstance(inputs, (tuple, list)):
            if len(inputs) != 2:
                raise ValueError(f"{type(self).__name__} expects a tuple (x, memory), got {len(inputs)} elements")
            x, memory = inputs
        else:
            x, memory = inputs, None
        if memory is None:
            if self.memory_size is None:
                raise ValueError(
                    f"{type(self).__name__}(memory_size=None) reads a memory given with each batch: "
                    'pass {"x": x, "memory": memory} (memory [M, ' + ", ".join(map(str, self.input_shape)) + "])"
                )
            memory = self.memory
        return x, memory

    def check_input_spec(self, x):
        if isinstance(x, (dict, tuple, list)):
            x, memory = self.split_inputs(x)
            super().check_input_spec(x)
            try:
                super().check_input_spec(memory)
            except ValueError as error:
                raise ValueError(f"memory: {error}".replace("[batch,", "[memory entries,")) from None
            return
        super().check_input_spec(x)

    def validate_inputs(self, x):
        """Checks a concrete batch and its memory; returns `(x, memory)` as float32 tensors."""
        x, memory = self.split_inputs(x)
        x = super().validate_inputs(x)
        memory = tf.convert_to_tensor(memory)
        try:
            super().check_input_spec(memory)
        except ValueError as error:
            raise ValueError(f"memory: {error}".replace("[batch,", "[memory entries,")) from None
        memory = tf.cast(memory, tf.float32)
        if not tf.executing_eagerly():  # traced (a serving signature): a graph assertion
            return x, self._finite_memory(memory)
        if not bool(tf.reduce_all(tf.math.is_finite(memory))):
            raise ValueError(_MEMORY_NOT_FINITE)
        return x, memory

    @staticmethod
    def _finite_memory(memory):
        with tf.control_dependencies([tf.debugging.assert_all_finite(memory, _INVALID_INPUT + _MEMORY_NOT_FINITE)]):
            return tf.identity(memory)

    def given_or_learned_memory(self, memory):
        """A validated float32 memory `[M, *input_shape]`: `memory` if given, else the learned one."""
        if memory is None:
            if self.memory_size is None:
                raise ValueError(
                    f"this {type(self).__name__} reads a memory given per batch: pass memory=[M, "
                    + ", ".join(map(str, self.input_shape)) + "]"
                )
            return tf.convert_to_tensor(self.memory)
        probe = tf.zeros((1,) + self.input_shape)
        return self.validate_inputs((probe, memory))[1]

    def _validated_data(self, data):
        if isinstance(data, tf.data.Dataset) and isinstance(data.element_spec, dict):
            spec = data.element_spec
            self.check_input_spec(spec)

            def check(element):
                checked = {**element, "x": self._validated_batch(element["x"])}
                if "memory" in element:
                    checked["memory"] = self._finite_memory(element["memory"])
                return checked

            return data.map(check)
        if isinstance(data, (dict, tuple, list)):
            self.validate_inputs(data)
            return data
        return super()._validated_data(data)

    # Public methods shared by the memory models -------------------------------------

    def reconstruct(self, x, memory=None):
        """Deterministic reconstruction of x given the memory (learned, or `memory`), `[B, *input_shape]`."""
        x, memory = self.validate_inputs(x if memory is None else (x, memory))
        return self.reconstruct_given_memory(x, memory)

    def sample(self, num_samples, memory=None, seed=None):
        """Decoder means of `num_samples` draws from the model given the memory, `[num_samples, *input_shape]`."""
        _check_positive_int("num_samples", num_samples)
        memory = self.given_or_learned_memory(memory)
        return self.sample_given_memory(memory, num_samples, self.seed_generator if seed is None else seed)["mean"]

    def serving_endpoints(self):
        """Named serving functions for a SavedModel (see `zoo.export`); the memory is an input of each.

        A learned memory is served too: pass `model.memory` (or any other memory). Inputs
        are checked as in `validate_inputs` (graph assertions that fail the request).

        - `serving_default(x, memory)`: `reconstruction` `[B, *input_shape]` (see `reconstruct`).
        - `sample(memory, num_samples, seed)`: `mean` `[N, *input_shape]` (see `sample`).
        - `log_likelihood(x, memory, num_samples, seed)`: `log_likelihood` `[B]`, log p(x | memory)
          estimated as `log_likelihood((x, memory), num_samples, seed)` does, in chunks.
        """
        images = lambda name: tf.TensorSpec((None,) + self.input_shape, tf.float32, name=name)  # noqa: E731
        count = tf.TensorSpec((), tf.int32, name="num_samples")
        seed = tf.TensorSpec((2,), tf.int32, name="seed")

        def sample(memory, num_samples, seed):
            return self.sample_given_memory(self.given_or_learned_memory(memory), num_samples, seed)

        return {
            "serving_default": (
                lambda x, memory: {"reconstruction": self.reconstruct_given_memory(*self.validate_inputs((x, memory)))},
                [images("x"), images("memory")],
            ),
            "sample": (sample, [images("memory"), count, seed]),
            "log_likelihood": (
                lambda x, memory, num_samples, seed: self.served_log_likelihood((x, memory), num_samples, seed),
                [images("x"), images("memory"), count, seed],
            ),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "architecture": self.architecture,
            "hidden_units": self.hidden_units,
            "filters": self.filters,
            "strides": self.strides,
            "latent_dim": self.latent_dim,
            "matching_dim": self.matching_dim,
            "memory_size": self.memory_size,
            "activation": self.activation,
        }
