"""vma_omniglot_paper builds what Bornschein et al. (2017, sec. 4.2) describe, and its options compute what they say."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import OMNIGLOT_DIR
from zoo.runs import config as run_config, data as run_data
from zoo.runs.errors import UsageError

needs_archives = pytest.mark.skipif(
    not (OMNIGLOT_DIR / "images_background_small1.zip").exists(), reason="the shared Omniglot archives are not here"
)


def tiny(**overrides):
    config = dict(
        input_shape=(8, 8, 1), architecture="conv", filters=(4, 8), strides=(1, 2), latent_dim=2, matching_dim=4,
        shared_embedding=False, query_network="separate", prior_network="separate", posterior_input="concatenated",
        posterior_filters=(3, 5), posterior_strides=(1, 2), posterior_hidden_units=(6,), seed=3,
    )
    return zoo.VMA(**{**config, **overrides})


def images(n, seed):
    return tf.constant((np.random.default_rng(seed).random((n, 8, 8, 1)) < 0.5).astype(np.float32))


def variable_ids(layer):
    return {id(w) for w in layer.weights}


def test_preset_builds_the_papers_structure():
    model = zoo.VMA.from_preset("vma_omniglot_paper", seed=0)
    preset = zoo.presets.PRESETS["vma_omniglot_paper"]
    assert model.input_shape == (26, 26, 1)
    assert preset["recipe"]["optimizer"] == "adam" and preset["recipe"]["learning_rate"] in (1e-4, 3e-4)
    assert model.vimco_baseline == "arithmetic"  # eq. 8's leave-one-out mean
    # Untied embedding networks: p(a)'s h^p, q(a|x)'s h^q and h^m share no variable.
    address = model.address
    networks = [address.prior_embedding, address.query_embedding_network, address.memory_embedding]
    ids = [variable_ids(n) for n in networks]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert not hasattr(address, "query_residual")
    # q(z|m,x): 6 conv layers of 64 maps on x and m stacked as 2 channels, then one hidden layer, then the heads.
    convs = model.posterior_encoder.conv_layers
    assert [c.filters for c in convs] == [64] * 6 and [c.strides for c in convs] == [(1, 1), (2, 2)] * 3
    assert tuple(convs[0].kernel.shape) == (3, 3, 2, 64)
    assert model.posterior_mlp.hidden_units == (256,)
    kernels = [tuple(w.shape) for w in model.posterior_mlp.trainable_weights if len(w.shape) == 2]
    assert kernels == [(4 * 4 * 64, 256)]  # 26 -> 13 -> 7 -> 4: one hidden layer on the top map
    assert tuple(model.posterior.mean_head.kernel.shape) == (256, 64)
    # The round trip keeps every option.
    config = model.get_config()
    assert zoo.VMA.from_config(config).get_config() == config
    for key in ("query_network", "prior_network", "posterior_input", "posterior_filters", "posterior_hidden_units"):
        assert config[key] == preset["config"][key]


def test_posterior_reads_x_and_the_entry_stacked_as_channels():
    model = tiny()
    x, memory = images(3, 0), images(5, 1)
    addresses = tf.constant([4, 0, 2, 1, 1, 3], tf.int32)  # K = 2 reads for each of 3 queries, sample-major
    features = model.posterior_features(x, memory, addresses, entry_summary=None, num_samples=2)
    pair = tf.concat([tf.tile(x, [2, 1, 1, 1]), tf.gather(memory, addresses)], axis=-1)  # [6, 8, 8, 2]
    top = model.posterior_encoder(pair)[-1]
    expected = model.posterior_mlp(tf.reshape(top, [6, -1]))
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)
    # encode: q(z | x, m_a*) at the most probable address, from the same network.
    encoded = model.encode(x, memory=memory)
    chosen = tf.gather(memory, encoded["address"])
    top = model.posterior_encoder(tf.concat([x, chosen], axis=-1))[-1]
    mean = model.posterior.mean_head(model.posterior_mlp(tf.reshape(top, [3, -1])))
    np.testing.assert_allclose(encoded["mean"], mean, rtol=1e-5, atol=1e-6)
    # Both halves matter: another entry, or another query, gives other features.
    other_entries = model.posterior_features(x, memory, tf.constant([3, 1, 0], tf.int32), None)
    other_queries = model.posterior_features(images(3, 2), memory, addresses[:3], None)
    assert not np.allclose(features[:3], other_entries, atol=1e-4)
    assert not np.allclose(features[:3], other_queries, atol=1e-4)


def test_separate_query_and_prior_networks_score_as_stated():
    model = tiny()
    address = model.address
    x, memory = images(3, 0), images(5, 1)
    # h^q is its own network: e_q = h^q(x), not h^m(x).
    np.testing.assert_allclose(address.query_embedding(x), address.query_embedding_network(x), rtol=1e-6)
    assert not np.allclose(address.query_embedding(x), address.memory_embedding(x), atol=1e-3)
    # p(a) = softmax_a <h^p(m_a), e^p> / ||h^p(m_a)||, with a hand-set e^p.
    address.prior_query.assign([1.0, -2.0, 0.5, 3.0])
    e = address.prior_embedding(memory).numpy()
    scores = (e / np.linalg.norm(e, axis=1, keepdims=True)) @ np.array([1.0, -2.0, 0.5, 3.0])
    log_p = scores - np.log(np.sum(np.exp(scores)))
    out = address({"query": x, "memory": memory}, num_samples=2, seed=tf.constant([1, 2]))
    np.testing.assert_allclose(out["prior_logits"], log_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(address.prior_logits(address.prior_keys(memory)), log_p, rtol=1e-5, atol=1e-5)
    e_m = address.memory_embedding(memory).numpy()
    shared = (e_m / np.linalg.norm(e_m, axis=1, keepdims=True)) @ np.array([1.0, -2.0, 0.5, 3.0])
    assert not np.allclose(log_p, shared - np.log(np.sum(np.exp(shared))), atol=1e-3)
    # q(a|x) = softmax_a <h^q(x), h^m(m_a)> / ||h^m(m_a)||, untouched by h^p.
    q = address.query_embedding_network(x).numpy() @ (e_m / np.linalg.norm(e_m, axis=1, keepdims=True)).T
    np.testing.assert_allclose(out["logits"], q - np.log(np.sum(np.exp(q), axis=1, keepdims=True)), rtol=1e-5, atol=1e-5)
    # Once e^p is off 0, the loss reaches h^p (at initialisation it cannot: see the VMAPaper golden).
    with tf.GradientTape() as tape:
        outputs = model({"x": x, "memory": memory}, training=True)
        loss = model.compute_loss(x={"x": x, "memory": memory}, y_pred=outputs, training=True)
    grads = tape.gradient(loss, address.prior_embedding.trainable_weights)
    assert all(g is not None and np.any(g.numpy()) for g in grads)


@pytest.mark.parametrize("kwargs, message", [
    (dict(shared_embedding=True), "needs shared_embedding=False"),
    (dict(address_prior="flat"), 'needs prior="learned"'),
    (dict(query_network="tied"), "query_network must be one of"),
    (dict(prior_network="own"), "prior_network must be one of"),
    (dict(posterior_input="pixels"), "posterior_input must be one of"),
    (dict(posterior_strides=(1, 3)), "strides must hold one value in"),
    (dict(posterior_filters=(3, 0)), "filters must be a non-empty sequence"),
    (dict(posterior_hidden_units=()), "posterior_hidden_units must be a non-empty sequence"),
])
def test_bad_options_raise_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


@needs_archives
def test_cli_trains_it_on_26x26_omniglot_episodes():
    config = run_config.resolve_config("vma_omniglot_paper", "omniglot", epochs=1, data_path=str(OMNIGLOT_DIR),
                                      steps_per_epoch=2, episode_classes=2, episode_targets=2, episode_memory=2)
    assert config["data_options"] == {"image_size": 26} and config["learning_rate"] == 3e-4
    episode = next(iter(run_data.load_episodes(config, "train", None, seed=0)))
    assert episode["x"].shape == (4, 26, 26, 1) and episode["memory"].shape == (4, 26, 26, 1)
    assert set(np.unique(episode["x"].numpy())) <= {0.0, 1.0}
    # The 26x26 images are the 104x104 crop max-pooled 4x4, what zoo.data.omniglot.preprocess(image_size=26) gives.
    data = zoo.data.omniglot.read("train", image_size=26, path=str(OMNIGLOT_DIR))
    assert data["images"].shape[1:] == (26, 26, 1)
    with pytest.raises(UsageError, match="datasets that fit: omniglot"):
        run_config.check_options("vma_omniglot_paper", "binarized_mnist", 1)

    # Two updates of the preset on real episodes: every weight moves (h^p from the second, once e^p has),
    # the metrics are finite and within their ranges.
    model = run_config.build_model(config)
    model.compile(optimizer="adam")
    before = {w.path: w.numpy().copy() for w in model.trainable_weights}
    history = model.fit(run_data.load_episodes(config, "train", 2, seed=0), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["bound"][0] < 0
    assert 0 <= history["address_kl"][0] <= np.log(4) + 1e-5 and history["kl"][0] >= 0
    unmoved = [w.path for w in model.trainable_weights if np.array_equal(before[w.path], w.numpy())]
    assert not unmoved, unmoved
