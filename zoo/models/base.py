"""The base class shared by the zoo's latent-variable models.

A subclass implements `call(x, training)` returning a dict of batch-major tensors
(at least `log_weights` `[B, K]`, `log_px_z` `[B, K]`, `kl` `[B]`, `reconstruction`
`[B, *input_shape]`) and `log_importance_weights(x, num_samples, seed)` returning
`[S, B]`. The base class turns those into the training loss and metrics, the
importance-sampled log-likelihood, and input validation at every public entry point.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from zoo import distributions, objectives
from zoo.layers.likelihood_head import LIKELIHOODS

# Marks assertion messages from the input pipeline so `fit`/`evaluate` can re-raise them as ValueError.
_INVALID_INPUT = "zoo invalid input: "
# Default training steps per compiled call (see `compile`).
STEPS_PER_EXECUTION = 25
# Upper bound on importance samples x batch rows per compiled chunk of `log_likelihood`.
_ROWS_PER_CHUNK = 50_000


class LatentVariableModel(keras.Model):
    """Base class: loss/metrics from `call()`, log-likelihood by importance sampling, validation.

    Args:
        input_shape: tuple of ints, the shape of one example, e.g. `(28, 28, 1)`.
        likelihood: `"bernoulli"` (data in {0, 1}) or `"gaussian"` (any finite data).
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
        _check_positive_int("num_importance_samples", num_importance_samples)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.likelihood = likelihood
        self.num_importance_samples = int(num_importance_samples)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The "loss" metric is Keras's own tracker; these report the bound's parts.
        self.bound_tracker = keras.metrics.Mean(name="bound")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self._log_weights_fn = None

    @classmethod
    def from_preset(cls, name, **overrides):
        """Builds the model of a named preset (see `zoo.presets.PRESETS`), with config overrides.

        Called on `LatentVariableModel` itself it builds whichever class the preset names.
        """
        from zoo.presets import PRESETS

        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}")
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

        Measured on CPU (benchmarks/RESULTS.md): several steps per compiled call amortise
        Keras's per-step Python and dispatch work, which costs about as much as a step of a
        1.4M-parameter MLP VAE; and TensorFlow's own (oneDNN) kernels outrun XLA's CPU code,
        most of all inside a multi-step loop. So `jit_compile=None` means XLA only where a GPU
        is present. Callbacks see batches every `steps_per_execution` steps.
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
        bound = self.training_bound(y_pred)
        loss = -tf.reduce_mean(bound)
        if self.losses:
            loss += tf.add_n(self.losses)
        self.bound_tracker.update_state(bound)
        self.reconstruction_tracker.update_state(tf.reduce_mean(y_pred["log_px_z"], axis=-1))
        self.kl_tracker.update_state(y_pred["kl"])
        return loss

    def training_bound(self, outputs):
        """The per-example bound `[B]` maximised in training.

        K = 1: E_q log p(x|z) - KL with the KL in closed form (Kingma & Welling's
        lower-variance estimator of the same ELBO); K > 1: the IWAE bound.
        """
        if self.num_importance_samples == 1:
            return objectives.elbo(outputs["log_px_z"][:, 0], outputs["kl"])
        return objectives.iwae_bound(tf.transpose(outputs["log_weights"]))

    def log_importance_weights(self, x, num_samples, seed):
        """log p(x, z_s) - log q(z_s | x) for S posterior samples, `[S, B]`; subclasses implement."""
        raise NotImplementedError(f"{type(self).__name__} must implement log_importance_weights")

    def importance_sampling(self, x, num_samples=5000, seed=None):
        """Importance-sampled estimates from `num_samples` posterior samples, in chunks.

        Chunks hold at most 50,000 sample-rows, so k = 5000 on a batch of 100 runs in
        bounded memory. Returns `{"log_likelihood": [B], "elbo": [B]}` in nats:

            log p(x) ~= log (1/S) sum_s p(x, z_s) / q(z_s | x)   (Burda et al. 2016, eq. 13)
            ELBO     ~= (1/S) sum_s log p(x, z_s) / q(z_s | x)
        """
        _check_positive_int("num_samples", num_samples)
        x = self.validate_inputs(x)
        batch = int(tf.nest.flatten(x)[0].shape[0])  # structured inputs (e.g. `(x, memory)`) lead with x
        chunk = max(1, min(num_samples, (self.rows_per_chunk or _ROWS_PER_CHUNK) // max(batch, 1)))
        base_seed = distributions.seed_pair(self.seed_generator if seed is None else seed)
        if self._log_weights_fn is None:
            # Not XLA: on CPU, TF's oneDNN matmuls ran this 2-3x faster than XLA's for
            # 500 samples x 100 examples of vae_mnist_500_500_100 (measured side by side).
            self._log_weights_fn = tf.function(
                self.log_importance_weights, jit_compile=False, reduce_retracing=True
            )
        log_sum, weight_sum = None, 0.0
        for i, start in enumerate(range(0, num_samples, chunk)):
            size = min(chunk, num_samples - start)
            seed_i = tf.random.experimental.stateless_fold_in(base_seed, i)
            log_weights = self._log_weights_fn(x, size, seed_i)  # [size, B]
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

    # Input validation -------------------------------------------------------------

    def check_input_spec(self, x):
        """Static checks (rank, shape, dtype) that hold for symbolic and eager tensors alike."""
        dtype = tf.as_dtype(x.dtype)
        if not dtype.is_floating:
            raise ValueError(
                f"{type(self).__name__} expects float inputs (float16/32/64), got dtype {dtype.name}; "
                "cast the data, e.g. tf.cast(x, tf.float32)"
            )
        shape = tuple(x.shape)
        expected = (None,) + self.input_shape
        if len(shape) != len(expected) or any(
            s is not None and e is not None and s != e for s, e in zip(shape, expected)
        ):
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape [batch, {', '.join(map(str, self.input_shape))}], "
                f"got shape {list(shape)}"
            )

    def validate_inputs(self, x):
        """Checks a concrete batch (spec, finite values, the likelihood's support); returns a float32 tensor.

        Traced (e.g. in a serving signature), the value checks become graph assertions.
        """
        x = tf.convert_to_tensor(x)
        self.check_input_spec(x)
        if not tf.executing_eagerly():
            return tf.cast(self._validated_batch(x), tf.float32)
        values = x.numpy()
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"inputs contain {int(np.sum(~np.isfinite(values)))} NaN or Inf values; "
                "expected finite values"
            )
        if self.likelihood == "bernoulli" and not np.all((values == 0) | (values == 1)):
            raise ValueError(
                "the Bernoulli likelihood expects binary inputs with values in {0, 1}, got values in "
                f"[{values.min():g}, {values.max():g}] (binarize the data, or use likelihood='gaussian')"
            )
        return tf.cast(x, tf.float32)

    def _validated_batch(self, *batch):
        x = batch[0]
        checks = [
            tf.debugging.assert_all_finite(
                x, message=_INVALID_INPUT + "inputs contain NaN or Inf values; expected finite values"
            )
        ]
        if self.likelihood == "bernoulli":
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all((x == 0) | (x == 1)),
                    [_INVALID_INPUT + "the Bernoulli likelihood expects binary inputs with values in {0, 1}"],
                )
            )
        with tf.control_dependencies(checks):
            x = tf.identity(x)
        return (x,) + batch[1:] if len(batch) > 1 else x

    def _validated_data(self, data):
        """Checks arrays now and wraps datasets so every batch is checked as it is read."""
        if isinstance(data, tf.data.Dataset):
            spec = data.element_spec
            x_spec = spec[0] if isinstance(spec, tuple) else spec
            if isinstance(x_spec, tf.TensorSpec):
                self.check_input_spec(x_spec)
                return data.map(self._validated_batch)
            return data
        if isinstance(data, (np.ndarray, tf.Tensor)):
            self.validate_inputs(data)
        return data

    def _run_checked(self, method, x, *args, **kwargs):
        try:
            return method(self._validated_data(x), *args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            if _INVALID_INPUT in error.message:
                reason = error.message.split(_INVALID_INPUT, 1)[1].split("\n", 1)[0]
                raise ValueError(reason.rstrip(" .'\"]")) from None
            raise

    def fit(self, x=None, *args, **kwargs):
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset is shuffled by its own pipeline
        return self._run_checked(super().fit, x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        return self._run_checked(super().evaluate, x, *args, **kwargs)

    # Serving ----------------------------------------------------------------------

    def serving_endpoints(self):
        """Named serving functions for a SavedModel (see `zoo.export`): `{name: (fn, input_signature)}`.

        Each fn takes tensors and returns a dict of tensors. These defaults serve the VAE
        family (models with `latent_dim`, `reconstruct`, `encode`, `decode`, `sample`);
        models with other inputs (a memory) override this.

        - `serving_default(x)`: `reconstruction` `[B, *input_shape]`, E[x | z = mean of q(z|x)].
        - `encode(x)`: `mean`, `log_variance` `[B, latent_dim]` of q(z|x).
        - `decode(z)`: the parameters of p(x|z), e.g. `logits` and `mean` `[N, *input_shape]`.
        - `sample(num_samples, seed)`: `samples` `[N, *input_shape]`, decoder means at z ~ p(z).
        - `log_likelihood(x, num_samples, seed)`: `log_likelihood` `[B]`, the estimate of
          `log_likelihood(x, num_samples, seed)` (same chunks, same seeds: same numbers).
        """
        missing = [name for name in ("latent_dim", "reconstruct", "encode", "decode", "sample") if not hasattr(self, name)]
        if missing:
            raise NotImplementedError(
                f"{type(self).__name__} has no {', '.join(missing)}, which the default serving endpoints use; "
                "override serving_endpoints()"
            )
        images = tf.TensorSpec((None,) + self.input_shape, tf.float32, name="x")
        count = tf.TensorSpec((), tf.int32, name="num_samples")
        seed = tf.TensorSpec((2,), tf.int32, name="seed")

        return {
            "serving_default": (lambda x: {"reconstruction": self.reconstruct(x)}, [images]),
            "encode": (self.encode, [images]),
            "decode": (self.decode, [tf.TensorSpec((None, self.latent_dim), tf.float32, name="z")]),
            "sample": (lambda num_samples, seed: {"samples": self.sample(num_samples, seed)}, [count, seed]),
            "log_likelihood": (self.served_log_likelihood, [images, count, seed]),
        }

    def served_log_likelihood(self, x, num_samples, seed):
        """`log_likelihood` for traced inputs (tensor `num_samples`), chunked in a `tf.while_loop`.

        The same estimator, chunks and seeds as `log_likelihood` (without XLA, whose
        random-number generator draws other samples from the same seeds). `x` may be
        structured, led by the batch tensor (e.g. `(x, memory)`).
        """
        x = self.validate_inputs(x)
        batch = tf.shape(tf.nest.flatten(x)[0])[:1]
        rows = self.rows_per_chunk or _ROWS_PER_CHUNK
        chunk = tf.maximum(1, tf.minimum(num_samples, rows // tf.maximum(batch[0], 1)))

        def add_chunk(i, log_sum):
            size = tf.minimum(chunk, num_samples - i * chunk)
            log_weights = self.log_importance_weights(x, size, tf.random.experimental.stateless_fold_in(seed, i))
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


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
