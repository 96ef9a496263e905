"""The level stack: the structure of every MLP latent-variable model of the zoo."""

import math

import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers import DenseStack, GaussianLatent, LikelihoodHead, PixelCNN
from zoo.models.level_stack import LevelStack

INFERENCES = ("bottom_up", "top_down")


@keras.saving.register_keras_serializable(package="zoo")
class HierarchicalVAE(LevelStack):
    """A VAE with a stack of MLP stochastic levels: a bottom-up network, a top-down generative path.

    Level l (0 = next to x) has deterministic layers `hidden_units` and a diagonal Gaussian
    latent z_l of size `latent_dim`. The generative path is top-down:

        p(z_{L-1}) = N(0, I),  p(z_l | z_{l+1}) = N(mu_l(d_l), diag sigma_l^2(d_l)),  p(x | z_0)

    with d_l = decoder_{l+1}(z_{l+1}), each decoder mirroring its level's `hidden_units`.
    The inference network is one of

    - `"bottom_up"` (Burda et al. 2016): q(z_0 | x) q(z_1 | z_0) ... q(z_{L-1} | z_{L-2}),
      each level's encoder reading the sample below it. One level is the VAE, and with
      K > 1 the IWAE.
    - `"top_down"` (Sonderby et al. 2016, the Ladder VAE): a deterministic bottom-up pass
      a_l = encoder_l(a_{l-1}) gives each level a Gaussian N(mu^_l, sigma^_l^2); the top
      level's posterior is that Gaussian, every lower one its precision-weighted product
      with the generative p(z_l | z_{l+1}), sampled top-down, so the top-down path is the
      generative model's own (shared between inference and generation):

          sigma_q^2 = 1 / (sigma^^-2 + sigma_p^-2),   mu_q = (mu^ sigma^^-2 + mu_p sigma_p^-2) sigma_q^2

    The bound is L_K (K = 1: the ELBO, with every KL in closed form where its two
    Gaussians share their conditioning, Monte Carlo otherwise). `kl_warmup_steps` > 0
    trains on log p(x|z) + beta (log p(z) - log q(z)) with beta rising linearly from 0 to 1
    over that many updates (Sonderby et al.'s warm-up); the `bound` metric is always the
    bound itself. Training reports the KL of every level (`kl_0` ...; with more than one
    level) and `active_units`, the units whose KL over the batch exceeds 0.1 nats, so a
    collapsing posterior shows while training.

    A level may carry a memory in its generative layers (`num_slots`, one per hidden layer,
    with `attention` and `composition`: see `zoo.layers.MemoryBlock`); `zoo.MemVAE` is the
    one-level stack with memory.

    `decoder_type="pixelcnn"` replaces the factorised p(x | z_0) by a `zoo.layers.PixelCNN`
    conditioned on level 0's decoder features (PixelVAE, Gulrajani et al. 2017): log p(x | z_0)
    stays exact, so the bound and `log_likelihood` are unchanged; `sample` draws the pixels
    one by one in a compiled loop, `decode(z)` returns the greedy image (each pixel its
    rounded conditional mean) as `image` with the parameters along it, and `reconstruct` the
    teacher-forced conditional means p(x_ij | x_<ij, z_0 = posterior means).

    Args:
        input_shape: tuple of ints, shape of one example. Default `(28, 28, 1)`.
        levels: sequence of dicts from x upward, each `{"hidden_units": (ints), "latent_dim": int}`
            (optionally `"num_slots"`, `"attention"`, `"composition"`). Default: Burda et al.'s
            two stochastic layers, 784-200-200-100 and 100-100-50.
        inference: `"bottom_up"` or `"top_down"`. Default `"bottom_up"`.
        activation: str, hidden activation. Default `"tanh"`.
        batch_norm: bool, batch normalization on every hidden layer. Default `False`.
        likelihood: `"bernoulli"` or `"gaussian"`. Default `"bernoulli"`.
        num_importance_samples: int, K of the training bound. Default `1`.
        kl_warmup_steps: int >= 0, updates over which the KL weight rises to 1 (0: none). Default `0`.
        decoder_type: `"factorized"` (a `LikelihoodHead`) or `"pixelcnn"`. Default `"factorized"`.
        pixelcnn_filters, pixelcnn_blocks, pixelcnn_kernel_size: the PixelCNN's width, depth and
            kernel (see `zoo.layers.PixelCNN`; unused when factorised). Defaults 32, 4, 3.
        concatenate_input: bool, the PixelCNN reads the image (False: the no-concatenation
            ablation, a factorised decoder built from the same blocks). Default `True`.
        seed: int or None, makes the initial weights and sampling reproducible. Default `None`.

    Example:

    >>> import zoo
    >>> model = zoo.HierarchicalVAE(
    ...     input_shape=(8, 8, 1),
    ...     levels=[{"hidden_units": (16,), "latent_dim": 4}, {"hidden_units": (8,), "latent_dim": 2}],
    ...     num_importance_samples=5, seed=0)
    >>> model.compile()
    >>> x = tf.cast(tf.random.uniform((32, 8, 8, 1)) < 0.5, tf.float32)
    >>> history = model.fit(x, epochs=1, batch_size=16, verbose=0)
    >>> sorted(k for k in history.history if k.startswith("kl_"))
    ['kl_0', 'kl_1']
    >>> model.sample(3, seed=1, temperature=0.7).shape
    TensorShape([3, 8, 8, 1])

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (sec. 5).
        Sonderby, Raiko, Maaloe, Sonderby & Winther, "Ladder Variational Autoencoders", NIPS 2016.
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        levels=({"hidden_units": (200, 200), "latent_dim": 100}, {"hidden_units": (100, 100), "latent_dim": 50}),
        inference="bottom_up",
        activation="tanh",
        batch_norm=False,
        likelihood="bernoulli",
        num_importance_samples=1,
        kl_warmup_steps=0,
        decoder_type="factorized",
        pixelcnn_filters=32,
        pixelcnn_blocks=4,
        pixelcnn_kernel_size=3,
        concatenate_input=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            input_shape=input_shape,
            likelihood=likelihood,
            num_importance_samples=num_importance_samples,
            kl_warmup_steps=kl_warmup_steps,
            seed=seed,
            **kwargs,
        )
        if inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}, got {inference!r}")
        self.levels = validation.levels(levels)
        self.inference = inference
        self.activation = activation
        self.batch_norm = validation.boolean("batch_norm", batch_norm)
        self.latent_dim = self.levels[-1]["latent_dim"]
        # Level l's sub-layers are seeded 10 l + 1.. from `seed`: the same seed, the same
        # initial weights (and the one-level stack keeps the VAE's seeds 1-4).
        seed_of = lambda l, i: validation.derived_seed(self.seed, 10 * l + i)  # noqa: E731
        self.encoders, self.posteriors, self.decoders, self.priors = [], [], [], []
        for l, level in enumerate(self.levels):
            suffix = "" if l == 0 else f"_{l}"
            memory = {}
            if "num_slots" in level:
                memory = dict(
                    num_slots=level["num_slots"][::-1], attention=level["attention"], composition=level["composition"]
                )
            self.encoders.append(DenseStack(
                level["hidden_units"], activation, batch_norm, seed=seed_of(l, 1), name=f"encoder{suffix}"
            ))
            self.posteriors.append(GaussianLatent(level["latent_dim"], seed=seed_of(l, 2), name=f"posterior{suffix}"))
            self.decoders.append(DenseStack(
                level["hidden_units"][::-1], activation, batch_norm, **memory, seed=seed_of(l, 3), name=f"decoder{suffix}"
            ))
            if l < len(self.levels) - 1:  # p(z_l | z_{l+1}) reads decoder l+1
                self.priors.append(GaussianLatent(level["latent_dim"], seed=seed_of(l, 5), name=f"prior{suffix}"))
        self.set_decoder_options(decoder_type, pixelcnn_filters, pixelcnn_blocks, pixelcnn_kernel_size,
                                 concatenate_input)
        if decoder_type == "pixelcnn":
            self.observation = PixelCNN(
                self.input_shape, likelihood, pixelcnn_filters, pixelcnn_blocks, pixelcnn_kernel_size,
                condition_shape=(self.levels[0]["hidden_units"][0],), concatenate_input=concatenate_input,
                seed=seed_of(0, 4), name="observation",
            )
            self.rows_per_chunk = 128  # rows carry the PixelCNN's feature maps
        else:
            self.observation = LikelihoodHead(self.input_shape, likelihood, seed=seed_of(0, 4), name="observation")
        self.prior = distributions.standard_normal(self.latent_dim)
        self.track_groups(len(self.levels))
        self.build((None,) + self.input_shape)

    def build(self, input_shape):
        width = math.prod(self.input_shape)
        for l, level in enumerate(self.levels):
            self.encoders[l].build((None, width))
            width = level["hidden_units"][-1]
            self.posteriors[l].build((None, width))
            self.decoders[l].build((None, level["latent_dim"]))
            if l < len(self.levels) - 1:
                self.priors[l].build((None, self.levels[l + 1]["hidden_units"][0]))
            if self.inference == "bottom_up":
                width = level["latent_dim"]
        features = (None, self.levels[0]["hidden_units"][0])
        self.observation.build([(None,) + self.input_shape, features] if self.decoder_type == "pixelcnn" else features)
        self.built = True

    def _flatten(self, x):
        return tf.reshape(tf.cast(x, tf.float32), [-1, math.prod(self.input_shape)])

    def _level_seed(self, level, seed):
        """Level `level`'s sampling seed: its posterior's generator, or one derived from a stateless `seed`."""
        if seed is None:
            return distributions.seed_pair(self.posteriors[level].seed_generator)
        seed = distributions.seed_pair(seed)
        return seed if level == 0 else tf.random.experimental.stateless_fold_in(seed, level)

    # The generative path --------------------------------------------------------------

    def _prior_parameters(self, level, z_above, training=False):
        """p(z_level | z_{level+1}): `{"mean", "log_variance"}` from the level above's sample."""
        return self.priors[level].parameters(self.decoders[level + 1](z_above, training=training))

    def _observation_parameters(self, z_0, training=False, memory_enabled=None, x=None, seed=None):
        """p(x | z_0): the likelihood's parameters, each `[..., *input_shape]`.

        With a PixelCNN decoder: teacher-forced on `x` `[B, *input_shape]` when given (z_0 `[..., B, D]`),
        else along an image it generates (drawn with a stateless `seed`, greedy without), returned as `image`.
        """
        return self._observe(self.decoders[0](z_0, training=training, memory_enabled=memory_enabled), x, seed)

    def _observe(self, features, x=None, seed=None):
        """The likelihood's parameters from level 0's decoder features `[..., F]` (see `_observation_parameters`)."""
        if self.decoder_type == "factorized":
            return self.observation(features)
        if x is None:
            return self.observation.generate(features, seed=seed)
        leading = tf.shape(features)[:-1]  # [S, B] or [B]
        flat = tf.reshape(features, [-1, features.shape[-1]])
        repeats = tf.shape(flat)[0] // tf.shape(x)[0]
        images = tf.tile(tf.cast(x, tf.float32), [repeats, 1, 1, 1])  # [S * B, ...], sample-major like `flat`
        params = self.observation([images, flat])
        return {
            key: tf.reshape(value, tf.concat([leading, tf.shape(value)[1:]], axis=0)) for key, value in params.items()
        }

    def _generate(self, z_top, temperature, seed, memory_enabled=None):
        """Ancestral sampling below the top level, stds scaled by `temperature` (0: the prior means).

        A PixelCNN decoder then draws the pixels (exactly, whatever the temperature) from `seed`, or
        with `seed=None` returns the greedy image.
        """
        z = z_top
        for level in reversed(range(self.num_levels - 1)):
            prior = self._prior_parameters(level, z)
            z = prior["mean"]
            if temperature != 0:
                noise = tf.random.stateless_normal(tf.shape(z), tf.random.experimental.stateless_fold_in(seed, level))
                z += temperature * tf.exp(0.5 * prior["log_variance"]) * noise
        pixel_seed = None if seed is None else tf.random.experimental.stateless_fold_in(seed, self.num_levels)
        return self._observation_parameters(z, memory_enabled=memory_enabled, seed=pixel_seed)

    # Inference ---------------------------------------------------------------------------

    def _posterior_terms(self, x, num_samples, training=False, seed=None):
        """Samples every level from q(z | x) and returns the bound's terms.

        A dict: `log_px_z`, `log_pz`, `log_qz` `[S, B]`; `kl_levels` `[B, L]` and `kl_units`
        `[B, sum latent_dim]` (each averaged over the S samples); `reconstruction`
        `[B, *input_shape]` (decoder mean of the first sample); `encoder_runs` (each level's
        `DenseStack.run`) and `decoder_run` (level 0's).
        """
        h = self._flatten(x)
        encoder_runs, kl_units = [], []
        log_pz, log_qz = 0.0, 0.0
        if self.inference == "bottom_up":
            samples = []
            for l in range(self.num_levels):
                run = self.encoders[l].run(h, training=training)
                encoder_runs.append(run)
                if l == 0:
                    posterior = self.posteriors[0](run["states"][-1], num_samples=num_samples, seed=seed)
                    z, log_q = posterior["z"], posterior["log_prob"]  # [S, B, D], [S, B]
                else:
                    posterior = self.posteriors[l].parameters(run["states"][-1])  # [S, B, D]
                    z = distributions.diagonal_gaussian(posterior["mean"], posterior["log_variance"]).sample(
                        seed=self._level_seed(l, seed)
                    )
                    log_q = tf.reduce_sum(objectives.gaussian_log_density(z, posterior["mean"], posterior["log_variance"]), -1)
                samples.append((z, posterior, log_q))
                h = z
            for l, (z, posterior, log_q) in enumerate(samples):
                log_qz += log_q
                if l == self.num_levels - 1:
                    log_pz += self.prior.log_prob(z)
                    kl = objectives.gaussian_kl(posterior["mean"], posterior["log_variance"], axis=None)
                else:
                    prior = self._prior_parameters(l, samples[l + 1][0], training)
                    log_p = objectives.gaussian_log_density(z, prior["mean"], prior["log_variance"])
                    log_pz += tf.reduce_sum(log_p, -1)
                    kl = objectives.gaussian_log_density(z, posterior["mean"], posterior["log_variance"]) - log_p
                kl_units.append(kl if kl.shape.rank == 2 else tf.reduce_mean(kl, axis=0))
            z_0 = samples[0][0]
        else:
            for l in range(self.num_levels):
                encoder_runs.append(self.encoders[l].run(h, training=training))
                h = encoder_runs[-1]["states"][-1]
            z, level_units = None, [None] * self.num_levels
            for l in reversed(range(self.num_levels)):
                features = encoder_runs[l]["states"][-1]
                if z is None:
                    posterior = self.posteriors[l](features, num_samples=num_samples, seed=self._level_seed(l, seed))
                    z = posterior["z"]
                    log_qz += posterior["log_prob"]
                    log_pz += self.prior.log_prob(z)
                    kl = objectives.gaussian_kl(posterior["mean"], posterior["log_variance"], axis=None)  # [B, D]
                else:
                    prior = self._prior_parameters(l, z, training)  # [S, B, D]
                    bottom_up = self.posteriors[l].parameters(features)  # [B, D]
                    mean, log_variance = objectives.precision_weighted(
                        bottom_up["mean"], bottom_up["log_variance"], prior["mean"], prior["log_variance"]
                    )
                    z = distributions.diagonal_gaussian(mean, log_variance).sample(seed=self._level_seed(l, seed))
                    log_qz += tf.reduce_sum(objectives.gaussian_log_density(z, mean, log_variance), -1)
                    log_pz += tf.reduce_sum(objectives.gaussian_log_density(z, prior["mean"], prior["log_variance"]), -1)
                    kl = tf.reduce_mean(objectives.gaussian_kl(
                        mean, log_variance, prior["mean"], prior["log_variance"], axis=None
                    ), axis=0)
                level_units[l] = kl
            kl_units = level_units
            z_0 = z
        decoder_run = self.decoders[0].run(z_0, training=training)
        params = self._observe(decoder_run["states"][-1], x)
        return {
            "log_px_z": distributions.log_likelihood(self.likelihood, params, x, len(self.input_shape)),
            "log_pz": log_pz,
            "log_qz": log_qz,
            "kl_levels": tf.stack([tf.reduce_sum(kl, axis=-1) for kl in kl_units], axis=-1),
            "kl_units": tf.concat(kl_units, axis=-1),
            "reconstruction": params["mean"][0],
            "encoder_runs": encoder_runs,
            "decoder_run": decoder_run,
        }

    def _posterior_means(self, x):
        """Every level's posterior mean on a deterministic pass (lower levels given the means above), z_0 first."""
        h = self._flatten(self.validate_inputs(x))
        means = []
        if self.inference == "bottom_up":
            for l in range(self.num_levels):
                posterior = self.posteriors[l].parameters(self.encoders[l](h))
                means.append(posterior)
                h = posterior["mean"]
            return means
        features = []
        for l in range(self.num_levels):
            h = self.encoders[l](h)
            features.append(h)
        means = [None] * self.num_levels
        means[-1] = self.posteriors[-1].parameters(features[-1])
        for l in reversed(range(self.num_levels - 1)):
            prior = self._prior_parameters(l, means[l + 1]["mean"])
            bottom_up = self.posteriors[l].parameters(features[l])
            mean, log_variance = objectives.precision_weighted(
                bottom_up["mean"], bottom_up["log_variance"], prior["mean"], prior["log_variance"]
            )
            means[l] = {"mean": mean, "log_variance": log_variance}
        return means

    # The protocol ------------------------------------------------------------------------

    def encode(self, x):
        """Posterior parameters on a deterministic pass: `mean`, `log_variance` of the top level `[B, latent_dim]`.

        With more than one level also `mean_l`, `log_variance_l` of every lower level l (given
        the posterior means above it, for top-down inference).
        """
        means = self._posterior_means(x)
        outputs = {"mean": means[-1]["mean"], "log_variance": means[-1]["log_variance"]}
        for l, level in enumerate(means[:-1]):
            outputs.update({f"mean_{l}": level["mean"], f"log_variance_{l}": level["log_variance"]})
        return outputs

    def encoder_features(self, x):
        """The first level's last deterministic hidden layer, `[B, hidden_units[-1]]` (recognition features)."""
        return self.encoders[0](self._flatten(self.validate_inputs(x)), training=False)

    def decode(self, z):
        """Likelihood parameters of p(x | z) for the top level's `z` `[N, latent_dim]`, each `[N, *input_shape]`.

        Lower levels take their prior means given the level above. Bernoulli:
        `{"logits", "mean"}`; Gaussian: `{"mean", "log_variance"}`.
        """
        return self._generate(validation.latents(z, self.latent_dim), 0.0, None)

    def reconstruct(self, x):
        """Decoder mean with every level at its posterior mean: deterministic, `[B, *input_shape]`.

        With a PixelCNN decoder, each pixel's conditional mean given the pixels of `x` before it.
        """
        x = self.validate_inputs(x)
        return self._observation_parameters(self._posterior_means(x)[0]["mean"], x=x)["mean"]

    def get_config(self):
        return {
            **super().get_config(),
            "levels": [dict(level) for level in self.levels],
            "inference": self.inference,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "decoder_type": self.decoder_type,
            "pixelcnn_filters": self.pixelcnn_filters,
            "pixelcnn_blocks": self.pixelcnn_blocks,
            "pixelcnn_kernel_size": self.pixelcnn_kernel_size,
            "concatenate_input": self.concatenate_input,
        }
