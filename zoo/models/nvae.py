"""NVAE (Vahdat & Kautz 2020): a deep hierarchical VAE of convolutional latent groups over several scales."""

import contextlib
import math

import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.distributions import tfd
from zoo.layers.pixelcnn import PixelCNN
from zoo.layers.residual_cell import ResidualCell
from zoo.layers.spectral_norm_regularizer import SpectralNormRegularizer, conv_kernel_matrix
from zoo.models.level_stack import LevelStack

# The NVAE channel multiplier: channels double when the resolution halves.
CHANNEL_MULT = 2
NVAE_LIKELIHOODS = ("bernoulli", "gaussian", "logistic_mixture")


@keras.saving.register_keras_serializable(package="zoo")
class NVAE(LevelStack):
    """NVAE: a hierarchy of convolutional latent groups over scales, inferred and generated top-down.

    A bottom-up (encoder) tower of residual cells gives one feature map per latent group; the
    top-down path starts from a learned constant map h and, for every group g (the coarsest
    scale first), runs decoder cells on h, predicts the prior p(z_g | z_<g) from h, samples z_g
    and merges it into h (concat + 1x1 conv, the authors' `DecCombinerCell`):

        p(z_0) = N(0, I)                         q(z_0 | x) = N(mu(e_0), sigma(e_0))
        p(z_g | z_<g) = N(mu_p(h_g), sigma_p(h_g))
        q(z_g | z_<g, x) = N(mu_p + dmu, sigma_p * dsigma),  (dmu, log dsigma) = head(e_g + conv1x1(h_g))

    (the residual Normal, eq. 2; every Normal as the authors' `Normal`: mean and log-scale
    soft-clamped to (-5, 5), scale floored at 0.01). Between scales the encoder halves the
    resolution (stride-2 cells, channels x 2) and the decoder doubles it (upsampling cells,
    channels / 2); `preprocess_blocks` blocks of `preprocess_cells` cells (the last one stride 2)
    sit between the stem and the tower and their mirror (`postprocess_cells`, the first one
    upsampling) between the tower and the likelihood head (ELU, 3x3 conv). Inputs whose height
    or width do not divide by 2^(preprocess_blocks + len(scales) - 1) are zero-padded inside the
    model and the output cropped, as the authors pad MNIST to 32 x 32.

    Each group's KL is in closed form (Normal vs Normal, given the samples above it). Training
    maximises the ELBO (K = 1) or the IWAE bound; with `kl_warmup_steps` the KL weight beta
    rises linearly to 1 and with `kl_balancing` the KL term during warm-up is
    `zoo.objectives.balanced_kl` (the authors' `kl_balancer`, "square" alpha), the plain ELBO
    after. `spectral_regularization` lambda > 0 adds lambda (L_SR + L_BN) to the training loss
    (`zoo.layers.SpectralNormRegularizer` over every convolution, the BN scale penalty).

    Latent groups are ordered top-down (group 0 is the top one): `kl_levels` columns, `kl_i`
    metrics, `encode`'s keys. The top group's latent is served flat: `latent_dim` = its
    height x width x channels, `decode(z)` takes `[N, latent_dim]` and `sample` draws it from
    `prior`, N(0, I).

    Differences from the authors' code: no normalizing flows (`--num_nf`), no weight
    normalization, the top prior is N(0, I) (the authors' floor makes it N(0, 1.01^2)), and the
    discretized logistic mixture has one mixture per channel, independent across R, G, B (the
    authors' `DiscMixLogistic` shares the mixture weights over the channels and couples their
    means autoregressively; see `zoo.distributions.discretized_logistic_mixture_log_prob`).

    `decoder_type="pixelcnn"` replaces the likelihood head by a `zoo.layers.PixelCNN` fed the
    last top-down feature map (after the post-processing cells, so it carries every group,
    the last stochastic one included) and, with `concatenate_input`, the image: the
    hierarchical PixelVAE (Gulrajani et al. 2017). log p(x | z) stays exact, so the bound and
    `log_likelihood` are unchanged; `sample` draws the pixels one by one in a compiled loop,
    `decode(z)` returns the greedy image (`image`, each pixel its rounded conditional mean) and
    the parameters along it, `reconstruct` the conditional means given the pixels of x before
    each one. The spectral regulariser covers the top-down and bottom-up convolutions, not the
    PixelCNN's.

    Args:
        input_shape: tuple `(H, W, C)`. Default `(28, 28, 1)`.
        scales: list of dicts from the top (coarsest) scale down, each `{"groups": int,
            "latent_channels": int}`. Default two scales of 2 groups of 4 channels.
        channels: int, the stem's width (doubled at every halving). Default 16.
        encoder_cells_per_group, decoder_cells_per_group: ints >= 1, residual cells per group. Default 1.
        preprocess_blocks: int >= 0, resolution halvings before the tower (the authors'
            `--num_preprocess_blocks`, also the post-processing blocks). Default 1.
        preprocess_cells, postprocess_cells: ints >= 1, cells per pre-/post-processing block. Default 1.
        likelihood: `"bernoulli"` (binary images), `"gaussian"` or `"logistic_mixture"` (8-bit
            images k / 255, the paper's CIFAR-10 / CelebA likelihood). Default `"bernoulli"`.
        num_importance_samples: int, K of the training bound. Default 1.
        kl_warmup_steps: int >= 0, updates over which the KL weight rises to 1 from the authors' floor 1e-4
            (`zoo.objectives.kl_warmup`; they warm up over 30% of the training updates). Default 0.
        kl_balancing: bool, balance the groups' KL during warm-up (needs K = 1). Default True.
        spectral_regularization: float >= 0, lambda of L_SR + L_BN (0: off). Default 0.
        squeeze_excitation: bool, SE in every cell (`--use_se`). Default True.
        num_mixtures: int >= 1, components of the logistic mixture (`--num_mixture_dec`; unused by
            the other likelihoods). Default 10.
        decoder_type: `"factorized"` (a 3x3 convolution to the likelihood's parameters) or `"pixelcnn"`.
            Default `"factorized"`.
        pixelcnn_filters, pixelcnn_blocks, pixelcnn_kernel_size: the PixelCNN's width, depth and kernel
            (unused when factorised). Defaults 32, 4, 3.
        concatenate_input: bool, the PixelCNN reads the image (False: the no-concatenation ablation,
            a factorised decoder built from the same blocks). Default True.
        seed: int or None. Default None.

    Example:

    >>> import zoo
    >>> model = zoo.NVAE(input_shape=(8, 8, 1), scales=[{"groups": 1, "latent_channels": 2},
    ...     {"groups": 2, "latent_channels": 2}], channels=4, seed=0)
    >>> model.compile()
    >>> x = tf.cast(tf.random.uniform((8, 8, 8, 1)) < 0.5, tf.float32)
    >>> history = model.fit(x, epochs=1, batch_size=4, verbose=0)
    >>> model.sample(3, seed=1, temperature=0.7).shape
    TensorShape([3, 8, 8, 1])

    References:
        Vahdat & Kautz, "NVAE: A Deep Hierarchical Variational Autoencoder", NeurIPS 2020; NVlabs/NVAE `model.py`.
    """

    group_order = "from the top down"
    kl_warmup_floor = 1e-4  # NVlabs/NVAE's --kl_const_coeff: beta never falls below it

    def __init__(
        self,
        input_shape=(28, 28, 1),
        scales=({"groups": 2, "latent_channels": 4}, {"groups": 2, "latent_channels": 4}),
        channels=16,
        encoder_cells_per_group=1,
        decoder_cells_per_group=1,
        preprocess_blocks=1,
        preprocess_cells=1,
        postprocess_cells=1,
        likelihood="bernoulli",
        num_importance_samples=1,
        kl_warmup_steps=0,
        kl_balancing=True,
        spectral_regularization=0.0,
        squeeze_excitation=True,
        num_mixtures=10,
        decoder_type="factorized",
        pixelcnn_filters=32,
        pixelcnn_blocks=4,
        pixelcnn_kernel_size=3,
        concatenate_input=True,
        seed=None,
        **kwargs,
    ):
        if likelihood not in NVAE_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {NVAE_LIKELIHOODS}, got {likelihood!r}")
        super().__init__(
            input_shape=input_shape, likelihood=likelihood, num_importance_samples=num_importance_samples,
            kl_warmup_steps=kl_warmup_steps, seed=seed, **kwargs,
        )
        if len(self.input_shape) != 3:
            raise ValueError(f"NVAE needs input_shape (height, width, channels), got {input_shape!r}")
        self.scales = validation.scales(scales)
        self.channels = validation.positive_int("channels", channels)
        self.encoder_cells_per_group = validation.positive_int("encoder_cells_per_group", encoder_cells_per_group)
        self.decoder_cells_per_group = validation.positive_int("decoder_cells_per_group", decoder_cells_per_group)
        self.preprocess_blocks = validation.positive_int("preprocess_blocks", preprocess_blocks, minimum=0)
        self.preprocess_cells = validation.positive_int("preprocess_cells", preprocess_cells)
        self.postprocess_cells = validation.positive_int("postprocess_cells", postprocess_cells)
        self.kl_balancing = validation.boolean("kl_balancing", kl_balancing)
        if self.kl_balancing and self.num_importance_samples != 1:
            raise ValueError(
                "kl_balancing weighs the closed-form KL terms of the ELBO, so it needs num_importance_samples=1, "
                f"got {self.num_importance_samples}"
            )
        self.spectral_regularization = validation.non_negative_float("spectral_regularization", spectral_regularization)
        self.squeeze_excitation = validation.boolean("squeeze_excitation", squeeze_excitation)
        self.num_mixtures = validation.positive_int("num_mixtures", num_mixtures)
        self.set_decoder_options(decoder_type, pixelcnn_filters, pixelcnn_blocks, pixelcnn_kernel_size,
                                 concatenate_input)

        # Geometry: the tower's coarsest map is the padded input / 2^halvings.
        height, width, self.image_channels = self.input_shape
        halvings = self.preprocess_blocks + len(self.scales) - 1
        unit = 2**halvings
        self.padded_shape = (-(-height // unit) * unit, -(-width // unit) * unit)
        # Scale i (0 = top): its resolution and width.
        self.scale_shapes = [
            (self.padded_shape[0] // unit * 2**i, self.padded_shape[1] // unit * 2**i) for i in range(len(self.scales))
        ]
        self.scale_channels = [self.channels * CHANNEL_MULT ** (halvings - i) for i in range(len(self.scales))]
        self.group_scales = [i for i, scale in enumerate(self.scales) for _ in range(scale["groups"])]
        self.num_groups = len(self.group_scales)
        self.group_shapes = [
            (*self.scale_shapes[i], self.scales[i]["latent_channels"]) for i in self.group_scales
        ]  # each group's latent map (h, w, c)
        self.latent_dim = math.prod(self.group_shapes[0])
        self.levels = self.group_shapes  # LevelStack counts levels by this list
        self.rows_per_chunk = 256  # rows carry feature maps

        self._num_seeded = 0
        self.cells, self.plain_convs = [], []
        # Bottom-up path.
        self.stem = self._conv(self.channels, 3, "stem")
        self.preprocess = []
        width_now = self.channels
        for b in range(self.preprocess_blocks):
            for c in range(self.preprocess_cells):
                last = c == self.preprocess_cells - 1
                out = width_now * CHANNEL_MULT if last else width_now
                self.preprocess.append(self._cell(out, "encoder", stride=2 if last else 1, name=f"preprocess_{b}_{c}"))
                width_now = out
        # Encoder tower, from the finest latent scale up: per group its cells; between scales a stride-2 cell.
        self.encoder_cells, self.encoder_down = [], []
        for i in reversed(range(len(self.scales))):
            for g in range(self.scales[i]["groups"]):
                for c in range(self.encoder_cells_per_group):
                    self.encoder_cells.append(
                        self._cell(self.scale_channels[i], "encoder", name=f"encoder_{i}_{g}_{c}")
                    )
            if i > 0:
                self.encoder_down.append(self._cell(self.scale_channels[i - 1], "encoder", stride=2, name=f"encoder_down_{i}"))
        # The top group's posterior reads ELU - conv1x1 - ELU of the top feature (the authors' `enc0`).
        self.top_feature_conv = self._conv(self.scale_channels[0], 1, "encoder_top")
        # Top-down path.
        top_h, top_w = self.scale_shapes[0]
        self.top_input = self.add_weight(
            shape=(top_h, top_w, self.scale_channels[0]), name="top_input",
            initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=self._next_seed()),
        )
        self.decoder_cells, self.prior_heads, self.posterior_heads, self.encoder_combiners, self.combiners = (
            [], [], [], [], []
        )
        self.decoder_up = []
        for g, i in enumerate(self.group_scales):
            latent = self.scales[i]["latent_channels"]
            width_now = self.scale_channels[i]
            if g > 0:
                for c in range(self.decoder_cells_per_group):
                    self.decoder_cells.append(self._cell(width_now, "decoder", expansion=6, name=f"decoder_{g}_{c}"))
                self.prior_heads.append(self._conv(2 * latent, 1, f"prior_{g}"))
                self.encoder_combiners.append(self._conv(width_now, 1, f"encoder_combiner_{g}"))
            self.posterior_heads.append(self._conv(2 * latent, 3, f"posterior_{g}"))
            self.combiners.append(self._conv(width_now, 1, f"combiner_{g}"))
            if g + 1 < self.num_groups and self.group_scales[g + 1] != i:
                self.decoder_up.append(self._cell(
                    self.scale_channels[i + 1], "decoder", upsample=True, expansion=6, name=f"decoder_up_{i}"
                ))
        self.postprocess = []
        width_now = self.scale_channels[-1]
        for b in range(self.preprocess_blocks):
            for c in range(self.postprocess_cells):
                first = c == 0
                out = width_now // CHANNEL_MULT if first else width_now
                self.postprocess.append(
                    self._cell(out, "decoder", upsample=first, expansion=3, name=f"postprocess_{b}_{c}")
                )
                width_now = out
        if decoder_type == "pixelcnn":
            self.pixelcnn = PixelCNN(
                self.input_shape, likelihood, pixelcnn_filters, pixelcnn_blocks, pixelcnn_kernel_size,
                condition_shape=(height, width, width_now), concatenate_input=concatenate_input,
                num_mixtures=self.num_mixtures, seed=self._next_seed(), name="pixelcnn",
            )
            self.rows_per_chunk = 128  # and the PixelCNN's maps
        else:
            params_per_channel = {"bernoulli": 1, "gaussian": 2, "logistic_mixture": 3 * self.num_mixtures}[likelihood]
            outputs = self.image_channels * params_per_channel
            self.likelihood_conv = self._conv(outputs, 3, "likelihood")
        self.spectral_regularizer = (
            # float32 policy: under a mixed global policy the layer would autocast its stored singular
            # vectors to the compute dtype inside its call, and its power iteration mixes dtypes.
            SpectralNormRegularizer(seed=self._next_seed(), dtype="float32", name="spectral_regularizer")
            if self.spectral_regularization > 0 else None
        )
        self.alpha = objectives.kl_balance_alpha([s["groups"] for s in reversed(self.scales)])
        self.prior = distributions.standard_normal(self.latent_dim)
        self.track_groups(self.num_groups)
        self.build((None,) + self.input_shape)

    # Construction ----------------------------------------------------------------------

    def _next_seed(self):
        self._num_seeded += 1
        return validation.derived_seed(self.seed, self._num_seeded)

    def _conv(self, filters, kernel_size, name):
        conv = keras.layers.Conv2D(
            filters, kernel_size, padding="same", use_bias=True, name=name,
            # PyTorch's default (the authors' Conv2D): U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Glorot's twice
            # larger weights start the lower groups' prior log-scales and posterior shifts far from 0, with
            # KLs of 1e5 nats at initialisation on MNIST.
            kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=self._next_seed()),
            bias_initializer=keras.initializers.Zeros(),
        )
        self.plain_convs.append(conv)
        return conv

    def _cell(self, filters, cell_type, name, **kwargs):
        cell = ResidualCell(
            filters, cell_type, squeeze_excitation=self.squeeze_excitation, seed=self._next_seed(), name=name, **kwargs
        )
        self.cells.append(cell)
        return cell

    def build(self, input_shape):
        # One pass on a zero example builds every sub-layer (BN in inference mode: no statistics move).
        self._posterior_terms(tf.zeros((1,) + self.input_shape), 1, training=False, seed=tf.constant([0, 0]))
        if self.spectral_regularizer is not None:
            self.spectral_regularizer.build([tuple(m.shape) for m in self._conv_kernel_matrices()])
        self.built = True

    def _conv_kernel_matrices(self):
        return [m for cell in self.cells for m in cell.conv_kernel_matrices()] + [
            conv_kernel_matrix(conv) for conv in self.plain_convs
        ]

    @property
    def generative_batch_norms(self):
        """Every BatchNormalization on the generative (top-down) path, the ones `sample` runs."""
        cells = self.decoder_cells + self.decoder_up + self.postprocess
        return [bn for cell in cells for bn in cell.branch_norms]

    # The two paths -----------------------------------------------------------------------

    def _encoder_features(self, x, training):
        """The bottom-up features, one per group, top-down order (the top group's through `enc0`)."""
        x = tf.cast(x, self.compute_dtype)
        pad_h, pad_w = self.padded_shape[0] - self.input_shape[0], self.padded_shape[1] - self.input_shape[1]
        if pad_h or pad_w:
            x = tf.pad(x, [[0, 0], [pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]])
        h = self.stem(2.0 * x - 1.0)
        for cell in self.preprocess:
            h = cell(h, training=training)
        features, cells, downs = [], iter(self.encoder_cells), iter(self.encoder_down)
        for i in reversed(range(len(self.scales))):
            for _ in range(self.scales[i]["groups"]):
                for _ in range(self.encoder_cells_per_group):
                    h = next(cells)(h, training=training)
                features.append(h)
            if i > 0:
                h = next(downs)(h, training=training)
        features = features[::-1]
        features[0] = tf.nn.elu(self.top_feature_conv(tf.nn.elu(features[0])))
        return features

    def _top_down(self, size, choose, training):
        """The top-down path for `size` rows: at each group `choose(g, h, prior)` returns z_g (float32 map).

        `prior` is None for the top group, else `(mean, log_scale)` float32 from the prior head.
        Returns the last feature map (after the post-processing cells), padded.
        """
        h = tf.tile(tf.cast(self.top_input, self.compute_dtype)[None], [size, 1, 1, 1])
        cells, ups = iter(self.decoder_cells), iter(self.decoder_up)
        for g, i in enumerate(self.group_scales):
            prior = None
            if g > 0:
                for _ in range(self.decoder_cells_per_group):
                    h = next(cells)(h, training=training)
                params = tf.cast(self.prior_heads[g - 1](tf.nn.elu(h)), tf.float32)
                prior = tf.split(params, 2, axis=-1)
            z = choose(g, h, prior)
            h = self.combiners[g](tf.concat([h, tf.cast(z, self.compute_dtype)], axis=-1))
            if g + 1 < self.num_groups and self.group_scales[g + 1] != i:
                h = next(ups)(h, training=training)
        for cell in self.postprocess:
            h = cell(h, training=training)
        return h

    def _observe(self, h, x=None, seed=None):
        """The likelihood's parameters, float32, cropped to `input_shape`, from the last feature map `h`.

        A PixelCNN decoder is teacher-forced on `x` (one image per row of `h`) when given, else it
        generates an image (drawn with a stateless `seed`, greedy without), returned as `image`.
        """
        (top, left), (height, width) = [(p - s) // 2 for p, s in zip(self.padded_shape, self.input_shape)], self.input_shape[:2]
        crop = lambda t: t[:, top: top + height, left: left + width]  # noqa: E731
        if self.decoder_type == "pixelcnn":
            features = crop(tf.nn.elu(h))
            return self.pixelcnn.generate(features, seed=seed) if x is None else self.pixelcnn([x, features])
        out = crop(tf.cast(self.likelihood_conv(tf.nn.elu(h)), tf.float32))
        if self.likelihood == "bernoulli":
            return {"logits": out, "mean": tf.sigmoid(out)}
        if self.likelihood == "logistic_mixture":
            # [N, H, W, 3 * M * C] -> three [N, H, W, C, M]: (logits, means, log_scales), channel-major in each.
            shape = tf.concat([tf.shape(out)[:3], [3, self.image_channels, self.num_mixtures]], axis=0)
            logits, means, log_scales = tf.unstack(tf.reshape(out, shape), axis=3)
            mean = distributions.discretized_logistic_mixture_mean(logits, means)
            return {"logits": logits, "means": means, "log_scales": log_scales, "mean": mean}
        mean, log_variance = tf.split(out, 2, axis=-1)
        return {"mean": mean, "log_variance": log_variance}

    def _posterior(self, g, h, prior, feature):
        """q(z_g | z_<g, x) as a float32 `tfd.Normal` (the residual Normal below the top group)."""
        if g == 0:
            params = tf.cast(self.posterior_heads[0](feature), tf.float32)
            return distributions.nvae_normal(*tf.split(params, 2, axis=-1))
        combined = feature + self.encoder_combiners[g - 1](h)
        delta_mean, delta_log_scale = tf.split(tf.cast(self.posterior_heads[g](combined), tf.float32), 2, axis=-1)
        return distributions.residual_normal(prior[0], prior[1], delta_mean, delta_log_scale)

    @staticmethod
    def _standard_normal_like(z):
        return tfd.Normal(tf.zeros_like(z), tf.ones_like(z))

    def _group_seeds(self, seed):
        base = distributions.seed_pair(self.seed_generator if seed is None else seed)
        return [tf.random.experimental.stateless_fold_in(base, g) for g in range(self.num_groups)]

    def importance_features(self, x):
        """The bottom-up features of `x` (one map per group, top-down order), shared by all importance samples.

        Deterministic given x: batch norm in inference mode normalises each example by the moving
        statistics, so a feature map is the same whichever batch or chunk it is computed in.
        """
        return self._encoder_features(tf.cast(x, tf.float32), training=False)

    def _posterior_terms(self, x, num_samples, training=False, seed=None, features=None):
        """Samples every group from q top-down (S samples folded into the batch) and returns the bound's terms.

        `features`: `importance_features(x)` computed once for several calls (inference mode),
        else the bottom-up pass runs here. Returns `log_px_z`, `log_pz`, `log_qz` `[S, B]`;
        `kl_levels` `[B, G]` (groups top-down), `kl_units` `[B, U]` (every latent unit, groups
        top-down, each flattened HWC), both averaged over the S samples; `reconstruction`
        `[B, *input_shape]` (the first sample's mean).
        """
        x = tf.cast(x, tf.float32)
        batch = tf.shape(x)[0]
        if features is None:
            features = self._encoder_features(x, training)
        if isinstance(num_samples, int) and num_samples == 1:
            tiled = features
        else:
            tiled = [tf.reshape(tf.tile(f[None], [num_samples, 1, 1, 1, 1]), tf.concat([[-1], tf.shape(f)[1:]], 0))
                     for f in features]  # [S * B, h, w, c], sample-major
        seeds = self._group_seeds(seed)
        log_pz, log_qz, kl_units = 0.0, 0.0, []

        def choose(g, h, prior):
            nonlocal log_pz, log_qz
            q = self._posterior(g, h, prior, tiled[g])
            z = q.loc + q.scale * tf.random.stateless_normal(tf.shape(q.loc), seeds[g])
            p = self._standard_normal_like(z) if prior is None else distributions.nvae_normal(*prior)
            log_qz += self._per_sample(tf.reduce_sum(q.log_prob(z), axis=[1, 2, 3]), num_samples)
            log_pz += self._per_sample(tf.reduce_sum(p.log_prob(z), axis=[1, 2, 3]), num_samples)
            kl = tf.reshape(tfd.kl_divergence(q, p), [num_samples, batch, math.prod(self.group_shapes[g])])
            kl_units.append(tf.reduce_mean(kl, axis=0))  # [B, U_g]
            return z

        tiled_x = tf.tile(x, [num_samples, 1, 1, 1])  # [S * B, ...], sample-major
        params = self._observe(self._top_down(num_samples * batch, choose, training), tiled_x)
        log_px_z = self._per_sample(distributions.log_likelihood(self.likelihood, params, tiled_x, 3), num_samples)
        return {
            "log_px_z": log_px_z,
            "log_pz": log_pz,
            "log_qz": log_qz,
            "kl_levels": tf.stack([tf.reduce_sum(kl, axis=-1) for kl in kl_units], axis=-1),
            "kl_units": tf.concat(kl_units, axis=-1),
            "reconstruction": params["mean"][:batch],
        }

    @staticmethod
    def _per_sample(values, num_samples):
        return tf.reshape(values, [num_samples, -1])  # [S * B] -> [S, B]

    def _generate(self, z_top, temperature, seed):
        """Ancestral sampling below the top group's `z_top` `[N, latent_dim]`, prior scales x `temperature`.

        A PixelCNN decoder then draws the pixels (exactly, whatever the temperature) from `seed`, or
        with `seed=None` returns the greedy image.
        """
        pixel_seed = None if seed is None else tf.random.experimental.stateless_fold_in(
            distributions.seed_pair(seed), self.num_groups
        )
        return self._observe(self._generative_features(z_top, temperature, seed), seed=pixel_seed)

    def _generative_features(self, z_top, temperature, seed, training=False):
        """The top-down path's last feature map below `z_top` (see `_generate`)."""
        z_top = tf.reshape(tf.cast(z_top, tf.float32), (-1, *self.group_shapes[0]))
        seeds = self._group_seeds(seed) if temperature != 0 else None

        def choose(g, h, prior):
            if prior is None:
                return z_top
            p = distributions.nvae_normal(*prior)
            if temperature == 0:
                return p.loc
            return p.loc + temperature * p.scale * tf.random.stateless_normal(tf.shape(p.loc), seeds[g])

        return self._top_down(tf.shape(z_top)[0], choose, training)

    def _posterior_means(self, x):
        """Every group's posterior (float32 `tfd.Normal`) on a deterministic pass, each given the means above."""
        x = self.validate_inputs(x)
        features = self._encoder_features(x, training=False)
        posteriors = []

        def choose(g, h, prior):
            posteriors.append(self._posterior(g, h, prior, features[g]))
            return posteriors[-1].loc

        params = self._observe(self._top_down(tf.shape(features[0])[0], choose, training=False), x)
        return posteriors, params

    # Loss --------------------------------------------------------------------------------

    def training_bound(self, outputs, kl_weight=1.0):
        """The base bound; with `kl_balancing`, while beta < 1 the KL is `balanced_kl` (the authors' `kl_balancer`)."""
        if not self.kl_balancing or (isinstance(kl_weight, float) and kl_weight == 1.0):
            return super().training_bound(outputs, kl_weight)
        return objectives.elbo(outputs["log_px_z"][:, 0], objectives.balanced_kl(outputs["kl_levels"], kl_weight, self.alpha))

    def regularization_loss(self, training=True):
        """lambda (L_SR + L_BN): NVAE's spectral regulariser over every convolution plus the BN scale penalty."""
        if self.spectral_regularizer is None:
            return tf.constant(0.0)
        spectral = self.spectral_regularizer(self._conv_kernel_matrices(), training=training)
        scales = [s for cell in self.cells for s in cell.batch_norm_scales()]
        return self.spectral_regularization * (spectral + objectives.batch_norm_scale_penalty(scales))

    def batch_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().batch_loss(x, y, y_pred, sample_weight, training)
        if training and self.spectral_regularizer is not None:
            loss += self.regularization_loss(training=True)
        return loss

    # The protocol ------------------------------------------------------------------------

    def encode(self, x):
        """Posterior parameters on a deterministic pass (each group given the posterior means above).

        `mean`, `log_scale` of the top group, flat `[B, latent_dim]` (what `decode` takes), and
        `mean_g`, `log_scale_g` `[B, h, w, c]` of every lower group g (loc and log of the scale
        of the clamped, floored Normal).
        """
        posteriors, _ = self._posterior_means(x)
        outputs = {}
        for g, q in enumerate(posteriors):
            mean, log_scale = q.loc, tf.math.log(q.scale)
            if g == 0:
                outputs.update(mean=tf.reshape(mean, [-1, self.latent_dim]),
                               log_scale=tf.reshape(log_scale, [-1, self.latent_dim]))
            else:
                outputs.update({f"mean_{g}": mean, f"log_scale_{g}": log_scale})
        return outputs

    def encoder_features(self, x):
        """The bottom-up tower's top feature map, which the top group's posterior reads, flat `[B, h * w * c]`.

        The recognition features of `zoo.analysis.recognition_features` (deterministic: batch norm
        in inference mode).
        """
        features = self.importance_features(self.validate_inputs(x))[0]
        return tf.reshape(features, [tf.shape(features)[0], -1])

    def decode(self, z):
        """Likelihood parameters for the top group's `z` `[N, latent_dim]`, lower groups at their prior means."""
        return self._generate(validation.latents(z, self.latent_dim), 0.0, None)

    def reconstruct(self, x):
        """Decoder mean with every group at its posterior mean: deterministic, `[B, *input_shape]`."""
        return self._posterior_means(x)[1]["mean"]

    @contextlib.contextmanager
    def readjusted_batch_norm(self, num_batches=500, batch_size=16, temperature=1.0, seed=None):
        """A block in which the generative path's BN statistics are readjusted to the model's own samples.

        As the authors before sampling (`evaluate.py --readjust_bn`, `set_bn`): `num_batches`
        ancestral samples of `batch_size` at `temperature` run in training mode, so every BN of
        `generative_batch_norms` moves its statistics towards theirs as in training (an
        exponential moving average with the layer's momentum, PyTorch's 0.05). Nothing else
        changes. On leaving the block the trained statistics come back: readjusted statistics
        define another generative model (the NVAE rebuttal), so `log_likelihood`, saving and
        export always see the model as trained.

        Example:

        >>> with model.readjusted_batch_norm(temperature=0.7):
        ...     images = model.sample(16, seed=0, temperature=0.7)
        """
        num_batches = validation.positive_int("num_batches", num_batches)
        batch_size = validation.positive_int("batch_size", batch_size)
        temperature = validation.temperature(temperature)
        base = distributions.seed_pair(validation.seed(seed) if seed is not None else self.seed_generator)
        trained = [(bn.moving_mean.numpy(), bn.moving_variance.numpy()) for bn in self.generative_batch_norms]
        try:
            for k in range(num_batches):
                seed_k = tf.random.experimental.stateless_fold_in(base, k)
                z_top = self.prior.sample(batch_size, seed=seed_k) * temperature
                self._generative_features(
                    z_top, temperature, tf.random.experimental.stateless_fold_in(seed_k, 1), training=True
                )
            yield self
        finally:
            for bn, (mean, variance) in zip(self.generative_batch_norms, trained):
                bn.moving_mean.assign(mean)
                bn.moving_variance.assign(variance)

    def get_config(self):
        return {
            **super().get_config(),
            "scales": [dict(scale) for scale in self.scales],
            "channels": self.channels,
            "encoder_cells_per_group": self.encoder_cells_per_group,
            "decoder_cells_per_group": self.decoder_cells_per_group,
            "preprocess_blocks": self.preprocess_blocks,
            "preprocess_cells": self.preprocess_cells,
            "postprocess_cells": self.postprocess_cells,
            "kl_balancing": self.kl_balancing,
            "spectral_regularization": self.spectral_regularization,
            "squeeze_excitation": self.squeeze_excitation,
            "num_mixtures": self.num_mixtures,
            "decoder_type": self.decoder_type,
            "pixelcnn_filters": self.pixelcnn_filters,
            "pixelcnn_blocks": self.pixelcnn_blocks,
            "pixelcnn_kernel_size": self.pixelcnn_kernel_size,
            "concatenate_input": self.concatenate_input,
        }
