import keras

from zoo.models.hierarchical_vae import HierarchicalVAE

# Sonderby et al. (2016), MNIST: five stochastic layers, each reached by a two-layer MLP
# (casperkaae/LVAE: -mlp_layers 2 -hidden_sizes 512,256,128,64,32 -latent_sizes 64,32,16,8,4).
PAPER_LEVELS = tuple(
    {"hidden_units": (units, units), "latent_dim": latent}
    for units, latent in zip((512, 256, 128, 64, 32), (64, 32, 16, 8, 4))
)


@keras.saving.register_keras_serializable(package="zoo")
class LadderVAE(HierarchicalVAE):
    """Ladder VAE: top-down inference that corrects the generative model's own top-down path.

    The `HierarchicalVAE` with `inference="top_down"`: a deterministic bottom-up pass gives
    every level an approximate likelihood N(mu^_l, sigma^_l^2); sampling top-down, each lower
    level's posterior is its precision-weighted product with the generative p(z_l | z_{l+1}),
    whose parameters come from the same top-down networks that generate:

        q(z_{L-1} | x) = N(mu^_{L-1}, sigma^_{L-1}^2)
        q(z_l | z_{l+1}, x) = N(mu_q, sigma_q^2),  sigma_q^2 = (sigma^_l^-2 + sigma_p,l^-2)^-1,
                                                   mu_q = (mu^_l sigma^_l^-2 + mu_p,l sigma_p,l^-2) sigma_q^2

    The defaults are the paper's MNIST model (batch normalization, leaky ReLU, five levels
    512-256-128-64-32 of two layers each, latents 64-32-16-8-4). Warm-up (`kl_warmup_steps`)
    raises the KL weight from 0 to 1, as the paper trains (200 epochs); the authors' code
    also allows separate inference and generative top-down networks, the paper's model
    shares them, as here.

    Args:
        input_shape: tuple of ints, shape of one example. Default `(28, 28, 1)`.
        levels: sequence of `{"hidden_units": (ints), "latent_dim": int}` from x upward. Default: the paper's five.
        activation: str, a Keras activation or `"leaky_relu_0.01"` (`zoo.validation.EXTRA_ACTIVATIONS`). Default
            `"leaky_relu_0.01"`: the paper says leaky ReLU; its authors' code uses Lasagne's `leaky_rectify`,
            slope 0.01 below zero (casperkaae/LVAE), where Keras's `leaky_relu` has 0.2.
        batch_norm: bool. Default `True`.
        likelihood, num_importance_samples, seed: as in `HierarchicalVAE`.
        kl_warmup_steps: int >= 0, updates of KL warm-up. Default `0`.

    Example:

    >>> import zoo
    >>> model = zoo.LadderVAE(
    ...     input_shape=(8, 8, 1),
    ...     levels=[{"hidden_units": (16,), "latent_dim": 4}, {"hidden_units": (8,), "latent_dim": 2}], seed=0)
    >>> model.encode(np.zeros((2, 8, 8, 1), np.float32))["mean_0"].shape
    TensorShape([2, 4])

    References:
        Sonderby, Raiko, Maaloe, Sonderby & Winther, "Ladder Variational Autoencoders", NIPS 2016;
        code: casperkaae/LVAE.
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        levels=PAPER_LEVELS,
        activation="leaky_relu_0.01",
        batch_norm=True,
        likelihood="bernoulli",
        num_importance_samples=1,
        kl_warmup_steps=0,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            input_shape=input_shape,
            levels=levels,
            inference="top_down",
            activation=activation,
            batch_norm=batch_norm,
            likelihood=likelihood,
            num_importance_samples=num_importance_samples,
            kl_warmup_steps=kl_warmup_steps,
            seed=seed,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        del config["inference"]
        return config
