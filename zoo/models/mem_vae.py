import keras
import tensorflow as tf

from zoo import validation
from zoo.models.vae import VAE

# parmesan's NormalizeLayer epsilon, used by the authors' local reconstruction error.
_NORMALIZE_EPSILON = 1e-4


@keras.saving.register_keras_serializable(package="zoo")
class MemVAE(VAE):
    """VAE whose generative network reads an external memory after each hidden layer (MEM-VAE).

    The one-level stack of `VAE` with a memory in its generative level: the encoder, latent
    layer, likelihood and bound are the VAE's. In the generative network (a `DenseStack`)
    every deterministic hidden layer h_g = act(BN(W h + b)) is followed by a `MemoryBlock`
    (when its `num_slots` entry is > 0):

        p_l = f_a(h_g C_l + b_l),   h_m = p_l M_l,   h_l = act(f_c(h_g, h_m))

    Training maximises the (importance-weighted) bound minus optional local
    reconstruction errors that tie each encoder hidden layer to the generative layer
    of the same width (both standardised with their batch statistics; the generative
    side averaged over the K samples of an example):

        loss = -L_K(x) + sum_l lambda_l mean_units (n(a_enc_l) - mean_k n(h_dec_l))^2

    Lists indexed by hidden layer (`num_slots`, `local_reconstruction_weights`,
    `memory_enabled`) run from x upward, like `hidden_units`: the authors'
    `-n_slots 0,70,30` (entry 0 is the pixel layer) is `num_slots=(70, 30)`.

    Args:
        input_shape: tuple of ints, shape of one example. Default `(28, 28, 1)`.
        hidden_units: tuple of ints, widths from x upward. Default `(500, 500)`.
        latent_dim: int, size of z. Default `100`.
        num_slots: tuple of ints >= 0, memory slots per hidden layer (0: no memory). Default `(70, 30)`.
        attention: `"sigmoid"` (MEM-VAE) or `"softmax"` (VIS-MEM-VAE). Default `"sigmoid"`.
        composition: `"ladder"` (MEM-VAE) or `"sum"` (VIS-MEM-VAE). Default `"ladder"`.
        local_reconstruction_weights: tuple of floats >= 0, lambda per hidden layer. Default `(0.1, 0.1)`.
        activation, batch_norm, likelihood, num_importance_samples, kl_warmup_steps, seed: as in `VAE`;
            `num_importance_samples` > 1 trains MEM-IWAE.

    Example:

    >>> import zoo
    >>> model = zoo.MemVAE(input_shape=(8, 8, 1), hidden_units=(16, 8), latent_dim=2, num_slots=(4, 3), seed=0)
    >>> model.compile()
    >>> x = tf.cast(tf.random.uniform((32, 8, 8, 1)) < 0.5, tf.float32)
    >>> history = model.fit(x, epochs=1, batch_size=16, verbose=0)
    >>> [p.shape for p in model.slot_preferences(x[:5])]
    [TensorShape([5, 4]), TensorShape([5, 3])]
    >>> model.sample(3, seed=1, memory_enabled=(False, True)).shape
    TensorShape([3, 8, 8, 1])

    References:
        Li, Zhu & Zhang, "Learning to Generate with Memory", ICML 2016; code: thu-ml/MEM_DGM.
    """

    SAMPLE_OPTIONS = ("memory_enabled",)

    def __init__(
        self,
        input_shape=(28, 28, 1),
        hidden_units=(500, 500),
        latent_dim=100,
        num_slots=(70, 30),
        attention="sigmoid",
        composition="ladder",
        local_reconstruction_weights=(0.1, 0.1),
        activation="relu",
        batch_norm=True,
        likelihood="bernoulli",
        num_importance_samples=1,
        kl_warmup_steps=0,
        seed=None,
        **kwargs,
    ):
        # Plain settings first: `VAE.__init__` builds the level, memory included (`memory_settings`).
        depth = len(validation.positive_ints("hidden_units", hidden_units))
        self.num_slots = validation.per_layer("num_slots", num_slots, depth, int)
        self.local_reconstruction_weights = validation.per_layer(
            "local_reconstruction_weights", local_reconstruction_weights, depth, float
        )
        self.attention = attention
        self.composition = composition
        super().__init__(
            input_shape=input_shape,
            hidden_units=hidden_units,
            latent_dim=latent_dim,
            activation=activation,
            batch_norm=batch_norm,
            likelihood=likelihood,
            num_importance_samples=num_importance_samples,
            kl_warmup_steps=kl_warmup_steps,
            seed=seed,
            **kwargs,
        )

    def build(self, input_shape):
        # Created before the model is built and locked (`VAE.__init__` ends by building).
        self.local_reconstruction_tracker = keras.metrics.Mean(name="local_reconstruction")
        super().build(input_shape)

    def memory_settings(self):
        return {"num_slots": self.num_slots, "attention": self.attention, "composition": self.composition}

    @property
    def memory_blocks(self):
        """The generative network's memory blocks, keyed by their hidden layer's index from x upward."""
        depth = len(self.hidden_units)
        return {str(depth - 1 - j): block for j, block in enumerate(self.decoder.memory_blocks) if block is not None}

    def _observation_parameters(self, z_0, training=False, memory_enabled=None, x=None, seed=None):
        flags = self._check_memory_enabled(memory_enabled)
        # The decoder runs z -> x: the flags (from x upward) reversed.
        return super()._observation_parameters(z_0, training, None if flags is None else flags[::-1], x, seed)

    # Training ----------------------------------------------------------------------

    def call(self, inputs, training=False):
        self.check_input_spec(inputs)
        terms = self._posterior_terms(inputs, self.num_importance_samples, training)
        outputs = self._outputs(terms)
        if any(self.local_reconstruction_weights):
            outputs["local_reconstruction"] = self._local_reconstruction(terms)
        return outputs

    def _local_reconstruction(self, terms):
        """sum_l lambda_l mean_units (n(a_enc_l) - mean_k n(h_dec_l))^2, `[B]`."""
        # In float32 under any dtype policy: a loss term, standardised over the batch.
        encoder_states = [tf.cast(a, tf.float32) for a in terms["encoder_runs"][0]["pre_activations"]]  # the authors tie the normalized pre-activation
        decoder_states = [tf.cast(h, tf.float32) for h in terms["decoder_run"]["states"]]  # z -> x order, each [K, B, W]
        local = 0.0
        for i, weight in enumerate(self.local_reconstruction_weights):
            if weight:
                width = self.hidden_units[i]
                decoded = tf.reshape(
                    _standardize(tf.reshape(decoder_states[-1 - i], [-1, width])),
                    [self.num_importance_samples, -1, width],
                )
                error = tf.square(_standardize(encoder_states[i]) - tf.reduce_mean(decoded, axis=0))
                local += weight * tf.reduce_mean(error, axis=-1)
        return local

    def batch_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().batch_loss(x, y, y_pred, sample_weight, training)
        if "local_reconstruction" not in y_pred:
            return loss
        self.local_reconstruction_tracker.update_state(y_pred["local_reconstruction"])
        return loss + tf.reduce_mean(y_pred["local_reconstruction"])

    # Inference with the memory --------------------------------------------------------

    def _check_memory_enabled(self, memory_enabled):
        if memory_enabled is None:
            return None
        expected = (f"memory_enabled must be {len(self.hidden_units)} bools (one per hidden layer, from x upward), "
                    f"got {memory_enabled!r}")
        try:
            flags = tuple(memory_enabled)
        except TypeError:
            raise ValueError(expected) from None
        if len(flags) != len(self.hidden_units) or not all(isinstance(f, bool) for f in flags):
            raise ValueError(expected)
        return flags

    def decode(self, z, *, memory_enabled=None):
        """Likelihood parameters of p(x|z) (see `VAE.decode`).

        `memory_enabled`: None (all memories on) or one bool per hidden layer from x
        upward; a disabled block reads a vector of ones (appendix C of the paper).
        """
        return self._generate(validation.latents(z, self.latent_dim), 0.0, None, memory_enabled=memory_enabled)

    def slot_preferences(self, x):
        """Attention f_a of every memory block at z = posterior mean, from x upward: list of `[B, S_l]`."""
        return self.decoder.run(self.encode(x)["mean"])["slot_preferences"][::-1]

    def slot_images(self, layer=0):
        """Decodes each slot of the block at hidden `layer` alone: h_g = 0, h_m = slot (Figure 7).

        Later layers (toward x) run as usual. Returns the decoder means `[S, *input_shape]`.
        """
        blocks = self.memory_blocks
        layer = validation.positive_int("layer", layer, minimum=0)
        if str(layer) not in blocks:
            raise ValueError(f"layer must be one of the layers with memory {sorted(map(int, blocks))}, got {layer!r}")
        block = blocks[str(layer)]
        h = block.compose(tf.zeros_like(block.memory), tf.convert_to_tensor(block.memory))  # [S, W]
        states = self.decoder.run(h, start=len(self.hidden_units) - layer)["states"]
        return self._observe(states[-1] if states else h)["mean"]

    def get_config(self):
        return {
            **super().get_config(),
            "num_slots": self.num_slots,
            "attention": self.attention,
            "composition": self.composition,
            "local_reconstruction_weights": self.local_reconstruction_weights,
        }


def _standardize(h):
    """Standardises each unit with the batch's statistics (parmesan's NormalizeLayer in training)."""
    mean, variance = tf.nn.moments(h, axes=[0])
    return (h - mean) * tf.math.rsqrt(variance + _NORMALIZE_EPSILON)
