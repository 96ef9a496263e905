"""MemoryBlock and MemVAE: the block's equations, parameter counts, the memory switch, local
reconstruction errors, MEM-IWAE, slot images, bad inputs. The shared battery (config and .keras
round trips, gradients eager and XLA-compiled) runs over the goldens in tests/goldens.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.goldens import binary_images


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _randomise(layer, seed=0):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))


def _tiny(**overrides):
    config = dict(input_shape=(8, 8, 1), hidden_units=(16, 8), latent_dim=2, num_slots=(4, 3), seed=1)
    return zoo.MemVAE(**{**config, **overrides})


class TestMemoryBlock:
    def test_ladder_block_matches_the_papers_equations(self):
        block = zoo.layers.MemoryBlock(num_slots=3)
        h = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
        block(h)
        _randomise(block)
        v = {name: w.numpy() for name, w in block.ladder.items()}
        p = _sigmoid(h @ block.controller_kernel.numpy() + block.controller_bias.numpy())
        m = p @ block.memory.numpy()
        gate = _sigmoid(v["c1"] + v["c2"] * h + v["c3"] * m + v["c4"] * h * m)
        expected = np.maximum(v["a1"] + v["a2"] * h + v["a3"] * m + v["a4"] * h * m + v["b1"] * gate, 0)
        np.testing.assert_allclose(block(h), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(block.address(h), p, rtol=1e-5)

    def test_vis_block_is_softmax_attention_and_a_sum(self):
        block = zoo.layers.MemoryBlock(num_slots=3, attention="softmax", composition="sum", activation="linear")
        h = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
        block(h)
        p = np.asarray(block.address(h))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(block(h), h + p @ block.memory.numpy(), rtol=1e-5, atol=1e-6)
        assert len(block.weights) == 3  # no composition parameters

    def test_starts_as_identity_and_switch_reads_ones(self):
        block = zoo.layers.MemoryBlock(num_slots=3, activation="linear")
        h = np.random.default_rng(3).normal(size=(2, 5)).astype(np.float32)
        np.testing.assert_allclose(block(h), h, atol=1e-6)  # f_c(h_g, h_m) = h_g at initialisation
        block.ladder["a3"].assign(np.ones(5, np.float32))
        np.testing.assert_allclose(block(h, memory_enabled=False), h + 1.0, atol=1e-6)
        block.memory.assign(block.memory * 100.0)
        np.testing.assert_allclose(block(h, memory_enabled=False), h + 1.0, atol=1e-6)
        assert not np.allclose(block(h), h + 1.0)

    @pytest.mark.parametrize("composition,extra", [("ladder", 9), ("sum", 0)])
    def test_parameter_count(self, composition, extra):
        block = zoo.layers.MemoryBlock(num_slots=70, composition=composition)
        block.build((None, 500))
        assert block.count_params() == 500 * 70 + 70 + 70 * 500 + extra * 500

    @pytest.mark.parametrize(
        "kwargs,match",
        [
            (dict(num_slots=0), "num_slots must be an int >= 1, got 0"),
            (dict(num_slots=2.5), "num_slots must be an int >= 1, got 2.5"),
            (dict(num_slots=3, attention="tanh"), r"attention must be one of \('sigmoid', 'softmax'\), got 'tanh'"),
            (dict(num_slots=3, composition="concat"), r"composition must be one of \('ladder', 'sum'\), got 'concat'"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            zoo.layers.MemoryBlock(**kwargs)


class TestMemVAE:
    @pytest.mark.parametrize(
        "preset,count",
        [
            ("memvae_mnist_500_500_100", 1_550_084),
            ("memvae_ocr_letters_200_200_50", 207_528),
            ("vis_memvae_mnist_500_500_100", 1_541_084),
            ("vae_mnist_530_530_100", 1_559_184),
        ],
    )
    def test_preset_parameter_counts(self, preset, count):
        model = zoo.LatentVariableModel.from_preset(preset)
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == count
        if isinstance(model, zoo.MemVAE):  # 70 slots next to x, 30 next to z: the authors' -n_slots 0,70,30
            assert {name: block.num_slots for name, block in model.memory_blocks.items()} == {"0": 70, "1": 30}

    def test_frey_faces_preset(self):
        model = zoo.MemVAE.from_preset("memvae_frey_faces_200_10")
        assert (model.likelihood, model.hidden_units, model.latent_dim, model.num_slots) == ("gaussian", (200,), 10, (20,))
        x = np.random.default_rng(0).random((3, 28, 20, 1)).astype(np.float32)
        outputs = model(x, training=True)
        assert outputs["log_px_z"].shape == (3, 1) and np.all(np.isfinite(outputs["log_px_z"]))
        assert "local_reconstruction" not in outputs  # the authors' Frey faces run has no local terms

    def test_gradients_reach_the_memory_once_the_gates_open(self):
        model = _tiny()
        x = binary_images((16, 8, 8, 1))
        blocks = list(model.memory_blocks.values())
        memory_weights = [w for b in blocks for w in (b.memory, b.controller_kernel, b.controller_bias)]
        optimizer = keras.optimizers.Adam(0.05)
        for step in range(2):  # the first step opens the gates (a3, a4, b1), the second reaches the memory
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=x, y_pred=model(x, training=True), training=True)
            grads = tape.gradient(loss, model.trainable_weights)
            by_path = {w.path: g for w, g in zip(model.trainable_weights, grads)}
            reached = [w.path for w in memory_weights if by_path[w.path] is not None and np.any(np.asarray(by_path[w.path]))]
            assert reached == ([] if step == 0 else [w.path for w in memory_weights])
            optimizer.apply(grads, model.trainable_weights)

    def test_local_reconstruction_term(self):
        x = binary_images((8, 8, 8, 1))
        plain, weighted = _tiny(local_reconstruction_weights=(0, 0)), _tiny(local_reconstruction_weights=(2.0, 0.5))
        weighted.set_weights(plain.get_weights())
        reference = plain(x, training=True)
        assert "local_reconstruction" not in reference
        outputs = weighted(x, training=True)
        np.testing.assert_allclose(outputs["log_weights"], reference["log_weights"], rtol=1e-4, atol=1e-3)
        local = np.asarray(outputs["local_reconstruction"])
        assert local.shape == (8,) and np.all(local > 0)
        loss = weighted.compute_loss(x=x, y_pred=outputs)
        np.testing.assert_allclose(loss, -np.mean(outputs["log_px_z"][:, 0] - outputs["kl"]) + local.mean(), rtol=1e-5)

    def test_local_reconstruction_value_by_hand(self):
        # One linear hidden layer, no batch normalization, no memory, q(z|x) with (numerically) zero
        # variance: a_enc = x W_e + b_e, z = a_enc W_m + b_m, h_dec = z W_d + b_d, and the term is
        # lambda * mean_units (n(a_enc) - n(h_dec))^2 with n standardising each unit over the batch.
        model = _tiny(hidden_units=(4,), num_slots=(0,), local_reconstruction_weights=(0.3,), batch_norm=False,
                      activation="linear")
        model.posterior.log_variance_head.set_weights([np.zeros((4, 2), np.float32), np.full(2, -40.0, np.float32)])
        x = binary_images((6, 8, 8, 1))
        (we, be), (wm, bm), (wd, bd) = (
            layer.get_weights() for layer in (model.encoder.dense_layers[0], model.posterior.mean_head,
                                              model.decoder.dense_layers[0])
        )
        a_enc = x.reshape(6, 64) @ we + be
        h_dec = (a_enc @ wm + bm) @ wd + bd

        def n(h):
            return (h - h.mean(axis=0)) / np.sqrt(h.var(axis=0) + 1e-4)

        expected = 0.3 * np.mean((n(a_enc) - n(h_dec)) ** 2, axis=1)
        assert expected.min() > 0.01  # not a trivially small case
        np.testing.assert_allclose(model(x, training=True)["local_reconstruction"], expected, rtol=1e-4, atol=1e-6)

    def test_mem_iwae_bound(self):
        model = _tiny(num_importance_samples=4)
        x = binary_images((5, 8, 8, 1))
        outputs = model(x, training=True)
        assert outputs["log_weights"].shape == (5, 4)
        expected = tf.reduce_logsumexp(outputs["log_weights"], axis=1) - np.log(4.0)
        np.testing.assert_allclose(model.training_bound(outputs), expected, rtol=1e-5)

    def test_memory_switch_per_layer(self):
        model = _tiny()
        model.memory_blocks["0"].ladder["a3"].assign(np.ones(16, np.float32))
        z = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
        on, off = model.decode(z)["mean"], model.decode(z, memory_enabled=(False, True))["mean"]
        assert not np.allclose(on, off)
        model.memory_blocks["0"].memory.assign(model.memory_blocks["0"].memory * 50.0)
        np.testing.assert_allclose(model.decode(z, memory_enabled=(False, True))["mean"], off, atol=1e-6)
        assert model.sample(3, seed=2, memory_enabled=(False, False)).shape == (3, 8, 8, 1)

    def test_slot_images_decode_a_slot_alone(self):
        model = _tiny(attention="softmax", composition="sum")
        images = np.asarray(model.slot_images(layer=0))
        assert images.shape == (4, 8, 8, 1)
        block = model.memory_blocks["0"]
        expected = model.observation(tf.nn.relu(block.memory))["mean"]
        np.testing.assert_allclose(images, expected, rtol=1e-5)
        assert model.slot_images(layer=1).shape == (3, 8, 8, 1)

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match=r"num_slots must be 2 non-negative numbers \(one per hidden layer, from x "
                                             r"upward\), got \(4,\)"):
            _tiny(num_slots=(4,))
        with pytest.raises(ValueError, match=r"local_reconstruction_weights must be 2 non-negative numbers .*, got "
                                             r"\(0.1, -1.0\)"):
            _tiny(local_reconstruction_weights=(0.1, -1.0))
        model = _tiny(num_slots=(4, 0))
        with pytest.raises(ValueError, match=r"memory_enabled must be 2 bools \(one per hidden layer, from x upward\), "
                                             r"got \(False,\)"):
            model.decode(np.zeros((2, 2), np.float32), memory_enabled=(False,))
        with pytest.raises(ValueError, match=r"layer must be one of the layers with memory \[0\], got 1"):
            model.slot_images(layer=1)
        with pytest.raises(ValueError, match=r"Bernoulli likelihood expects x binary, .* got values in \[0.5, 0.5\]"):
            model.slot_preferences(np.full((2, 8, 8, 1), 0.5, np.float32))
        with pytest.raises(ValueError, match=r"x must have shape \[batch, 8, 8, 1\], got shape \[2, 8, 8\]"):
            model(np.zeros((2, 8, 8), np.float32))
