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

from zoo import distributions, validation
from zoo.layers.conv_stack import ConvStack
from zoo.layers.dense_stack import DenseStack
from zoo.layers.likelihood_head import LikelihoodHead
from zoo.layers.matching_embedding import ARCHITECTURES
from zoo.layers.skip_decoder import SkipDecoder
from zoo.models.base import LatentVariableModel

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
        self.architecture = architecture
        self.hidden_units = validation.positive_ints("hidden_units", hidden_units)
        self.filters = validation.positive_ints("filters", filters)
        self.strides = validation.positive_ints("strides", strides)
        self.latent_dim = validation.positive_int("latent_dim", latent_dim)
        self.matching_dim = validation.positive_int("matching_dim", matching_dim)
        self.memory_size = None if memory_size is None else validation.positive_int("memory_size", memory_size)
        self.activation = activation
        # Each sub-layer's seed is derived from `seed`: the same seed, the same initial weights.
        seed_of = lambda i: validation.derived_seed(self.seed, i)  # noqa: E731
        if architecture == "mlp":
            # Layer by layer, so the decoder can take a skip connection from every level (as in "conv").
            dense = lambda units, i, name: DenseStack(  # noqa: E731
                (units,), activation, batch_norm=False, seed=seed_of(i), name=name
            )
            self.encoder = [dense(u, 10 + i, f"encoder_{i}") for i, u in enumerate(self.hidden_units)]
            self.projection = dense(self.hidden_units[-1], 20, "projection")
            self.decoder = [
                dense(self.hidden_units[max(i - 1, 0)], 30 + i, f"decoder_{i}") for i in range(len(self.hidden_units))
            ]
            self.observation = LikelihoodHead(self.input_shape, likelihood, seed=seed_of(40), name="observation")
        else:
            if len(self.input_shape) != 3:
                raise ValueError(f'architecture="conv" needs input_shape (height, width, channels), got {input_shape!r}')
            self.encoder = ConvStack(self.filters, self.strides, activation, seed=seed_of(10), name="encoder")
            self.decoder = SkipDecoder(
                self.input_shape, self.filters, self.strides, activation, likelihood, seed=seed_of(30), name="decoder"
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

    def decode_params(self, z, context, rows=None):
        """Likelihood parameters of p(x | z, context) for `z` `[N, D]` and a memory read `context`.

        `context` is a list shaped like `features` (one tensor per down-path layer); layer i
        of the down path is undone, from the top, after concatenating `context[i]`: skip
        connections from the memory's down-scaling path to the decoder's up-scaling path.
        With `rows` (int `[N]`), `context` holds fewer reads `[M, ...]` and z's row n is
        decoded with read `rows[n]` (see `SkipDecoder.call`).
        """
        if self.architecture == "mlp":
            if rows is not None:
                context = [tf.gather(c, rows) for c in context]
            h = self.projection(z)
            for i in reversed(range(len(self.hidden_units))):
                h = self.decoder[i](tf.concat([h, context[i]], axis=-1))
            return self.observation(h)
        return self.decoder(z, context, skip_rows=rows)

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
            validation.check_spec(memory, self.input_shape, "memory", "memory entries")
        validation.check_spec(x, self.input_shape)

    def validate_inputs(self, x):
        """Checks a batch and its memory (`zoo.validation.examples`); returns `(x, memory)` as float32 tensors."""
        x, memory = self.split_inputs(x)
        return super().validate_inputs(x), self.given_or_learned_memory(memory)

    def given_or_learned_memory(self, memory):
        """A validated float32 memory `[M, *input_shape]`: `memory` if given, else the learned one."""
        if memory is None:
            if self.memory_size is None:
                raise ValueError(
                    f"this {type(self).__name__} reads a memory given per batch: pass memory=[M, "
                    + ", ".join(map(str, self.input_shape)) + "]"
                )
            return tf.convert_to_tensor(self.memory)
        if isinstance(memory, keras.Variable):  # the learned memory, passed back in
            return tf.convert_to_tensor(memory)
        memory = validation.examples(memory, self.input_shape, name="memory", leading="memory entries")
        return validation.non_empty(memory, "memory")

    @staticmethod
    def _inputs(x, memory):
        """The structured input of `x` (a tensor or `(x, memory)` / `{"x", "memory"}`) and a `memory` keyword."""
        if memory is None:
            return x
        if isinstance(x, (dict, tuple, list)):
            raise ValueError("pass the memory once: in the inputs or as memory=, not both")
        return (x, memory)

    def _check_element_spec(self, spec):
        if isinstance(spec, dict):
            self.check_input_spec(spec)
        else:
            super()._check_element_spec(spec)

    def _check_batch(self, batch):
        self.validate_inputs(batch)

    def _validated_element(self, element):
        if not isinstance(element, dict):
            return super()._validated_element(element)
        checked = {**element, "x": validation.examples(element["x"], self.input_shape, self.likelihood)}
        if "memory" in element:
            checked["memory"] = validation.examples(element["memory"], self.input_shape, name="memory",
                                                    leading="memory entries")
        return checked

    # The protocol (see `LatentVariableModel`): the memory is a keyword argument --------------

    def importance_sampling(self, x, num_samples=5000, seed=None, *, memory=None):
        """`LatentVariableModel.importance_sampling` of log p(x | memory); `x` may carry the memory."""
        return super().importance_sampling(self._inputs(x, memory), num_samples, seed)

    def log_likelihood(self, x, num_samples=5000, seed=None, *, memory=None):
        """Importance-sampled estimate of log p(x | memory) in nats, `[B]` (memory: learned, or `memory`)."""
        return self.importance_sampling(x, num_samples, seed, memory=memory)["log_likelihood"]

    def reconstruct(self, x, *, memory=None):
        """Deterministic reconstruction of x given the memory (learned, or `memory`), `[B, *input_shape]`."""
        x, memory = self.validate_inputs(self._inputs(x, memory))
        return self.reconstruct_given_memory(x, memory)

    def sample(self, num_samples, *, seed=None, temperature=1.0, memory=None):
        """Decoder means of `num_samples` draws from the model given the memory, `[num_samples, *input_shape]`.

        `temperature` (float >= 0) scales the Gaussian latent's prior standard deviation (0: its mean).
        """
        num_samples = validation.num_samples(num_samples)
        temperature = validation.temperature(temperature)
        seed = validation.seed(seed) if seed is not None else self.seed_generator
        return self.sample_given_memory(self.given_or_learned_memory(memory), num_samples, seed, temperature)["samples"]

    def serving_endpoints(self):
        """Named serving functions for a SavedModel (see `zoo.export`); the memory is the last input of each.

        The endpoints are the public methods, with the same names and argument order. A
        learned memory is served too: pass `model.memory` (or any other memory). Inputs are
        checked by `zoo.validation` (graph assertions that fail the request and name the problem).

        - `reconstruct(x, memory)` (also `serving_default`): `reconstruction` `[B, *input_shape]`.
        - `encode(x, memory)`: the posterior's parameters (see `encode`).
        - `decode(z, memory)`: the likelihood's parameters (see `decode`).
        - `sample(num_samples, seed, memory)`: `samples` `[N, *input_shape]` (see `sample`).
        - `log_likelihood(x, num_samples, seed, memory)`: `log_likelihood` `[B]`, log p(x | memory)
          estimated as `log_likelihood(x, num_samples, seed, memory=memory)` does, in chunks.
        """
        images = lambda name: tf.TensorSpec((None,) + self.input_shape, tf.float32, name=name)  # noqa: E731
        count = tf.TensorSpec((), tf.int32, name="num_samples")
        seed = tf.TensorSpec((2,), tf.int32, name="seed")
        latents = tf.TensorSpec((None, self.latent_dim), tf.float32, name="z")

        def sample(num_samples, seed, memory):
            num_samples = validation.num_samples(num_samples)
            memory = self.given_or_learned_memory(memory)
            return self.sample_given_memory(memory, num_samples, validation.seed(seed), temperature=1.0)

        reconstruct = (
            lambda x, memory: {"reconstruction": self.reconstruct(x, memory=memory)}, [images("x"), images("memory")]
        )
        return {
            "serving_default": reconstruct,
            "reconstruct": reconstruct,
            "encode": (lambda x, memory: self.encode(x, memory=memory), [images("x"), images("memory")]),
            "decode": (lambda z, memory: self.decode(z, memory=memory), [latents, images("memory")]),
            "sample": (sample, [count, seed, images("memory")]),
            "log_likelihood": (
                lambda x, num_samples, seed, memory: self.served_log_likelihood((x, memory), num_samples, seed),
                [images("x"), count, seed, images("memory")],
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
