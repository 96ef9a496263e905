import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers.dense import Dense
from zoo.layers.gaussian_latent import GaussianLatent
from zoo.layers.matching_embedding import MatchingEmbedding
from zoo.models.memory_base import MemoryConditionedModel


@keras.saving.register_keras_serializable(package="zoo")
class SoftAttentionVAE(MemoryConditionedModel):
    """A VAE whose decoder reads the memory by soft attention from z: the baseline of variational memory addressing.

        p(z) = N(0, I),   q(z | x) = N(mu(x), diag sigma^2(x))
        w(z) = softmax_a <W z, e_a> / ||e_a||,    e_a = h^m(m_a)
        m(z) = sum_a w_a(z) f(m_a),               p(x | z, m(z))

    f is the same down-scaling path as VMA's and the decoder is VMA's decoder, fed with the
    attention-weighted read m(z) instead of one addressed entry (for `"conv"`, every skip
    map is read with the same weights). Every update touches every memory entry, which
    is what VMA's hard addressing avoids. Trained with the K-sample bound (IWAE; K = 1 is
    the ELBO); the memory is learned or given per batch, with inputs as for `VMA`.

    Args:
        input_shape, architecture, hidden_units, filters, strides, latent_dim, matching_dim,
        memory_size, activation, likelihood, num_importance_samples, seed: as `VMA`
        (here `num_importance_samples` >= 1, default `1`).

    Example:

    >>> import zoo
    >>> model = zoo.SoftAttentionVAE(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, matching_dim=4, seed=0)
    >>> model.compile()
    >>> x = tf.cast(tf.random.uniform((8, 8, 8, 1)) < 0.5, tf.float32)
    >>> history = model.fit(tf.data.Dataset.from_tensors({"x": x, "memory": x}), epochs=1, verbose=0)
    >>> model.log_likelihood({"x": x, "memory": x}, num_samples=10).shape
    TensorShape([8])

    References:
        Bornschein, Mnih, Zoran & Rezende, "Variational Memory Addressing in Generative Models", NIPS 2017
        (the soft-attention baseline, sec. 4).
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
        activation="relu",
        likelihood="bernoulli",
        num_importance_samples=1,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            input_shape=input_shape, architecture=architecture, hidden_units=hidden_units, filters=filters,
            strides=strides, latent_dim=latent_dim, matching_dim=matching_dim, memory_size=memory_size,
            activation=activation, likelihood=likelihood, num_importance_samples=num_importance_samples,
            seed=seed, **kwargs,
        )
        self.posterior = GaussianLatent(self.latent_dim, seed=self._seed_offset(2), name="posterior")
        self.key_embedding = MatchingEmbedding(
            self.input_shape, self.matching_dim, architecture, self.hidden_units, self.filters, self.strides,
            activation, seed=validation.derived_seed(self.seed, 50), name="key_embedding",
        )
        self.attention_query = Dense(
            self.matching_dim,
            kernel_initializer=keras.initializers.GlorotUniform(validation.derived_seed(self.seed, 51)),
            name="attention_query",
        )
        self.prior = distributions.standard_normal(self.latent_dim)
        self.build(self.build_shapes())

    def build(self, input_shape):
        self.build_memory_and_coder()
        self.posterior.build((None, self.feature_dim))
        self.key_embedding.build((None,) + self.input_shape)
        self.attention_query.build((None, self.latent_dim))
        self.built = True

    def read(self, z, memory):
        """The attention read m(z) for latents `[N, D]`: a list of maps shaped like `features` of N examples."""
        keys = tf.math.l2_normalize(self.key_embedding(memory), axis=-1)  # [M, d]
        weights = tf.nn.softmax(tf.matmul(self.attention_query(z), keys, transpose_b=True), axis=-1)  # [N, M]
        return [tf.tensordot(weights, m, axes=[[1], [0]]) for m in self.features(memory)]

    def _sample_terms(self, x, memory, num_samples, seed=None):
        """Samples z_k ~ q(z|x) and returns the bound's terms, each `[K, B]` unless noted."""
        posterior = self.posterior(self.summary(self.features(x)), num_samples=num_samples, seed=seed)
        z = tf.reshape(posterior["z"], [-1, self.latent_dim])  # [K * B, D], sample-major
        params = self.decode_params(z, self.read(z, memory))
        x_tiled = tf.tile(x, tf.concat([[num_samples], tf.ones([len(self.input_shape)], tf.int32)], axis=0))
        log_px_z = tf.reshape(self.log_px(x_tiled, params), tf.shape(posterior["log_prob"]))
        return {
            "log_weights": log_px_z + self.prior.log_prob(posterior["z"]) - posterior["log_prob"],
            "log_px_z": log_px_z,
            "kl": objectives.gaussian_kl(posterior["mean"], posterior["log_variance"]),  # [B]
            "mean": params["mean"][: tf.shape(x)[0]],
        }

    def call(self, inputs, training=False):
        self.check_input_spec(inputs)
        x, memory = self.split_inputs(inputs)
        terms = self._sample_terms(tf.cast(x, tf.float32), tf.cast(memory, tf.float32), self.num_importance_samples)
        return {
            "log_weights": tf.transpose(terms["log_weights"]),  # [B, K]
            "log_px_z": tf.transpose(terms["log_px_z"]),  # [B, K]
            "kl": terms["kl"],
            "reconstruction": terms["mean"],
        }

    def log_importance_weights(self, x, num_samples, seed):
        x, memory = x
        return self._sample_terms(x, memory, num_samples, seed)["log_weights"]

    def encode(self, x, *, memory=None):
        """Posterior parameters `{"mean", "log_variance"}` of q(z|x), each `[B, latent_dim]`.

        The encoder does not read the memory; a given `memory` is only checked, as for the other methods.
        """
        if memory is not None or isinstance(x, (dict, tuple, list)):
            x, _ = self.validate_inputs(self._inputs(x, memory))
        else:
            x = validation.examples(x, self.input_shape, self.likelihood)
        posterior = self.posterior(self.summary(self.features(x)), seed=0)  # z unused
        return {"mean": posterior["mean"], "log_variance": posterior["log_variance"]}

    def decode(self, z, *, memory=None):
        """Likelihood parameters of p(x | z, m(z)) for `z` `[N, latent_dim]`, each `[N, *input_shape]`."""
        memory = self.given_or_learned_memory(memory)
        z = validation.latents(z, self.latent_dim)
        return self.decode_params(z, self.read(z, memory))

    def reconstruct_given_memory(self, x, memory):
        """Decoder mean at the posterior mean of z, `[B, *input_shape]`: deterministic."""
        z = self.posterior(self.summary(self.features(x)), seed=0)["mean"]
        return self.decode_params(z, self.read(z, memory))["mean"]

    def sample_given_memory(self, memory, num_samples, seed, temperature):
        """z ~ p(z) with its standard deviation times `temperature`, decoder mean given the read m(z):
        `{"samples": [N, *input_shape]}`."""
        z = temperature * self.prior.sample(num_samples, seed=distributions.seed_pair(seed))
        return {"samples": self.decode_params(z, self.read(z, memory))["mean"]}
