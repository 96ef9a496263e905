import keras

from zoo import validation
from zoo.models.hierarchical_vae import HierarchicalVAE


@keras.saving.register_keras_serializable(package="zoo")
class VAE(HierarchicalVAE):
    """Variational autoencoder with MLP encoder and decoder; IWAE training when K > 1.

        q(z|x) = N(mu(x), diag sigma^2(x)),  p(z) = N(0, I),  p(x|z) = Bernoulli or Gaussian
        L_K(x) = E log (1/K) sum_k p(x, z_k) / q(z_k|x)         (K = 1: the ELBO)

    The one-level `HierarchicalVAE`: the encoder and decoder are `DenseStack`s (Dense ->
    BatchNorm -> activation); the decoder mirrors the encoder's widths. With the defaults
    this is the MNIST 500-500-100 VAE of Li et al. (2016), Table 3: 1,440,984 trainable
    parameters.

    Args:
        input_shape: tuple of ints, shape of one example. Default `(28, 28, 1)`.
        hidden_units: tuple of ints, encoder widths from x upward. Default `(500, 500)`.
        latent_dim: int, size of z. Default `100`.
        activation: str, hidden activation. Default `"relu"`.
        batch_norm: bool, batch normalization on every hidden layer. Default `True`.
        likelihood: `"bernoulli"` (binary data) or `"gaussian"` (continuous). Default `"bernoulli"`.
        num_importance_samples: int, K of the training bound. Default `1`.
        kl_warmup_steps: int >= 0, updates over which the KL weight rises to 1 (0: none). Default `0`.
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
        kl_warmup_steps=0,
        seed=None,
        **kwargs,
    ):
        self.hidden_units = validation.positive_ints("hidden_units", hidden_units)
        super().__init__(
            input_shape=input_shape,
            levels=[{
                "hidden_units": self.hidden_units,
                "latent_dim": validation.positive_int("latent_dim", latent_dim),
                **self.memory_settings(),
            }],
            inference="bottom_up",
            activation=activation,
            batch_norm=batch_norm,
            likelihood=likelihood,
            num_importance_samples=num_importance_samples,
            kl_warmup_steps=kl_warmup_steps,
            seed=seed,
            **kwargs,
        )

    # The one level's networks, under the names the VAE literature (and Li et al.'s code) uses.
    @property
    def encoder(self):
        return self.encoders[0]

    @property
    def posterior(self):
        return self.posteriors[0]

    @property
    def decoder(self):
        return self.decoders[0]

    def memory_settings(self):
        """The level's memory keys (`num_slots`, ...; see `HierarchicalVAE`): none for the VAE."""
        return {}

    def get_config(self):
        config = super().get_config()
        for key in ("levels", "inference"):
            del config[key]
        return {**config, "hidden_units": self.hidden_units, "latent_dim": self.latent_dim}
