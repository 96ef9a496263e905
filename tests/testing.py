"""What the tests share: the battery every public layer and model goes through, and the apps run on tiny runs."""

import hashlib
import os
import re
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from zoo.runs import config as run_config, files as run_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _float_leaves(outputs):
    return [t for t in tf.nest.flatten(outputs) if t.dtype.is_floating]


class _LayerHarness(keras.Model):
    """Wraps a layer in a model whose loss touches every float output, for a fit step."""

    def __init__(self, layer, call_kwargs):
        super().__init__(name="layer_harness")
        self.layer = layer
        self.call_kwargs = call_kwargs

    def call(self, inputs, training=False):
        return self.layer(inputs, **self.call_kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return tf.add_n([tf.reduce_mean(tf.square(t)) for t in _float_leaves(y_pred)])


def assert_allclose(a, b, atol=1e-5, rtol=1e-5):
    tf.nest.map_structure(
        lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol, rtol=rtol), a, b
    )


class TestCase:
    """Base class with the layer and model batteries (pytest collects subclasses named Test*)."""

    def run_layer_test(
        self, cls, init_kwargs, input_data, expected_output_shape, call_kwargs=None, zero_gradient=None
    ):
        """Config round trip, symbolic and eager calls, an XLA fit step that changes every weight.

        `zero_gradient`: regex of weight paths whose gradient is exactly zero by design
        (a Dense bias followed by batch normalization); those must NOT move.
        """
        call_kwargs = call_kwargs or {}
        layer = cls(**init_kwargs)
        config = layer.get_config()
        for key, value in init_kwargs.items():
            assert config[key] == value or tuple(np.atleast_1d(config[key])) == tuple(np.atleast_1d(value)), key
        clone = cls.from_config(config)
        assert clone.get_config() == config

        symbolic = tf.nest.map_structure(lambda a: keras.Input(shape=a.shape[1:], batch_size=a.shape[0], dtype=a.dtype), input_data)
        eager = layer(input_data, **call_kwargs)
        out_shapes = tf.nest.map_structure(lambda t: tuple(t.shape), eager)
        assert out_shapes == expected_output_shape, (out_shapes, expected_output_shape)
        sym_out = cls(**init_kwargs)(symbolic, **call_kwargs)
        tf.nest.assert_same_structure(sym_out, eager)

        harness = _LayerHarness(layer, call_kwargs)
        harness.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
        before = [w.numpy().copy() for w in layer.trainable_weights]
        harness.fit(input_data, epochs=1, batch_size=len(tf.nest.flatten(input_data)[0]), verbose=0)
        after = [w.numpy() for w in layer.trainable_weights]
        for w, b, a in zip(layer.trainable_weights, before, after):
            if zero_gradient and re.search(zero_gradient, w.path):
                np.testing.assert_allclose(b, a, atol=1e-6, err_msg=w.path)
            else:
                assert not np.allclose(b, a), f"XLA fit step did not change {w.path}"
        return layer

    def assert_gradients_reach_all_weights(self, model, x, zero_gradient=None, jit_compile=False):
        """Every trainable weight gets a finite, non-zero gradient of the training loss, except those matching
        `zero_gradient`, which get ~0. With `jit_compile` the loss and its gradients are one XLA-compiled function
        (the model's part of an XLA training step; the optimizer's update is Keras's)."""

        def loss_and_gradients(x):
            with tf.GradientTape() as tape:
                outputs = model(x, training=True)
                loss = model.compute_loss(x=x, y_pred=outputs, training=True)
            return loss, tape.gradient(loss, model.trainable_weights)

        if jit_compile:
            loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)
        loss, grads = loss_and_gradients(x)
        assert np.isfinite(float(loss)), float(loss)
        missing, non_finite = [], []
        for w, g in zip(model.trainable_weights, grads):
            g = np.zeros(w.shape) if g is None else np.asarray(tf.convert_to_tensor(g))
            if not np.all(np.isfinite(g)):
                non_finite.append(w.path)
            elif zero_gradient and re.search(zero_gradient, w.path):
                np.testing.assert_allclose(g, 0.0, atol=1e-4, err_msg=w.path)
            elif not np.any(g):
                missing.append(w.path)
        assert not missing and not non_finite, f"no gradient reaches {missing}; non-finite gradients of {non_finite}"

    def run_model_test(self, model, x, zero_gradient=None):
        """Gradients of the training loss reach every weight, eagerly and XLA-compiled.

        A whole XLA-compiled Keras `fit` (this step and the optimizer's update) runs in
        tests/models/test_vma.py; tracing Keras's optimizer for every golden would triple the battery's time.
        """
        model.compile()  # the optimizer, whose step counter the KL warm-ups read
        self.assert_gradients_reach_all_weights(model, x, zero_gradient)
        self.assert_gradients_reach_all_weights(model, x, zero_gradient, jit_compile=True)

    def run_model_saving_test(self, model, x, deterministic_outputs=None):
        """`.keras` round trip: same class, config and weights, and equal deterministic outputs.

        `deterministic_outputs(model, x)` returns a structure of tensors that depends only on
        the weights (posterior means, fixed stateless seeds); by default the reconstruction
        and a fixed-seed log-likelihood estimate.
        """
        deterministic_outputs = deterministic_outputs or default_deterministic_outputs
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        assert type(loaded) is type(model)
        assert loaded.get_config() == model.get_config()
        assert_allclose([w.numpy() for w in loaded.weights], [w.numpy() for w in model.weights], atol=0, rtol=0)
        if getattr(getattr(model, "optimizer", None), "built", False):  # its state too, for training to resume
            assert_allclose([v.numpy() for v in loaded.optimizer.variables],
                            [v.numpy() for v in model.optimizer.variables], atol=0, rtol=0)
        assert_allclose(deterministic_outputs(loaded, x), deterministic_outputs(model, x))
        return loaded


def checkpointed_run(model_dir):
    """A `zoo.train` run's model, compiled with the run's optimizer, and its checkpoint state (not yet restored)."""
    from zoo.runs.config import build_model, build_optimizer
    from zoo.runs.files import read_config
    from zoo.runs.state import RunState

    config = read_config(model_dir)
    model = build_model(config)
    model.compile(optimizer=build_optimizer(config))
    model.optimizer.build(model.trainable_variables)
    return model, RunState(model, model_dir, config)


def default_deterministic_outputs(model, x):
    return {"reconstruct": model.reconstruct(x), "log_likelihood": model.log_likelihood(x, num_samples=8, seed=7)}


# A tiny VAE on real data; batch 5 makes an epoch 400 steps, long enough to kill it midway.
TINY = [
    "--preset=vae_mnist_500_500_100", "--dataset=binarized_mnist", "--override=hidden_units=(32,)",
    "--override=latent_dim=4", "--train_split=train[:2000]", "--validation_split=validation[:200]",
    "--batch_size=5", "--verbose=0", "--steps_per_execution=1",
]
STEPS_PER_EPOCH = 400
# A tiny VAE searched on a few hundred real images: 2 trials of 3 steps of 50.
TINY_SEARCH = [
    "--preset=vae_mnist_500_500_100", "--dataset=binarized_mnist", "--max_trials=2", "--epochs=1",
    "--steps_per_epoch=3", "--batch_size=50", "--override=hidden_units=(32,)", "--override=latent_dim=8",
    "--train_split=train[:300]", "--validation_split=validation[:100]", "--objective_samples=10", "--verbose=0",
]
# A two-level Ladder VAE on a few hundred real images: a hierarchy through the whole CLI in seconds.
TINY_LADDER = [
    "--preset=ladder_vae_mnist", "--dataset=binarized_mnist", "--train_split=train[:200]",
    "--validation_split=validation[:50]", "--batch_size=20", "--verbose=0", "--steps_per_execution=1",
    "--override=levels=({'hidden_units': (16,), 'latent_dim': 4}, {'hidden_units': (8,), 'latent_dim': 2})",
]


def start_app(module, *args):
    """`python -m module *args` from the repository root, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT,
    )


def finish_app(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def run_app(module, *args, timeout=300):
    return finish_app(start_app(module, *args), timeout)


def checkpointed_epoch(model_dir):
    """The epoch of a run directory's latest checkpoint (0: none)."""
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, run_files.CHECKPOINT_DIR))
    return 0 if latest is None else int(latest.rsplit("-", 1)[1])


def saved_state(path):
    """Every variable (model, optimizer, RNG, counters), by key, of a run directory's latest checkpoint or of the
    checkpoint `path` names (e.g. `.../checkpoints/epoch-2`)."""
    reader = tf.train.load_checkpoint(os.path.join(path, run_files.CHECKPOINT_DIR) if os.path.isdir(path) else path)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in key}


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


# A run directory zoo.train made before runs recorded their optimizer recipe whole (logs left out).
RUN_BEFORE_RECIPES = os.path.join(ROOT, "tests", "fixtures", "run_before_recipes")


def fits(preset, dataset):
    """Whether zoo.train accepts `preset` on `dataset`: its input shape is the dataset's or a variant the loader gives."""
    from zoo.presets import PRESETS

    shape = tuple(PRESETS[preset]["config"]["input_shape"])  # the dataset's own, or a variant zoo.train loads
    return shape == run_config.DATASETS[dataset][3] or shape in run_config.DATASET_VARIANTS.get(dataset, {})


def preset_dataset_pairs():
    from zoo.presets import PRESETS

    return [(p, d) for p in sorted(PRESETS) for d in run_config.DATASETS]
