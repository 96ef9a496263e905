import math

import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers import DenseStack, GaussianLatent, LikelihoodHead
from zoo.models.base import LatentVariableModel


@keras.saving.register_keras_serializable(package="zoo")
class VAE(LatentVariableModel):
    """Variational autoencoder with MLP encoder and decoder; IWAE training when K > 1.

        q(z|x) = N(mu(x), diag sigma^2(x)),  p(z) = N(0, I),  p(x|z) = Bernoulli or Gaussian
        L_K(x) = E log (1/K) sum_k p(x, z_k) / q(z_k|x)         (K = 1: the ELBO)

    The encoder and decoder are `DenseStack`s (Dense -> BatchNorm -> activation); the
    decoder mirrors the encoder's widths. With the defaults this is the MNIST
    500-500-100 VAE of Li et al. (2016), Table 3: 1,440,984 trainable parameters.

    Args:
        input_shape: tuple of ints, shape of one example. Default `(28, 28, 1)`.
        hidden_units: tuple of ints, encoder widths from x upward. Default `(500, 500)`.
        latent_dim: int, size of z. Default `100`.
        activation: str, hidden activation. Default `"relu"`.
        batch_norm: bool, batch normalization on every hidden layer. Default `True`.
        likelihood: `"bernoulli"` (binary data) or `"gaussian"` (continuous). Default `"bernoulli"`.
        num_importance_samples: int, K of the training bound. Default `1`.
        seed: int or None, makes the initial weights and sampling reproducible. Default `None`.

    Example:

    >>> import zoo
    >>> model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, seed=0)
    >>> model.compile()
    >>> x = tf.cast(tf.random.uniform((32, 8, 8, 1)) < 0.5, tf.float32)
    >>> history = model.fit(x, epochs=1, batch_size=16, verbose=0)
    >>> model.log_likelihood(x[:4], num_samples=100).shape
    TensorShape([4])

    References:
        Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
        Li, Zhu & Zhang, "Learning to Generate with Memory", ICML 2016 (architectures, Table 3).
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        hidden_units=(500, 500),
        latent_dim=100,
        activation="relu",
        batch_norm=True,
        likelihood="bernoulli",
        num_importance_samples=1,
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
        self.hidden_units = validation.positive_ints("hidden_units", hidden_units)
        self.latent_dim = validation.positive_int("latent_dim", latent_dim)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        # Each sub-layer's seed is derived from `seed`: the same seed, the same initial weights.
        seed_of = lambda i: validation.derived_seed(self.seed, i)  # noqa: E731
        self.encoder = DenseStack(self.hidden_units, activation, batch_norm, seed=seed_of(1), name="encoder")
        self.posterior = GaussianLatent(self.latent_dim, seed=seed_of(2), name="posterior")
        self.decoder = DenseStack(self.hidden_units[::-1], activation, batch_norm, seed=seed_of(3), name="decoder")
        self.observation = LikelihoodHead(self.input_shape, likelihood, seed=seed_of(4), name="observation")
        self.prior = distributions.standard_normal(self.latent_dim)
        self.build((None,) + self.input_shape)

    def build(self, input_shape):
        num_features = math.prod(self.input_shape)
        self.encoder.build((None, num_features))
        self.posterior.build((None, self.hidden_units[-1]))
        self.decoder.build((None, self.latent_dim))
        self.observation.build((None, self.hidden_units[0]))
        self.built = True

    def _flatten(self, x):
        return tf.reshape(tf.cast(x, tf.float32), [-1, math.prod(self.input_shape)])

    def _decoder_params(self, z, training=False):
        return self.observation(self.decoder(z, training=training))

    def _posterior_terms(self, x, num_samples, training, seed=None):
        """Samples z ~ q(z|x) and returns the log densities of the bound, each `[S, B]`."""
        posterior = self.posterior(
            self.encoder(self._flatten(x), training=training), num_samples=num_samples, seed=seed
        )
        params = self._decoder_params(posterior["z"], training=training)
        log_px_z = distributions.log_likelihood(self.likelihood, params, x, len(self.input_shape))
        log_pz = self.prior.log_prob(posterior["z"])
        return posterior, params, log_px_z, log_pz

    def call(self, inputs, training=False):
        self.check_input_spec(inputs)
        posterior, params, log_px_z, log_pz = self._posterior_terms(
            inputs, self.num_importance_samples, training
        )
        return {
            "log_weights": tf.transpose(log_px_z + log_pz - posterior["log_prob"]),  # [B, K]
            "log_px_z": tf.transpose(log_px_z),  # [B, K]
            "kl": objectives.gaussian_kl(posterior["mean"], posterior["log_variance"]),
            "reconstruction": params["mean"][0],
        }

    def log_importance_weights(self, x, num_samples, seed):
        posterior, _, log_px_z, log_pz = self._posterior_terms(x, num_samples, False, seed)
        return log_px_z + log_pz - posterior["log_prob"]

    def encode(self, x):
        """Posterior parameters `{"mean", "log_variance"}` of q(z|x), each `[B, latent_dim]`."""
        x = self.validate_inputs(x)
        posterior = self.posterior(self.encoder(self._flatten(x), training=False), seed=0)  # z unused
        return {"mean": posterior["mean"], "log_variance": posterior["log_variance"]}

    def encoder_features(self, x):
        """The encoder's last deterministic hidden layer, `[B, hidden_units[-1]]` (recognition features)."""
        return self.encoder(self._flatten(self.validate_inputs(x)), training=False)

    def decode(self, z):
        """Likelihood parameters of p(x|z) for `z` `[N, latent_dim]`, each `[N, *input_shape]`.

        Bernoulli: `{"logits", "mean"}`; Gaussian: `{"mean", "log_variance"}`.
        """
        return self._decoder_params(validation.latents(z, self.latent_dim))

    def sample(self, num_samples, *, seed=None, **decode_options):
        """Draws z ~ p(z) and returns the decoder mean E[x|z], `[num_samples, *input_shape]`.

        `decode_options` go to `decode` (e.g. MemVAE's `memory_enabled`).
        """
        num_samples = validation.num_samples(num_samples)
        seed = distributions.seed_pair(validation.seed(seed) if seed is not None else self.seed_generator)
        return self.decode(self.prior.sample(num_samples, seed=seed), **decode_options)["mean"]

    def reconstruct(self, x):
        """Decoder mean at the posterior mean, E[x | z = mu(x)]: deterministic, `[B, *input_shape]`."""
        return self.decode(self.encode(x)["mean"])["mean"]

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "latent_dim": self.latent_dim,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
        }
