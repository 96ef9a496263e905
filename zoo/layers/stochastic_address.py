import keras
import tensorflow as tf

from zoo import distributions, validation
from zoo.layers.matching_embedding import MatchingEmbedding

PRIORS = ("learned", "flat")
# How an untied h^q is made (`query_network`) and which network p(a) scores entries with (`prior_network`).
QUERY_NETWORKS = ("residual", "separate")
PRIOR_NETWORKS = ("shared", "separate")
# The constructor arguments passed through to both `MatchingEmbedding`s.
# c in h^q = h^m + c r: under Adam, r's output layer then learns at c times the rate of h^m's.
RESIDUAL_SCALE = 0.1
EMBEDDING_ARGS = ("event_shape", "matching_dim", "architecture", "hidden_units", "filters", "strides", "activation")


@keras.saving.register_keras_serializable(package="zoo")
class StochasticAddress(keras.layers.Layer):
    """A discrete memory address a with posterior q(a|x) and prior p(a), and K seeded samples of it.

    Bornschein et al. (2017), eq. 5: queries and memory entries are embedded into a
    matching space, e_q = h^q(x) and e_a = h^m(m_a), and

        S(m_a, x) = <e_a, e_q> / ||e_a||,        q(a | x) = softmax_a S(m_a, x)

    Only the entry's norm is divided out, so ||e_q|| acts as a learned, per-query inverse
    temperature. The paper leaves h^q and h^m untied, reporting no difference when they are
    tied. Here `shared_embedding=True` ties them (h^q = h^m): then S(m_a, x) = ||e_q|| cos(e_a, e_q),
    so an entry identical to the query scores highest whatever the weights (Cauchy-Schwarz).
    `shared_embedding=False` unties them as

        h^q(x) = h^m(x) + c r(x),    r: a second network of h^m's shape whose output layer starts at 0,
                                      c = `residual_scale`

    so h^q and h^m are distinct functions (h^q has r's parameters besides h^m's), equal at
    initialisation, where the stored copy of a query scores highest as with tied networks.
    The factor c sets how fast h^q may leave h^m: Adam's step does not depend on the scale of
    a gradient, so c r learns as r would with its output layer's learning rate multiplied by c.
    Without it (c = 1) r moves as fast as h^m; on MNIST "train to recall" r then outgrew h^m
    in some runs and added a largely query-independent offset to e_q, which ranks the same
    entries high for every query; q(a|x) sharpened on those before the decoder learned to
    copy and did not recover (RESULTS.md). Two independently initialised networks did not
    learn recall at all there; they are still offered, as `query_network="separate"`
    (h^q = r, r with its own initial weights), because that is how the paper describes its
    Omniglot model (sec. 4.2). `residual_scale` has no effect on tied or separate networks.

    The learned prior scores the entries against a learned query point e^p,
    p(a) = softmax_a <e^p_a, e^p> / ||e^p_a||, where e^p_a = h^m(m_a) (`prior_network="shared"`)
    or the entry embedded by a network of its own, e^p_a = h^p(m_a) (`prior_network="separate"`:
    the paper's "separate embedding networks for p(a) and q(a|x)", left untied). The flat prior
    is p(a) = 1 / |M|.

    Call with `{"query": [B, *event_shape], "memory": [M, *event_shape]}`; returns a dict
    of tensors: `logits` `[B, M]` (normalized log q(a|x)), `prior_logits` `[M]` (log p(a)),
    `samples` `[K, B]` int32 addresses a_k ~ q(a|x), `log_prob` `[K, B]` (log q(a_k|x)) and
    `kl` `[B]` (KL(q(a|x) || p(a)), exact).

    Args:
        event_shape: tuple of ints, shape of one query / memory entry.
        matching_dim: int, size of the matching space. Default `128`.
        architecture: `"mlp"` or `"conv"` embedding networks (see `MatchingEmbedding`). Default `"mlp"`.
        hidden_units: tuple of ints, MLP widths. Default `(256, 128)`.
        filters: tuple of ints, conv maps. Default `(32, 32, 64, 64, 64, 64)`.
        strides: tuple of ints, conv strides. Default `(1, 2, 1, 2, 1, 2)`.
        activation: str, hidden activation. Default `"relu"`.
        prior: `"learned"` or `"flat"`. Default `"learned"`.
        shared_embedding: bool, one network for queries and entries (h^q = h^m), or an untied h^q
            (see above and `query_network`). Default `True`.
        query_network: `"residual"` (h^q = h^m + c r) or `"separate"` (h^q = r, its own network), the
            untied h^q; `shared_embedding=False` only. Default `"residual"`.
        residual_scale: float > 0, c in h^q = h^m + c r (residual only). Default `0.1`.
        prior_network: `"shared"` (the learned prior embeds entries with h^m) or `"separate"` (with its
            own network h^p); `prior="learned"` only. Default `"shared"`.
        seed: int or None, seeds the layer's `keras.random.SeedGenerator`; a call given
            an explicit stateless `seed` uses that instead.

    Example:

    >>> layer = StochasticAddress(event_shape=(8, 8, 1), matching_dim=4, hidden_units=(16,), seed=0)
    >>> out = layer({"query": keras.ops.ones((2, 8, 8, 1)), "memory": keras.ops.zeros((5, 8, 8, 1))}, num_samples=3)
    >>> out["samples"].shape, out["logits"].shape
    (TensorShape([3, 2]), TensorShape([2, 5]))

    References:
        Bornschein, Mnih, Zoran & Rezende, "Variational Memory Addressing in Generative Models", NIPS 2017.
    """

    def __init__(
        self,
        event_shape,
        matching_dim=128,
        architecture="mlp",
        hidden_units=(256, 128),
        filters=(32, 32, 64, 64, 64, 64),
        strides=(1, 2, 1, 2, 1, 2),
        activation="relu",
        prior="learned",
        shared_embedding=True,
        residual_scale=RESIDUAL_SCALE,
        query_network="residual",
        prior_network="shared",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if query_network not in QUERY_NETWORKS:
            raise ValueError(f"query_network must be one of {QUERY_NETWORKS}, got {query_network!r}")
        if prior_network not in PRIOR_NETWORKS:
            raise ValueError(f"prior_network must be one of {PRIOR_NETWORKS}, got {prior_network!r}")
        # Options that would build a network nothing reads are mistakes, not no-ops.
        if shared_embedding and query_network != "residual":
            raise ValueError(
                f'query_network={query_network!r} unties h^q from h^m: it needs shared_embedding=False'
            )
        if prior == "flat" and prior_network != "shared":
            raise ValueError(f'prior_network={prior_network!r} embeds entries for a learned prior: it needs prior="learned"')
        self.residual_scale = validation.positive_float("residual_scale", residual_scale)
        self.query_network = query_network
        self.prior_network = prior_network
        values = (event_shape, matching_dim, architecture, hidden_units, filters, strides, activation)
        embedding = dict(zip(EMBEDDING_ARGS, values))
        self.memory_embedding = MatchingEmbedding(
            **embedding, seed=validation.derived_seed(seed, 0), name="memory_embedding"
        )
        self.shared_embedding = validation.boolean("shared_embedding", shared_embedding)
        if not self.shared_embedding and query_network == "residual":
            self.query_residual = MatchingEmbedding(
                **embedding, projection_initializer="zeros", seed=validation.derived_seed(seed, 1), name="query_residual"
            )
        elif not self.shared_embedding:
            self.query_embedding_network = MatchingEmbedding(
                **embedding, seed=validation.derived_seed(seed, 1), name="query_embedding"
            )
        if prior_network == "separate":
            self.prior_embedding = MatchingEmbedding(
                **embedding, seed=validation.derived_seed(seed, 2), name="prior_embedding"
            )
        for key in embedding:
            setattr(self, key, getattr(self.memory_embedding, key))
        self.prior = prior
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        shape = (None,) + self.event_shape
        self.memory_embedding.build(shape)
        for name in ("query_residual", "query_embedding_network", "prior_embedding"):
            if hasattr(self, name):
                getattr(self, name).build(shape)
        if self.prior == "learned":
            self.prior_query = self.add_weight(
                shape=(self.matching_dim,), initializer="zeros", name="prior_query"
            )

    def memory_keys(self, memory):
        """e_a / ||e_a|| for every entry, `[M, matching_dim]`: compute once, score many queries."""
        return tf.math.l2_normalize(self.memory_embedding(memory), axis=-1)

    def query_embedding(self, query):
        """e_q = h^q(x), `[B, matching_dim]`."""
        if self.shared_embedding:
            return self.memory_embedding(query)
        if self.query_network == "separate":
            return self.query_embedding_network(query)
        return self.memory_embedding(query) + self.residual_scale * self.query_residual(query)

    def prior_keys(self, memory, keys=None):
        """e^p_a / ||e^p_a|| for every entry, `[M, matching_dim]`, what `prior_logits` scores.

        With `prior_network="shared"` these are `memory_keys(memory)`: pass them as `keys` to
        reuse them.
        """
        if self.prior_network == "separate":
            return tf.math.l2_normalize(self.prior_embedding(memory), axis=-1)
        return self.memory_keys(memory) if keys is None else keys

    def posterior_logits(self, query, keys):
        """Normalized log q(a|x) `[B, M]` for queries `[B, *event_shape]` and `memory_keys` `[M, d]`."""
        scores = tf.matmul(self.query_embedding(query), keys, transpose_b=True)
        return tf.nn.log_softmax(tf.cast(scores, tf.float32), axis=-1)

    def prior_logits(self, keys):
        """Normalized log p(a) `[M]` for `prior_keys` `[M, d]`."""
        if self.prior == "flat":
            return tf.nn.log_softmax(tf.zeros(tf.shape(keys)[:1]))
        return tf.nn.log_softmax(tf.cast(tf.linalg.matvec(keys, self.prior_query), tf.float32))

    def call(self, inputs, num_samples=1, seed=None):
        keys = self.memory_keys(inputs["memory"])
        logits = self.posterior_logits(inputs["query"], keys)  # [B, M]
        prior_logits = self.prior_logits(self.prior_keys(inputs["memory"], keys))  # [M]
        posterior = distributions.tfd.Categorical(logits=logits)
        samples = posterior.sample(
            num_samples, seed=distributions.seed_pair(self.seed_generator if seed is None else seed)
        )  # [K, B]
        kl = tf.reduce_sum(tf.exp(logits) * (logits - prior_logits), axis=-1)
        return {
            "logits": logits,
            "prior_logits": prior_logits,
            "samples": tf.cast(samples, tf.int32),
            "log_prob": posterior.log_prob(samples),
            "kl": kl,
        }

    def get_config(self):
        embedding = {key: getattr(self, key) for key in EMBEDDING_ARGS}
        return {
            **super().get_config(), **embedding, "prior": self.prior, "shared_embedding": self.shared_embedding,
            "residual_scale": self.residual_scale, "query_network": self.query_network,
            "prior_network": self.prior_network, "seed": self.seed,
        }
