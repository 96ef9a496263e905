"""The base class shared by the zoo's latent-variable models.

A subclass implements `call(x, training)` returning a dict of batch-major tensors
(at least `log_weights` `[B, K]`, `log_px_z` `[B, K]`, `kl` `[B]`, `reconstruction`
`[B, *input_shape]`) and `log_importance_weights(x, num_samples, seed)` returning
`[S, B]` (and, where the inference pass is deterministic given x, `importance_features`).
The base class turns those into the training loss and metrics, the importance-sampled
log-likelihood and the serving endpoints, and calls `zoo.validation` at every public entry
point.

The protocol every model follows (same names and argument order in the serving signatures):
`encode(x)`, `decode(z)`, `sample(num_samples, *, seed=None)`, `reconstruct(x)`,
`log_likelihood(x, num_samples=5000, seed=None)`; model-specific inputs (a memory, an
address, memory switches) are keyword arguments.
"""

import math

import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers.likelihood_head import LIKELIHOODS

# Default training steps per compiled call (see `compile`).
STEPS_PER_EXECUTION = 25
# Upper bound on importance samples x batch rows per compiled chunk of `log_likelihood`.
_ROWS_PER_CHUNK = 50_000
# A pretrained model's directory (savedmodels/<name>): its training configuration and Keras weights.
PRETRAINED_CONFIG = "config.json"
PRETRAINED_WEIGHTS = "model.weights.h5"


def steps_per_execution_for(steps_per_epoch, limit=STEPS_PER_EXECUTION):
    """The most steps per compiled call, at most `limit`, that divide an epoch of `steps_per_epoch` steps.

    Keras runs whole calls: with `steps_per_epoch` not a multiple of `steps_per_execution`, an epoch
    of endless data takes whole calls' worth of steps (30 asked at 25 per call train 50), and a finite
    stream of exactly `epochs x steps_per_epoch` batches runs out in the last epoch.
    """
    steps_per_epoch = validation.positive_int("steps_per_epoch", steps_per_epoch)
    return max(d for d in range(1, min(validation.positive_int("limit", limit), steps_per_epoch) + 1)
               if steps_per_epoch % d == 0)


class LatentVariableModel(keras.Model):
    """Base class: loss/metrics from `call()`, log-likelihood by importance sampling, validation.

    Args:
        input_shape: tuple of ints, the shape of one example, e.g. `(28, 28, 1)`.
        likelihood: `"bernoulli"` (data in {0, 1}), `"gaussian"` (any finite data) or
            `"logistic_mixture"` (8-bit data k / 255, the discretized logistic mixture).
        num_importance_samples: int >= 1, K of the training bound; 1 is the ELBO.
        seed: int or None, seeds every stochastic layer and the evaluation sampler.
    """

    # Rows (samples x batch) per chunk of `importance_sampling`; None is the module default.
    # Models whose rows carry feature maps (convolutional decoders) set a smaller value.
    rows_per_chunk = None

    def __init__(
        self,
        input_shape=(28, 28, 1),
        likelihood="bernoulli",
        num_importance_samples=1,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.input_shape = validation.positive_ints("input_shape", input_shape)
        self.likelihood = likelihood
        self.num_importance_samples = validation.positive_int("num_importance_samples", num_importance_samples)
        self.seed = validation.constructor_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The "loss" metric is Keras's own tracker; these report the bound's parts.
        self.bound_tracker = keras.metrics.Mean(name="bound")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self._features_fn = self._log_weights_fn = None

    @classmethod
    def from_preset(cls, name, load_weights=True, **overrides):
        """Builds the model of a named preset, or loads a pretrained model from its directory.

        Called on `LatentVariableModel` itself it builds whichever class the preset names.

        Args:
            name: a preset name (see `zoo.presets.PRESETS`; an untrained model), or the directory
                of a pretrained model, e.g. `"savedmodels/memvae_mnist_500_500_100"`: its
                `config.json` (the `zoo.train` configuration) names the preset and the overrides it
                was trained with, and `model.weights.h5` holds the trained weights.
            load_weights: bool, for a directory: load its weights (False: the same architecture,
                freshly initialised).
            **overrides: constructor arguments that replace the preset's (for a directory, ones that
                leave the weights' shapes alone, e.g. `num_importance_samples`).

        Example:

        >>> model = zoo.MemVAE.from_preset("savedmodels/memvae_mnist_500_500_100")  # trained, fine-tunable
        """
        import json
        import os

        from zoo.presets import PRESETS

        if not isinstance(name, (str, os.PathLike)):
            raise ValueError(f"name must be a preset name or a pretrained model's directory, got {name!r}")
        if os.path.isdir(name):
            config_path = os.path.join(name, PRETRAINED_CONFIG)
            if not os.path.isfile(config_path):
                raise ValueError(f"{name!r} is a directory without {PRETRAINED_CONFIG}; expected a pretrained "
                                 f"model's directory (e.g. savedmodels/<name>) or a preset name")
            try:
                with open(config_path) as f:
                    trained = json.load(f)
                preset, trained_overrides = trained["preset"], dict(trained["overrides"])
            except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise ValueError(f"{config_path} is not a zoo.train config.json ({type(error).__name__}: "
                                 f"{str(error).splitlines()[0]}); expected a JSON object with 'preset' and "
                                 "'overrides'") from None
            load_weights = validation.boolean("load_weights", load_weights)
            weights_path = os.path.join(name, PRETRAINED_WEIGHTS)
            if load_weights and not os.path.isfile(weights_path):
                raise ValueError(f"{name!r} has no {PRETRAINED_WEIGHTS}; pass load_weights=False for the "
                                 "architecture alone, freshly initialised")
            model = cls.from_preset(preset, **{**trained_overrides, **overrides})
            if load_weights:
                try:
                    model.load_weights(weights_path)
                except ValueError as error:
                    raise ValueError(f"the weights in {name!r} do not fit the model with overrides {overrides}: "
                                     f"{str(error).splitlines()[0]}") from None
                except OSError as error:  # h5py: not an HDF5 file, truncated
                    raise ValueError(f"{weights_path} is not a readable Keras weights file "
                                     f"({str(error).splitlines()[0]})") from None
            return model
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}, "
                             "or a pretrained model's directory")
        preset = PRESETS[name]
        target = keras.saving.get_registered_object(f"zoo>{preset['class']}")
        if target is None or not issubclass(target, cls):
            raise ValueError(
                f"preset {name!r} builds a {preset['class']}, not a {cls.__name__}; "
                f"use zoo.{preset['class']}.from_preset({name!r})"
            )
        return target(**{**preset["config"], **overrides})

    def compile(self, optimizer=None, jit_compile=None, steps_per_execution=STEPS_PER_EXECUTION, **kwargs):
        """Compiles with defaults for VAE training: `keras.optimizers.Adam(1e-3)`, 25 steps per execution; no loss needed.

        Several steps per compiled call amortise Keras's per-step Python and dispatch work,
        and on the CPU benchmarked TensorFlow's own (oneDNN) kernels outran XLA's CPU code
        (benchmarks/train_throughput.py; benchmarks/RESULTS.md names the CPU). So `jit_compile=None`
        means XLA only where a GPU is present. Callbacks see batches every `steps_per_execution` steps.
        """
        if optimizer is None or optimizer == "auto":
            optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        if jit_compile is None:
            jit_compile = bool(tf.config.list_physical_devices("GPU"))
        super().compile(
            optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=steps_per_execution, **kwargs
        )

    def compile_from_config(self, config):
        # Keras skips a custom compile() on load; restoring it keeps the optimizer state of a `.keras` file.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Keras's train step takes this as the replica's share of the loss: a strategy sums the
        # replicas' gradients, so each replica's mean over its part of the global batch counts 1 / replicas.
        loss = self.batch_loss(x, y, y_pred, sample_weight, training)
        return loss / tf.distribute.get_strategy().num_replicas_in_sync

    def batch_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The loss minimised on a batch (a mean over its examples); updates the metrics. Subclasses add terms."""
        bound = self.training_bound(y_pred)
        kl_weight = self.kl_weight() if training else 1.0
        objective = bound if isinstance(kl_weight, float) else self.training_bound(y_pred, kl_weight)
        loss = -tf.reduce_mean(objective)
        if self.losses:
            loss += tf.add_n([tf.cast(term, tf.float32) for term in self.losses])  # float16 under a mixed policy
        self.bound_tracker.update_state(bound)
        self.reconstruction_tracker.update_state(tf.reduce_mean(y_pred["log_px_z"], axis=-1))
        self.kl_tracker.update_state(y_pred["kl"])
        return loss

    def train_step(self, data):
        return self._cross_worker_logs(super().train_step(data))

    def test_step(self, data):
        return self._cross_worker_logs(super().test_step(data))

    def _cross_worker_logs(self, logs):
        # Keras 3.15 averages a multi-worker run's logs with strategy.reduce(MEAN, axis=0), which fails
        # on the scalars metrics give (tensorflow/tensorflow#72388): hand it vectors of one.
        strategy = self.distribute_strategy
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return logs
        cluster = strategy.cluster_resolver.cluster_spec()
        if sum(cluster.num_tasks(job) for job in cluster.jobs) < 2:
            return logs
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}

    def kl_weight(self):
        """The weight beta of the latent terms in training (KL warm-up); 1.0 here, a schedule in subclasses."""
        return 1.0

    def training_bound(self, outputs, kl_weight=1.0):
        """The per-example bound `[B]` maximised in training.

        K = 1: E_q log p(x|z) - KL with the KL in closed form (Kingma & Welling's
        lower-variance estimator of the same ELBO); K > 1: the IWAE bound. A `kl_weight`
        beta < 1 (warm-up) weighs the latent terms: log p(x|z) + beta (log p(z) - log q(z)).
        """
        warm = not (isinstance(kl_weight, float) and kl_weight == 1.0)
        if self.num_importance_samples == 1:
            return objectives.elbo(outputs["log_px_z"][:, 0], kl_weight * outputs["kl"] if warm else outputs["kl"])
        log_weights, log_px_z = outputs["log_weights"], outputs["log_px_z"]
        if warm:
            log_weights = log_px_z + kl_weight * (log_weights - log_px_z)
        return objectives.iwae_bound(tf.transpose(log_weights))

    def log_importance_weights(self, x, num_samples, seed):
        """log p(x, z_s) - log q(z_s | x) for S posterior samples, `[S, B]`; subclasses implement.

        A model whose `importance_features` returns something also takes it as `features=`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement log_importance_weights")

    def importance_features(self, x):
        """What every importance sample of `x` shares, or None (here: nothing is shared).

        A model whose inference pass is deterministic given x (e.g. NVAE's bottom-up tower, its
        batch norm in inference mode) returns that pass's output; `importance_sampling` and the
        served `log_likelihood` then compute it once per call and give it to every chunk as
        `log_importance_weights(x, size, seed, features=...)`, which must return what it returns
        without it.
        """
        del x
        return None

    def _shared_features(self, features):
        # Keyword arguments for `log_importance_weights`: models without shared features keep their signature.
        return {} if features is None else {"features": features}

    def importance_sampling(self, x, num_samples=5000, seed=None):
        """Importance-sampled estimates from `num_samples` posterior samples, in chunks.

        Chunks hold at most 50,000 sample-rows, so k = 5000 on a batch of 100 runs in
        bounded memory; what the samples share (`importance_features`) is computed once per
        call. Returns `{"log_likelihood": [B], "elbo": [B]}` in nats:

            log p(x) ~= log (1/S) sum_s p(x, z_s) / q(z_s | x)   (Burda et al. 2016, eq. 13)
            ELBO     ~= (1/S) sum_s log p(x, z_s) / q(z_s | x)
        """
        num_samples = validation.num_samples(num_samples)
        seed = validation.seed(seed)
        x = self.validate_inputs(x)
        batch = int(tf.nest.flatten(x)[0].shape[0])  # structured inputs (e.g. `(x, memory)`) lead with x
        chunk = max(1, min(num_samples, (self.rows_per_chunk or _ROWS_PER_CHUNK) // max(batch, 1)))
        base_seed = distributions.seed_pair(self.seed_generator if seed is None else seed)
        if self._log_weights_fn is None:
            # Not XLA: from the same seeds, XLA's random-number generator draws other samples
            # than the served (graph) estimator, whose numbers this must equal.
            self._features_fn = tf.function(self.importance_features, jit_compile=False, reduce_retracing=True)
            self._log_weights_fn = tf.function(
                self.log_importance_weights, jit_compile=False, reduce_retracing=True
            )
        shared = self._shared_features(self._features_fn(x))  # once per call, not once per chunk
        log_sum, weight_sum = None, 0.0
        for i, start in enumerate(range(0, num_samples, chunk)):
            size = min(chunk, num_samples - start)
            seed_i = tf.random.experimental.stateless_fold_in(base_seed, i)
            log_weights = self._log_weights_fn(x, size, seed_i, **shared)  # [size, B]
            lse = tf.reduce_logsumexp(log_weights, axis=0)
            log_sum = lse if log_sum is None else tf.experimental.numpy.logaddexp(log_sum, lse)
            weight_sum += tf.reduce_sum(log_weights, axis=0)
        return {
            "log_likelihood": log_sum - math.log(num_samples),
            "elbo": weight_sum / num_samples,
        }

    def log_likelihood(self, x, num_samples=5000, seed=None):
        """Importance-sampled estimate of log p(x) in nats, `[B]` (see `importance_sampling`)."""
        return self.importance_sampling(x, num_samples, seed)["log_likelihood"]

    # Input validation (zoo.validation) ------------------------------------------------

    def check_input_spec(self, x):
        """Static checks (dtype, shape) that hold for eager, symbolic and traced tensors and `tf.TensorSpec`s."""
        validation.check_spec(x, self.input_shape)

    def validate_inputs(self, x):
        """A batch checked by `zoo.validation.examples` (shape, dtype, finite, the likelihood's support); float32.

        Traced (e.g. in a serving signature), the value checks become graph assertions.
        """
        return validation.examples(x, self.input_shape, self.likelihood)

    def _validated_element(self, element):
        """A traced dataset element `x` or `(x, ...)`, its `x` guarded by assertions."""
        if isinstance(element, tuple):
            return (self.validate_inputs(element[0]),) + element[1:]
        return self.validate_inputs(element)

    def _check_element_spec(self, spec):
        x_spec = spec[0] if isinstance(spec, tuple) else spec
        if not isinstance(x_spec, tf.TensorSpec):
            raise ValueError(
                f"{type(self).__name__} trains on batches of tensors [batch, {', '.join(map(str, self.input_shape))}] "
                f"(or tuples led by one), got a dataset of {spec}"
            )
        self.check_input_spec(x_spec)

    def _check_batch(self, batch):
        if isinstance(batch, dict):
            raise ValueError(
                f"{type(self).__name__} trains on tensors [batch, {', '.join(map(str, self.input_shape))}] "
                f"(or tuples led by one), got a dict with keys {sorted(batch)}"
            )
        self.validate_inputs(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def _run_checked(self, method, x, *args, **kwargs):
        with validation.reraise_invalid_input():
            data = validation.training_data(x, self._check_element_spec, self._check_batch, self._validated_element)
            return method(data, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        steps = kwargs.get("steps_per_epoch")
        if steps is not None:
            steps = kwargs["steps_per_epoch"] = validation.positive_int("steps_per_epoch", steps)
        if steps is not None and self.steps_per_execution and steps % self.steps_per_execution:
            raise ValueError(
                f"steps_per_epoch ({steps}) must be a multiple of the compiled steps_per_execution "
                f"({self.steps_per_execution}): Keras runs whole calls, so each epoch would take "
                f"{-(-steps // self.steps_per_execution) * self.steps_per_execution} steps; compile with "
                f"steps_per_execution={steps_per_execution_for(steps, self.steps_per_execution)}"
            )
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset is shuffled by its own pipeline
        return self._run_checked(super().fit, x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        return self._run_checked(super().evaluate, x, *args, **kwargs)

    # Serving ----------------------------------------------------------------------

    def serving_endpoints(self):
        """Named serving functions for a SavedModel (see `zoo.export`): `{name: (fn, input_signature)}`.

        Each endpoint is a public method under its own name, with its arguments in the same
        order, taking tensors and returning a dict of tensors; inputs are checked by
        `zoo.validation` (graph assertions whose message names the problem). These defaults
        serve the VAE family; models with a memory input add it as the last argument.

        - `reconstruct(x)` (also `serving_default`): `reconstruction` `[B, *input_shape]`.
        - `encode(x)`: `mean`, `log_variance` `[B, latent_dim]` of q(z|x).
        - `decode(z)`: the parameters of p(x|z), e.g. `logits` and `mean` `[N, *input_shape]`.
        - `sample(num_samples, seed)`: `samples` `[N, *input_shape]`, decoder means at z ~ p(z).
        - `log_likelihood(x, num_samples, seed)`: `log_likelihood` `[B]`, the estimate of
          `log_likelihood(x, num_samples, seed)` (same chunks, same seeds: same numbers).
        """
        images = tf.TensorSpec((None,) + self.input_shape, tf.float32, name="x")
        count = tf.TensorSpec((), tf.int32, name="num_samples")
        seed = tf.TensorSpec((2,), tf.int32, name="seed")
        reconstruct = (lambda x: {"reconstruction": self.reconstruct(x)}, [images])
        return {
            "serving_default": reconstruct,
            "reconstruct": reconstruct,
            "encode": (self.encode, [images]),
            "decode": (self.decode, [tf.TensorSpec((None, self.latent_dim), tf.float32, name="z")]),
            "sample": (lambda num_samples, seed: {"samples": self.sample(num_samples, seed=seed)}, [count, seed]),
            "log_likelihood": (self.served_log_likelihood, [images, count, seed]),
        }

    def served_log_likelihood(self, x, num_samples, seed):
        """`log_likelihood` for traced inputs (tensor `num_samples`), chunked in a `tf.while_loop`.

        The same estimator, chunks and seeds as `log_likelihood` (without XLA, whose
        random-number generator draws other samples from the same seeds). `x` may be
        structured, led by the batch tensor (e.g. `(x, memory)`).
        """
        x = self.validate_inputs(x)
        num_samples = validation.num_samples(num_samples)
        seed = distributions.seed_pair(validation.seed(seed))
        batch = tf.shape(tf.nest.flatten(x)[0])[:1]
        rows = self.rows_per_chunk or _ROWS_PER_CHUNK
        chunk = tf.maximum(1, tf.minimum(num_samples, rows // tf.maximum(batch[0], 1)))
        shared = self._shared_features(self.importance_features(x))  # outside the loop: once per call

        def add_chunk(i, log_sum):
            size = tf.minimum(chunk, num_samples - i * chunk)
            seed_i = tf.random.experimental.stateless_fold_in(seed, i)
            log_weights = self.log_importance_weights(x, size, seed_i, **shared)
            return i + 1, tf.experimental.numpy.logaddexp(log_sum, tf.reduce_logsumexp(log_weights, axis=0))

        _, log_sum = tf.while_loop(lambda i, _: i * chunk < num_samples, add_chunk, (0, tf.fill(batch, -math.inf)))
        return {"log_likelihood": log_sum - tf.math.log(tf.cast(num_samples, tf.float32))}

    def get_config(self):
        return {
            **super().get_config(),
            "input_shape": self.input_shape,
            "likelihood": self.likelihood,
            "num_importance_samples": self.num_importance_samples,
            "seed": self.seed,
        }

