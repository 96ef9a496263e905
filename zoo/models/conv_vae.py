import math

import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers.conv_stack import ConvStack
from zoo.layers.gaussian_latent import GaussianLatent
from zoo.layers.skip_decoder import SkipDecoder
from zoo.models.base import LatentVariableModel


@keras.saving.register_keras_serializable(package="zoo")
class ConvVAE(LatentVariableModel):
    """A convolutional VAE with no memory: the unconditioned baseline of the convolutional VMA.

        q(z|x) = N(mu(f(x)), diag sigma^2(f(x))),  p(z) = N(0, I),  p(x|z) from a `SkipDecoder`

    f is a `ConvStack` with VMA's conv down path and the decoder is VMA's up-scaling path
    without the memory's skip connections, so comparing it with `vma_omniglot_conv`
    isolates what the memory adds. K > 1 trains the IWAE bound.

    Args:
        input_shape: tuple `(H, W, C)`. Default `(28, 28, 1)`.
        filters: tuple of ints, conv maps. Default `(32, 32, 64, 64, 64, 64)`.
        strides: tuple of ints, conv strides. Default `(1, 2, 1, 2, 1, 2)`.
        latent_dim: int, size of z. Default `64`.
        activation: str, hidden activation. Default `"relu"`.
        likelihood: `"bernoulli"` or `"gaussian"`. Default `"bernoulli"`.
        num_importance_samples: int, K of the training bound. Default `1`.
        seed: int or None. Default `None`.

    Example:

    >>> import zoo
    >>> model = zoo.ConvVAE(input_shape=(8, 8, 1), filters=(4, 8), strides=(1, 2), latent_dim=2, seed=0)
    >>> model.compile()
    >>> x = tf.cast(tf.random.uniform((16, 8, 8, 1)) < 0.5, tf.float32)
    >>> history = model.fit(x, epochs=1, batch_size=8, verbose=0)
    >>> model.sample(3).shape
    TensorShape([3, 8, 8, 1])

    References:
        Bornschein, Mnih, Zoran & Rezende, "Variational Memory Addressing in Generative Models", NIPS 2017
        (the VAE baseline of the Omniglot experiments).
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        filters=(32, 32, 64, 64, 64, 64),
        strides=(1, 2, 1, 2, 1, 2),
        latent_dim=64,
        activation="relu",
        likelihood="bernoulli",
        num_importance_samples=1,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            input_shape=input_shape, likelihood=likelihood, num_importance_samples=num_importance_samples,
            seed=seed, **kwargs,
        )
        if len(self.input_shape) != 3:
            raise ValueError(f"ConvVAE needs input_shape (height, width, channels), got {input_shape!r}")
        # Each sub-layer's seed is derived from `seed`: the same seed, the same initial weights.
        seed_of = lambda i: validation.derived_seed(self.seed, i)  # noqa: E731
        self.encoder = ConvStack(filters, strides, activation, seed=seed_of(1), name="encoder")
        self.filters, self.strides = self.encoder.filters, self.encoder.strides
        self.latent_dim = validation.positive_int("latent_dim", latent_dim)
        self.activation = activation
        self.posterior = GaussianLatent(self.latent_dim, seed=seed_of(2), name="posterior")
        self.decoder = SkipDecoder(
            self.input_shape, self.filters, self.strides, activation, likelihood, skip_connections=False,
            seed=seed_of(3), name="decoder",
        )
        self.prior = distributions.standard_normal(self.latent_dim)
        self.rows_per_chunk = 1024  # rows carry feature maps
        self.build((None,) + self.input_shape)

    def build(self, input_shape):
        self.encoder.build((None,) + self.input_shape)
        self.posterior.build((None, math.prod(self.encoder.feature_shapes(self.input_shape)[-1])))
        self.decoder.build((None, self.latent_dim))
        self.built = True

    def _posterior(self, x, num_samples=1, seed=None):
        top = self.encoder(x)[-1]
        return self.posterior(tf.reshape(top, [-1, math.prod(top.shape[1:])]), num_samples=num_samples, seed=seed)

    def _decoder_params(self, z):
        """Likelihood parameters for latents `[..., D]`, shaped `[..., *input_shape]`."""
        params = self.decoder(tf.reshape(z, [-1, self.latent_dim]))
        shape = tf.concat([tf.shape(z)[:-1], self.input_shape], axis=0)
        return {name: tf.reshape(value, shape) for name, value in params.items()}

    def _terms(self, x, num_samples, seed=None):
        posterior = self._posterior(x, num_samples, seed)
        params = self._decoder_params(posterior["z"])  # [S, B, ...]
        log_px_z = distributions.log_likelihood(self.likelihood, params, x, len(self.input_shape))
        log_weights = log_px_z + self.prior.log_prob(posterior["z"]) - posterior["log_prob"]
        return posterior, params, log_px_z, log_weights

    def call(self, inputs, training=False):
        self.check_input_spec(inputs)
        posterior, params, log_px_z, log_weights = self._terms(tf.cast(inputs, tf.float32), self.num_importance_samples)
        return {
            "log_weights": tf.transpose(log_weights),  # [B, K]
            "log_px_z": tf.transpose(log_px_z),  # [B, K]
            "kl": objectives.gaussian_kl(posterior["mean"], posterior["log_variance"]),
            "reconstruction": params["mean"][0],
        }

    def log_importance_weights(self, x, num_samples, seed):
        return self._terms(x, num_samples, seed)[3]

    def encode(self, x):
        """Posterior parameters `{"mean", "log_variance"}` of q(z|x), each `[B, latent_dim]`."""
        posterior = self._posterior(self.validate_inputs(x), seed=0)  # z unused
        return {"mean": posterior["mean"], "log_variance": posterior["log_variance"]}

    def decode(self, z):
        """Likelihood parameters of p(x|z) for `z` `[N, latent_dim]`, each `[N, *input_shape]`."""
        return self._decoder_params(validation.latents(z, self.latent_dim))

    def sample(self, num_samples, *, seed=None, temperature=1.0):
        """Draws z ~ p(z), its standard deviation times `temperature` (float >= 0; 0: z = 0), and
        returns the decoder mean, `[num_samples, *input_shape]`."""
        num_samples = validation.num_samples(num_samples)
        temperature = validation.temperature(temperature)
        seed = distributions.seed_pair(validation.seed(seed) if seed is not None else self.seed_generator)
        return self._decoder_params(temperature * self.prior.sample(num_samples, seed=seed))["mean"]

    def reconstruct(self, x):
        """Decoder mean at the posterior mean, `[B, *input_shape]`: deterministic."""
        return self.decode(self.encode(x)["mean"])["mean"]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "latent_dim": self.latent_dim,
            "activation": self.activation,
        }
