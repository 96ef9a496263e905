import keras

from zoo import distributions, validation
from zoo.layers.dense import Dense


@keras.saving.register_keras_serializable(package="zoo")
class GaussianLatent(keras.layers.Layer):
    """A diagonal Gaussian latent layer: mean and log-variance heads, seeded reparameterised samples.

        q(z | h) = N(z; W_mu h + b_mu, diag(exp(W_v h + b_v)))
        z_s = mu + exp(log_var / 2) * eps_s,   eps_s ~ N(0, I),  s = 1..S

    Returns a dict of tensors: `mean` and `log_variance` `[B, D]`, `z` `[S, B, D]` and
    `log_prob` `[S, B]` (log q(z_s | h)).

    Args:
        latent_dim: int, number of latent dimensions D.
        seed: int or None, seeds the initial weights and the layer's `keras.random.SeedGenerator`;
            a call given an explicit stateless `seed` uses that instead.

    Example:

    >>> layer = GaussianLatent(latent_dim=2, seed=0)
    >>> out = layer(keras.ops.ones((3, 5)), num_samples=4)
    >>> out["z"].shape
    TensorShape([4, 3, 2])
    """

    def __init__(self, latent_dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = validation.positive_int("latent_dim", latent_dim)
        self.seed = validation.constructor_seed(seed)
        # The heads compute in float32 under any dtype policy: the posterior's parameters feed
        # log-densities and exp(log_variance), which float16 would round to three digits.
        self.mean_head = Dense(self.latent_dim, kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, 0)), dtype="float32", name="mean")
        self.log_variance_head = Dense(self.latent_dim, kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, 1)), dtype="float32", name="log_variance")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.mean_head.build(input_shape)
        self.log_variance_head.build(input_shape)

    def parameters(self, inputs):
        """The Gaussian's `{"mean", "log_variance"}`, each `[..., latent_dim]` (no sampling)."""
        return {"mean": self.mean_head(inputs), "log_variance": self.log_variance_head(inputs)}

    def call(self, inputs, num_samples=1, seed=None):
        mean = self.mean_head(inputs)
        log_variance = self.log_variance_head(inputs)
        posterior = distributions.diagonal_gaussian(mean, log_variance)
        seed = distributions.seed_pair(self.seed_generator if seed is None else seed)
        z = posterior.sample(num_samples, seed=seed)  # [S, B, D]
        return {
            "mean": mean,
            "log_variance": log_variance,
            "z": z,
            "log_prob": posterior.log_prob(z),
        }

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "seed": self.seed}
