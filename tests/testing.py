"""The shared test battery: every public layer and model goes through these."""

import os
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf


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

    def assert_gradients_reach_all_weights(self, model, x, zero_gradient=None):
        """Every trainable weight gets a non-zero gradient, except those matching `zero_gradient`, which get ~0."""
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = model.compute_loss(x=x, y_pred=outputs, training=True)
        grads = tape.gradient(loss, model.trainable_weights)
        missing = []
        for w, g in zip(model.trainable_weights, grads):
            g = np.zeros(w.shape) if g is None else np.asarray(tf.convert_to_tensor(g))
            if zero_gradient and re.search(zero_gradient, w.path):
                np.testing.assert_allclose(g, 0.0, atol=1e-4, err_msg=w.path)
            elif not np.any(g):
                missing.append(w.path)
        assert not missing, f"no gradient reaches {missing}"

    def run_model_test(self, model, x, zero_gradient=None):
        """Gradients reach every weight; one XLA-compiled fit step gives finite metrics and moves the weights."""
        self.assert_gradients_reach_all_weights(model, x, zero_gradient)
        model.compile(jit_compile=True)
        before = [w.numpy().copy() for w in model.trainable_weights]
        history = model.fit(x, epochs=1, batch_size=len(tf.nest.flatten(x)[0]), verbose=0)
        for name, values in history.history.items():
            assert np.all(np.isfinite(values)), (name, values)
        stuck = [
            w.path for b, w in zip(before, model.trainable_weights)
            if np.allclose(b, w.numpy()) and not (zero_gradient and re.search(zero_gradient, w.path))
        ]
        assert not stuck, f"an XLA fit step did not move {stuck}"

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
        if getattr(model.optimizer, "built", False):  # the optimizer's state too, for training to resume
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
