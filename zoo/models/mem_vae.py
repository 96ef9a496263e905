import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers.memory_block import MemoryBlock
from zoo.models.vae import VAE

# parmesan's NormalizeLayer epsilon, used by the authors' local reconstruction error.
_NORMALIZE_EPSILON = 1e-4


@keras.saving.register_keras_serializable(package="zoo")
class MemVAE(VAE):
    """VAE whose generative network reads an external memory after each hidden layer (MEM-VAE).

    The encoder, latent layer, likelihood and bound are the core `VAE`'s. In the
    generative network every deterministic hidden layer h_g = act(BN(W h + b)) is
    followed by a `MemoryBlock` (when its `num_slots` entry is > 0):

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
        activation, batch_norm, likelihood, num_importance_samples, seed: as in `VAE`;
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
        seed=None,
        **kwargs,
    ):
        # Plain settings first: `VAE.__init__` ends by calling `build`, which creates the blocks.
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
            seed=seed,
            **kwargs,
        )

    def build(self, input_shape):
        # One block per hidden layer with slots, keyed by the layer's index from x upward.
        self.memory_blocks = {
            str(i): MemoryBlock(
                slots, self.attention, self.composition, self.activation,
                seed=validation.derived_seed(self.seed, 10 + i), name=f"memory_block_{i}",
            )
            for i, slots in enumerate(self.num_slots)
            if slots > 0
        }
        self.local_reconstruction_tracker = keras.metrics.Mean(name="local_reconstruction")
        for i, block in self.memory_blocks.items():
            block.build((None, self.hidden_units[int(i)]))
        super().build(input_shape)

    # The generative network --------------------------------------------------------

    def _memory_block(self, decoder_index):
        return self.memory_blocks.get(str(len(self.hidden_units) - 1 - decoder_index))

    def _generative_states(self, h, start, training=False, memory_enabled=None):
        """Runs decoder layers `start`.. (z -> x order) on rows `[N, D]`.

        Returns the hidden states and the slot preferences of each enabled block, both z -> x.
        """
        decoder = self.decoder
        states, preferences = [], []
        for j in range(start, len(self.hidden_units)):
            h = decoder.dense_layers[j](h)
            if self.batch_norm:
                h = decoder.norm_layers[j](h, training=training)
            h = decoder.activation_fn(h)
            block = self._memory_block(j)
            if block is not None:
                enabled = memory_enabled is None or memory_enabled[len(self.hidden_units) - 1 - j]
                if enabled:
                    p = block.address(h)  # [N, S]
                    preferences.append(p)
                    h = block.compose(h, block.read(p))
                else:
                    h = block(h, memory_enabled=False)
            states.append(h)
        return states, preferences

    def _decoder_params(self, z, training=False, memory_enabled=None):
        leading = tf.shape(z)[:-1]
        states, _ = self._generative_states(tf.reshape(z, [-1, self.latent_dim]), 0, training, memory_enabled)
        h = states[-1]
        return self.observation(tf.reshape(h, tf.concat([leading, tf.shape(h)[-1:]], axis=0)))

    # Training ----------------------------------------------------------------------

    def call(self, inputs, training=False):
        if not any(self.local_reconstruction_weights):
            return super().call(inputs, training)
        self.check_input_spec(inputs)
        samples = self.num_importance_samples
        encoder_states = []
        h = self._flatten(inputs)
        for i, dense in enumerate(self.encoder.dense_layers):
            h = dense(h)
            encoder_states.append(h)  # the authors tie the normalized pre-activation
            if self.batch_norm:
                h = self.encoder.norm_layers[i](h, training=training)
            h = self.encoder.activation_fn(h)
        posterior = self.posterior(h, num_samples=samples)
        decoder_states, _ = self._generative_states(
            tf.reshape(posterior["z"], [-1, self.latent_dim]), 0, training
        )
        h = tf.reshape(decoder_states[-1], [samples, -1, self.hidden_units[0]])
        params = self.observation(h)
        log_px_z = distributions.log_likelihood(self.likelihood, params, inputs, len(self.input_shape))
        log_pz = self.prior.log_prob(posterior["z"])
        local = 0.0
        for i, weight in enumerate(self.local_reconstruction_weights):
            if weight:
                decoded = tf.reshape(_standardize(decoder_states[-1 - i]), [samples, -1, self.hidden_units[i]])
                error = tf.square(_standardize(encoder_states[i]) - tf.reduce_mean(decoded, axis=0))
                local += weight * tf.reduce_mean(error, axis=-1)
        return {
            "log_weights": tf.transpose(log_px_z + log_pz - posterior["log_prob"]),  # [B, K]
            "log_px_z": tf.transpose(log_px_z),  # [B, K]
            "kl": objectives.gaussian_kl(posterior["mean"], posterior["log_variance"]),
            "reconstruction": params["mean"][0],
            "local_reconstruction": local,  # [B], weighted sum over layers
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        if "local_reconstruction" not in y_pred:
            return loss
        self.local_reconstruction_tracker.update_state(y_pred["local_reconstruction"])
        return loss + tf.reduce_mean(y_pred["local_reconstruction"])

    # Inference with the memory --------------------------------------------------------

    def _check_memory_enabled(self, memory_enabled):
        if memory_enabled is None:
            return None
        flags = tuple(memory_enabled)
        if len(flags) != len(self.hidden_units) or not all(isinstance(f, bool) for f in flags):
            raise ValueError(
                f"memory_enabled must be {len(self.hidden_units)} bools (one per hidden layer, from x upward), "
                f"got {memory_enabled!r}"
            )
        return flags

    def decode(self, z, *, memory_enabled=None):
        """Likelihood parameters of p(x|z) (see `VAE.decode`).

        `memory_enabled`: None (all memories on) or one bool per hidden layer from x
        upward; a disabled block reads a vector of ones (appendix C of the paper).
        """
        flags = self._check_memory_enabled(memory_enabled)
        return self._decoder_params(validation.latents(z, self.latent_dim), memory_enabled=flags)

    def slot_preferences(self, x):
        """Attention f_a of every memory block at z = posterior mean, from x upward: list of `[B, S_l]`."""
        z = self.encode(x)["mean"]
        _, preferences = self._generative_states(z, 0)
        return preferences[::-1]

    def slot_images(self, layer=0):
        """Decodes each slot of the block at hidden `layer` alone: h_g = 0, h_m = slot (Figure 7).

        Later layers (toward x) run as usual. Returns the decoder means `[S, *input_shape]`.
        """
        if str(layer) not in self.memory_blocks:
            raise ValueError(f"layer must be one of the layers with memory {sorted(map(int, self.memory_blocks))}, got {layer!r}")
        block = self.memory_blocks[str(layer)]
        h = block.compose(tf.zeros_like(block.memory), tf.convert_to_tensor(block.memory))  # [S, W]
        decoder_index = len(self.hidden_units) - 1 - layer
        states, _ = self._generative_states(h, decoder_index + 1)
        return self.observation(states[-1] if states else h)["mean"]

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
