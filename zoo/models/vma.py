import math

import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers.conv_stack import ConvStack, checked_conv_args
from zoo.layers.dense_stack import DenseStack
from zoo.layers.gaussian_latent import GaussianLatent
from zoo.layers.stochastic_address import PRIORS, RESIDUAL_SCALE, StochasticAddress
from zoo.models.memory_base import MemoryConditionedModel

# What q(z | x, m_a) reads: the tied down path's top features of x and of m_a, side by side, or x and m_a
# themselves stacked on the channel axis, through a network of its own (Bornschein et al. 2017, sec. 4.2).
POSTERIOR_INPUTS = ("features", "concatenated")


@keras.saving.register_keras_serializable(package="zoo")
class VMA(MemoryConditionedModel):
    """Variational memory addressing: a generative model that reads one memory entry, chosen by a discrete address.

        p(x | M)  = sum_a p(a | M) ∫ p(z | m_a) p(x | z, m_a) dz
        q(a, z | x, M) = q(a | x, M) q(z | x, m_a),   q(a | x, M) = softmax_a <h^m(m_a), h^q(x)> / ||h^m(m_a)||

    Training maximises the K-sample bound (Bornschein et al. 2017, eq. 7)

        L_K = E log (1/K) sum_k p(x, a_k, z_k | M) / q(a_k, z_k | x, M)

    with VIMCO gradients for the addresses and reparameterised gradients for z (see
    `zoo.objectives.vimco_surrogate`), so K >= 2. Metrics: `bound`, `address_kl`
    (KL(q(a|x) || p(a)), exact), `kl` (E_a KL(q(z|a,x) || p(z|a)), over the K sampled
    addresses) and `reconstruction` (E log p(x|z, m_a)): a large address KL with a small
    z KL means the model copies from memory.

    The memory holds raw examples `[M, *input_shape]`: learned (`memory_size` entries, a
    trainable variable) or given with each batch (`memory_size=None`; any number of
    entries, also at test time). Inputs: a tensor x (learned memory), a dict
    `{"x": [B, ...], "memory": [M, ...]}` (the form for `model.fit` on a `tf.data`
    pipeline), or a tuple `(x, memory)`; the public methods also take `memory=` as a
    keyword (`encode`, `decode`, `sample`, `reconstruct`, `log_likelihood`,
    `address_posterior`). A given memory replaces a learned one.

    Networks (`architecture`): `"mlp"` (MNIST: 256-128 down path, |z| = 32) or `"conv"`
    (Omniglot: six 3x3 convolutions with 32-64 maps, stride 2 every second layer; the
    decoder's up-scaling path takes skip connections from the memory entry's down-scaling
    path; |z| = 64, 128-d matching space). The down path is one network, applied to x
    (for q(z|x, m_a)) and to m_a (for p(z|m_a), q(z|x, m_a) and the decoder's skips):
    tied between the encoder and the decoder as in the paper. The addressing network is one
    network for queries and entries (h^q = h^m) unless `shared_embedding=False` (then
    h^q = h^m + c r, or with `query_network="separate"` a network of its own, see
    `StochasticAddress`); the learned p(a) embeds entries with h^m unless
    `prior_network="separate"`.

    q(z | x, m_a) (`posterior_input`): `"features"` reads the down path's top features of x and
    of m_a, concatenated; `"concatenated"` is the paper's Omniglot encoder (sec. 4.2): x and m_a
    stacked on the channel axis, `[H, W, 2C]`, through a conv stack of its own
    (`posterior_filters`, `posterior_strides`; for `"mlp"` the stacked pair flattened)
    and an MLP (`posterior_hidden_units`) before the Gaussian's linear heads. The down path is
    then read only for memory entries (p(z | m_a) and the decoder's skips).

    Args:
        input_shape: tuple of ints, shape of one example. Default `(28, 28, 1)`.
        architecture: `"mlp"` or `"conv"`. Default `"mlp"`.
        hidden_units: tuple of ints, MLP widths. Default `(256, 128)`.
        filters: tuple of ints, conv maps. Default `(32, 32, 64, 64, 64, 64)`.
        strides: tuple of ints, conv strides. Default `(1, 2, 1, 2, 1, 2)`.
        latent_dim: int, size of z. Default `32`.
        matching_dim: int, size of the address matching space. Default `128`.
        memory_size: int (learned memory entries) or None (memory given per batch). Default `None`.
        address_prior: `"learned"` (a learned query point e^p) or `"flat"`. Default `"learned"`.
        shared_embedding: bool, one addressing network for queries and entries (h^q = h^m; see
            `StochasticAddress`). Default `True`.
        residual_scale: float > 0, c in the untied h^q = h^m + c r (see `StochasticAddress`); unused
            when tied or separate. Default `0.1`.
        query_network: `"residual"` (h^q = h^m + c r) or `"separate"` (h^q its own network), the untied
            h^q; needs `shared_embedding=False`. Default `"residual"`.
        prior_network: `"shared"` or `"separate"`, whether the learned p(a) embeds entries with h^m or
            with a network of its own; needs `address_prior="learned"`. Default `"shared"`.
        posterior_input: `"features"` or `"concatenated"`, what q(z | x, m_a) reads (above).
            Default `"features"`.
        posterior_filters: tuple of ints, conv maps of q(z | x, m_a)'s own network (`"concatenated"`,
            `"conv"` only). Default `(64, 64, 64, 64, 64, 64)`.
        posterior_strides: tuple of ints (1 or 2), its strides. Default `(1, 2, 1, 2, 1, 2)`.
        posterior_hidden_units: tuple of ints, its MLP widths (`"concatenated"` only). Default `(256,)`.
        activation: str, hidden activation. Default `"relu"`.
        likelihood: `"bernoulli"` or `"gaussian"`. Default `"bernoulli"`.
        num_importance_samples: int >= 2, K of the training bound. Default `4`.
        vimco_baseline: `"arithmetic"` (the paper's eq. 8) or `"geometric"` (Mnih & Rezende's),
            the VIMCO baseline; see `zoo.objectives.vimco_surrogate` for the measured choice.
            Default `"geometric"`.
        seed: int or None, makes sampling reproducible. Default `None`.

    Example:

    >>> import zoo
    >>> model = zoo.VMA(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, matching_dim=4, seed=0)
    >>> model.compile()
    >>> x = tf.cast(tf.random.uniform((8, 8, 8, 1)) < 0.5, tf.float32)
    >>> data = tf.data.Dataset.from_tensors({"x": x, "memory": x}).repeat(2)
    >>> history = model.fit(data, epochs=1, verbose=0)
    >>> model.classify(x[:2], x, memory_labels=tf.range(8) // 2).shape
    TensorShape([2, 4])

    References:
        Bornschein, Mnih, Zoran & Rezende, "Variational Memory Addressing in Generative Models", NIPS 2017.
        Mnih & Rezende, "Variational Inference for Monte Carlo Objectives", ICML 2016 (VIMCO).
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
        address_prior="learned",
        shared_embedding=True,
        residual_scale=RESIDUAL_SCALE,
        query_network="residual",
        prior_network="shared",
        posterior_input="features",
        posterior_filters=(64, 64, 64, 64, 64, 64),
        posterior_strides=(1, 2, 1, 2, 1, 2),
        posterior_hidden_units=(256,),
        activation="relu",
        likelihood="bernoulli",
        num_importance_samples=4,
        vimco_baseline="geometric",
        seed=None,
        **kwargs,
    ):
        super().__init__(
            input_shape=input_shape, architecture=architecture, hidden_units=hidden_units, filters=filters,
            strides=strides, latent_dim=latent_dim, matching_dim=matching_dim, memory_size=memory_size,
            activation=activation, likelihood=likelihood, num_importance_samples=num_importance_samples,
            seed=seed, **kwargs,
        )
        if self.num_importance_samples < 2:
            raise ValueError(
                "VMA trains with VIMCO, whose baseline leaves one sample out: num_importance_samples must be "
                f">= 2, got {num_importance_samples}"
            )
        if address_prior not in PRIORS:
            raise ValueError(f"address_prior must be one of {PRIORS}, got {address_prior!r}")
        if vimco_baseline not in objectives.VIMCO_BASELINES:
            raise ValueError(f"vimco_baseline must be one of {objectives.VIMCO_BASELINES}, got {vimco_baseline!r}")
        self.vimco_baseline = vimco_baseline
        self.address_prior = address_prior
        self.shared_embedding = validation.boolean("shared_embedding", shared_embedding)
        self.residual_scale = validation.positive_float("residual_scale", residual_scale)
        if posterior_input not in POSTERIOR_INPUTS:
            raise ValueError(f"posterior_input must be one of {POSTERIOR_INPUTS}, got {posterior_input!r}")
        self.posterior_input = posterior_input
        self.posterior_filters, self.posterior_strides = checked_conv_args(posterior_filters, posterior_strides)
        self.posterior_hidden_units = validation.positive_ints("posterior_hidden_units", posterior_hidden_units)
        self.address = StochasticAddress(
            self.input_shape, self.matching_dim, architecture, self.hidden_units, self.filters, self.strides,
            activation, prior=address_prior, shared_embedding=self.shared_embedding,
            residual_scale=self.residual_scale, query_network=query_network, prior_network=prior_network,
            seed=self._seed_offset(1), name="address",
        )
        self.query_network = self.address.query_network
        self.prior_network = self.address.prior_network
        if posterior_input == "concatenated":
            if architecture == "conv":
                self.posterior_encoder = ConvStack(
                    self.posterior_filters, self.posterior_strides, activation,
                    seed=validation.derived_seed(self.seed, 50), name="posterior_encoder",
                )
            self.posterior_mlp = DenseStack(
                self.posterior_hidden_units, activation, batch_norm=False, seed=validation.derived_seed(self.seed, 51),
                name="posterior_mlp",
            )
        self.posterior = GaussianLatent(self.latent_dim, seed=self._seed_offset(2), name="posterior")
        self.conditional_prior = GaussianLatent(self.latent_dim, seed=self._seed_offset(3), name="conditional_prior")
        self.address_kl_tracker = keras.metrics.Mean(name="address_kl")
        self.build(self.build_shapes())

    def build(self, input_shape):
        self.build_memory_and_coder()
        self.address.build((None,) + self.input_shape)
        if self.posterior_input == "features":
            self.posterior.build((None, 2 * self.feature_dim))
        else:
            pair_shape = self.input_shape[:-1] + (2 * self.input_shape[-1],)
            if self.architecture == "conv":
                self.posterior_encoder.build((None,) + pair_shape)
                width = math.prod(self.posterior_encoder.feature_shapes(pair_shape)[-1])
            else:
                width = math.prod(pair_shape)
            self.posterior_mlp.build((None, width))
            self.posterior.build((None, self.posterior_hidden_units[-1]))
        self.conditional_prior.build((None, self.feature_dim))
        self.built = True

    def _sample_terms(self, x, memory, num_samples, seed=None):
        """Samples (a_k, z_k) ~ q for k = 1..K and returns the bound's terms, each `[K, B]` unless noted."""
        address_seed = z_seed = None
        if seed is not None:
            seed = distributions.seed_pair(seed)
            address_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            z_seed = tf.random.experimental.stateless_fold_in(seed, 2)
        batch = tf.shape(x)[0]
        address = self.address({"query": x, "memory": memory}, num_samples=num_samples, seed=address_seed)
        flat_addresses = tf.reshape(address["samples"], [-1])  # [K * B], sample-major
        entries = self.read_entries(memory, flat_addresses)
        entry_summary = entries["summary"]  # [K * B, F]
        posterior = self.posterior(
            self.posterior_features(x, memory, flat_addresses, entry_summary, num_samples), seed=z_seed
        )
        z = posterior["z"][0]  # [K * B, D]
        prior = self.conditional_prior(entry_summary, seed=0)
        prior_dist = distributions.diagonal_gaussian(prior["mean"], prior["log_variance"])
        params = self.decode_params(z, entries["context"], entries["rows"])
        x_tiled = tf.tile(x, tf.concat([[num_samples], tf.ones([len(self.input_shape)], tf.int32)], axis=0))
        unflatten = lambda t: tf.reshape(t, tf.stack([num_samples, batch]))  # noqa: E731
        log_px_z = unflatten(self.log_px(x_tiled, params))
        log_pz = unflatten(prior_dist.log_prob(z))
        log_qz = unflatten(posterior["log_prob"][0])
        log_pa = tf.gather(address["prior_logits"], address["samples"])
        kl_z = unflatten(
            distributions.tfd.kl_divergence(
                distributions.diagonal_gaussian(posterior["mean"], posterior["log_variance"]), prior_dist
            )
        )
        parts = {
            "log_px_z": log_px_z,
            "z_log_ratio": log_pz - log_qz,  # log p(z|a) - log q(z|a,x)
            "address_log_ratio": log_pa - address["log_prob"],  # log p(a) - log q(a|x)
        }
        return {
            **parts,
            "log_weights": parts["log_px_z"] + parts["z_log_ratio"] + parts["address_log_ratio"],
            "address": address["samples"],
            "z": tf.reshape(z, tf.stack([num_samples, batch, self.latent_dim])),
            "address_log_prob": address["log_prob"],
            "z_kl": kl_z,
            "address_kl": address["kl"],  # [B]
            "mean": tf.reshape(params["mean"], tf.concat([[num_samples, batch], self.input_shape], axis=0))[0],
        }

    def call(self, inputs, training=False):
        self.check_input_spec(inputs)
        x, memory = self.split_inputs(inputs)
        terms = self._sample_terms(tf.cast(x, tf.float32), tf.cast(memory, tf.float32), self.num_importance_samples)
        return {
            "log_weights": tf.transpose(terms["log_weights"]),  # [B, K]
            "log_px_z": tf.transpose(terms["log_px_z"]),  # [B, K]
            "address_log_prob": tf.transpose(terms["address_log_prob"]),  # [B, K]
            "kl": tf.reduce_mean(terms["z_kl"], axis=0),
            "address_kl": terms["address_kl"],
            "reconstruction": terms["mean"],
        }

    def batch_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        surrogate = objectives.vimco_surrogate(
            tf.transpose(y_pred["log_weights"]), tf.transpose(y_pred["address_log_prob"]), self.vimco_baseline
        )
        loss = -tf.reduce_mean(surrogate)
        if self.losses:
            loss += tf.add_n([tf.cast(term, tf.float32) for term in self.losses])  # float16 under a mixed policy
        self.bound_tracker.update_state(surrogate)  # the surrogate's value is the bound
        self.reconstruction_tracker.update_state(tf.reduce_mean(y_pred["log_px_z"], axis=-1))
        self.kl_tracker.update_state(y_pred["kl"])
        self.address_kl_tracker.update_state(y_pred["address_kl"])
        return loss

    def log_importance_weights(self, x, num_samples, seed):
        x, memory = x
        return self._sample_terms(x, memory, num_samples, seed)["log_weights"]

    def log_weight_terms(self, x, num_samples, seed, *, memory=None):
        """log w = log p(x|z,a) + [log p(z|a) - log q(z|a,x)] + [log p(a) - log q(a|x)], by part, for K samples.

        (a_k, z_k) ~ q(a|x) q(z|a,x) are drawn as `log_importance_weights` draws them (stateless
        `seed`). Returns `log_weights` (what `log_importance_weights` returns, the sum of the parts)
        and the parts `log_px_z`, `z_log_ratio`, `address_log_ratio`, each `[K, B]`, and the
        samples `address` `[K, B]` (int32) and `z` `[K, B, latent_dim]`.
        """
        x, memory = self.validate_inputs(self._inputs(x, memory))
        num_samples = validation.num_samples(num_samples)
        terms = self._sample_terms(x, memory, num_samples, validation.seed(seed))
        keys = ("log_weights", "log_px_z", "z_log_ratio", "address_log_ratio", "address", "z")
        return {key: terms[key] for key in keys}

    # Public methods ---------------------------------------------------------------

    def encode(self, x, *, memory=None):
        """The address posterior and, at its most probable address a*, the posterior of z.

        Returns `address_log_prob` `[B, M]` (normalized log q(a | x, M)), `address` `[B]` (a*,
        int32) and `mean`, `log_variance` `[B, latent_dim]` of q(z | x, m_a*).
        """
        x, memory = self.validate_inputs(self._inputs(x, memory))
        return self._encode_given_memory(x, memory)[0]

    def decode(self, z, *, address, memory=None):
        """Likelihood parameters of p(x | z, m_a) for `z` `[N, latent_dim]` and `address` `[N]` (ints in [0, M)).

        Bernoulli: `{"logits", "mean"}`; Gaussian: `{"mean", "log_variance"}`, each `[N, *input_shape]`.
        """
        memory = self.given_or_learned_memory(memory)
        z = validation.latents(z, self.latent_dim)
        address = validation.indices(address, tf.shape(memory)[0], "address", tf.shape(z)[0], "the memory size")
        entries = self.read_entries(memory, address)
        return self.decode_params(z, entries["context"], entries["rows"])

    def address_posterior(self, x, *, memory=None):
        """Normalized log q(a|x) over the memory entries, `[B, M]`."""
        return self.encode(x, memory=memory)["address_log_prob"]

    def classify(self, x, memory, memory_labels, num_classes=None):
        """Few-shot classification without retraining: p(c | x) = sum_{a: label(m_a) = c} q(a | x, M).

        Args:
            x: float `[B, *input_shape]`, the queries.
            memory: float `[M, *input_shape]`, the labelled examples (e.g. an N-way K-shot support set).
            memory_labels: int `[M]`, class index of each entry, in `[0, num_classes)`.
            num_classes: int or None; None is `max(memory_labels) + 1`.

        Returns:
            float `[B, num_classes]`, rows summing to 1.
        """
        x, memory = self.validate_inputs((x, memory))
        labels, num_classes = validation.class_labels(memory_labels, memory.shape[0], num_classes)
        return self._class_probabilities(x, memory, labels, num_classes)

    def _class_probabilities(self, x, memory, labels, num_classes):
        """`classify` on validated tensors."""
        posterior = tf.exp(self.address.posterior_logits(x, self.address.memory_keys(memory)))  # [B, M]
        return tf.transpose(tf.math.unsorted_segment_sum(tf.transpose(posterior), labels, num_classes))

    def read_entries(self, memory, addresses):
        """What the networks read of the entries `addresses` `[N]` of `memory`: a dict of `context`, `rows`, `summary`.

        With fewer entries than reads (static sizes) the down path runs once per entry:
        `context` holds every entry's maps and `rows` (= `addresses`) says which one each read
        decodes with (`decode_params`). Otherwise the entries are gathered first: `context` is
        one map per read and `rows` is None. `summary` `[N, feature_dim]`: each read's top features.
        """
        if memory.shape[0] is not None and addresses.shape[0] is not None and memory.shape[0] < addresses.shape[0]:
            context = self.features(memory)
            return {"context": context, "rows": addresses, "summary": tf.gather(self.summary(context), addresses)}
        context = self.features(tf.gather(memory, addresses))
        return {"context": context, "rows": None, "summary": self.summary(context)}

    def posterior_features(self, x, memory, addresses, entry_summary, num_samples=1):
        """What q(z | x, m_a) reads, `[num_samples * B, F_q]`, for queries `x` `[B, ...]` and reads of
        `addresses` `[num_samples * B]` (sample-major) whose `read_entries` summary is `entry_summary`."""
        if self.posterior_input == "features":
            x_summary = tf.tile(self.summary(self.features(x)), [num_samples, 1])  # [K * B, F]
            return tf.concat([x_summary, entry_summary], axis=-1)
        x_tiled = tf.tile(x, tf.concat([[num_samples], tf.ones([len(self.input_shape)], tf.int32)], axis=0))
        pair = tf.concat([x_tiled, tf.gather(memory, addresses)], axis=-1)  # [K * B, H, W, 2C]
        if self.architecture == "conv":
            h = self.summary(self.posterior_encoder(pair))
        else:
            h = tf.reshape(pair, [-1, 2 * math.prod(self.input_shape)])
        return self.posterior_mlp(h)

    def _encode_given_memory(self, x, memory):
        """`encode`'s outputs on validated tensors, and `read_entries` of the chosen entries."""
        log_q = self.address.posterior_logits(x, self.address.memory_keys(memory))  # [B, M]
        addresses = tf.argmax(log_q, axis=-1, output_type=tf.int32)
        entries = self.read_entries(memory, addresses)
        posterior = self.posterior(self.posterior_features(x, memory, addresses, entries["summary"]), seed=0)  # z unused
        outputs = {"address_log_prob": log_q, "address": addresses}
        return {**outputs, "mean": posterior["mean"], "log_variance": posterior["log_variance"]}, entries

    def sample_given_memory(self, memory, num_samples, seed, temperature):
        """a ~ p(a), z ~ p(z | m_a) with its standard deviation times `temperature` (the address is
        drawn as it is), decoder mean E[x | z, m_a]: `{"samples": [N, ...], "address": [N]}`."""
        seed = distributions.seed_pair(seed)
        prior = distributions.tfd.Categorical(logits=self.address.prior_logits(self.address.prior_keys(memory)))
        addresses = tf.cast(prior.sample(num_samples, seed=tf.random.experimental.stateless_fold_in(seed, 1)), tf.int32)
        entries = self.read_entries(memory, addresses)
        z_prior = self.conditional_prior(entries["summary"], seed=tf.random.experimental.stateless_fold_in(seed, 2))
        z = z_prior["mean"] + temperature * (z_prior["z"][0] - z_prior["mean"])
        return {"samples": self.decode_params(z, entries["context"], entries["rows"])["mean"], "address": addresses}

    def reconstruct_given_memory(self, x, memory):
        """The most probable address, the posterior mean of z, the decoder mean: deterministic, `[B, ...]`."""
        encoded, entries = self._encode_given_memory(x, memory)
        return self.decode_params(encoded["mean"], entries["context"], entries["rows"])["mean"]

    # Serving ----------------------------------------------------------------------

    def serving_endpoints(self):
        """The memory models' endpoints (see `MemoryConditionedModel.serving_endpoints`), VMA's `decode`, and:

        - `decode(z, address, memory)`: the likelihood's parameters (see `decode`).
        - `address_posterior(x, memory)`: `log_posterior` `[B, M]` (log q(a|x)), `log_prior` `[M]` (log p(a)).
        - `classify(x, memory, memory_labels, num_classes)`: `probabilities` `[B, num_classes]`.

        `sample` also returns the sampled `address` `[N]`.
        """
        images = lambda name: tf.TensorSpec((None,) + self.input_shape, tf.float32, name=name)  # noqa: E731

        def address_posterior(x, memory):
            x, memory = self.validate_inputs((x, memory))
            keys = self.address.memory_keys(memory)
            return {
                "log_posterior": self.address.posterior_logits(x, keys),
                "log_prior": self.address.prior_logits(self.address.prior_keys(memory, keys)),
            }

        def classify(x, memory, memory_labels, num_classes):
            x, memory = self.validate_inputs((x, memory))
            labels, num_classes = validation.class_labels(memory_labels, tf.shape(memory)[0], num_classes)
            return {"probabilities": self._class_probabilities(x, memory, labels, num_classes)}

        latents = tf.TensorSpec((None, self.latent_dim), tf.float32, name="z")
        addresses = tf.TensorSpec((None,), tf.int32, name="address")
        labels = tf.TensorSpec((None,), tf.int32, name="memory_labels")
        count = tf.TensorSpec((), tf.int32, name="num_classes")
        return {
            **super().serving_endpoints(),
            "decode": (
                lambda z, address, memory: self.decode(z, address=address, memory=memory),
                [latents, addresses, images("memory")],
            ),
            "address_posterior": (address_posterior, [images("x"), images("memory")]),
            "classify": (classify, [images("x"), images("memory"), labels, count]),
        }

    def get_config(self):
        return {
            **super().get_config(), "address_prior": self.address_prior, "shared_embedding": self.shared_embedding,
            "residual_scale": self.residual_scale, "query_network": self.query_network,
            "prior_network": self.prior_network, "posterior_input": self.posterior_input,
            "posterior_filters": self.posterior_filters, "posterior_strides": self.posterior_strides,
            "posterior_hidden_units": self.posterior_hidden_units, "vimco_baseline": self.vimco_baseline,
        }
