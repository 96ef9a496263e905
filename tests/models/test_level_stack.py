"""The level stack: exact answers on a two-level linear-Gaussian model, warm-up, monitoring, sampling, presets."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import zoo
from tests.conftest import needs_mnist
from tests.goldens import binary_images
from zoo import objectives

# Two levels, linear and Gaussian: z1 ~ N(0, 1), z0 | z1 ~ N(a z1 + b, diag v0), x | z0 ~ N(A z0 + C, S2 I).
# Only z0[0] depends on z1 and A has orthogonal columns, so every exact posterior is diagonal and the
# zoo's Gaussian layers can represent it exactly: with q the exact posterior, log w = log p(x) for every sample.
A = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.0], [0.0, -1.0]])
C = np.array([0.3, -0.2, 0.1, 0.5])
S2 = 0.5
a = np.array([1.5, 0.0])
b = np.array([0.2, -0.4])
V0 = np.array([0.6, 1.3])


def exact_log_px(x):
    cov_z0 = np.outer(a, a) + np.diag(V0)
    return stats.multivariate_normal(mean=A @ b + C, cov=A @ cov_z0 @ A.T + S2 * np.eye(4)).logpdf(x)


def linear_model(inference):
    """A two-level stack whose weights are the model above and whose q is its exact posterior."""
    model = zoo.HierarchicalVAE(
        input_shape=(4,),
        levels=[{"hidden_units": (4,), "latent_dim": 2}, {"hidden_units": (2,), "latent_dim": 1}],
        inference=inference, activation="linear", batch_norm=False, likelihood="gaussian", seed=0,
    )
    # Generative path.
    model.decoders[1].dense_layers[0].set_weights([np.ones((1, 2)), np.zeros(2)])  # h = [z1, z1]
    model.priors[0].mean_head.set_weights([np.diag(a), b])
    model.priors[0].log_variance_head.set_weights([np.zeros((2, 2)), np.log(V0)])
    model.decoders[0].dense_layers[0].set_weights([A.T, np.zeros(4)])
    model.observation.heads["mean"].set_weights([np.eye(4), C])
    model.observation.heads["log_variance"].set_weights([np.zeros((4, 4)), np.full(4, math.log(S2))])
    model.encoders[0].dense_layers[0].set_weights([np.eye(4), np.zeros(4)])
    if inference == "bottom_up":
        # q(z0 | x) = p(z0 | x), q(z1 | z0) = p(z1 | z0).
        prior_precision = 1.0 / (a**2 + V0)  # the marginal of z0 is diagonal
        covariance = np.diag(1.0 / (prior_precision + np.diag(A.T @ A) / S2))
        kernel = covariance @ A.T / S2  # mean = kernel (x - C) + covariance P0 b
        model.posteriors[0].mean_head.set_weights([kernel.T, covariance @ (prior_precision * b) - kernel @ C])
        model.posteriors[0].log_variance_head.set_weights([np.zeros((4, 2)), np.log(np.diag(covariance))])
        model.encoders[1].dense_layers[0].set_weights([np.eye(2), np.zeros(2)])
        precision = 1.0 + a[0] ** 2 / V0[0]
        model.posteriors[1].mean_head.set_weights(
            [np.array([[a[0] / V0[0] / precision], [0.0]]), np.array([-a[0] * b[0] / V0[0] / precision])]
        )
        model.posteriors[1].log_variance_head.set_weights([np.zeros((2, 1)), np.array([-math.log(precision)])])
    else:
        # q^(z0) is the likelihood p(x | z0) as a Gaussian in z0; merged with p(z0 | z1) it is p(z0 | z1, x).
        gram = A.T @ A
        pseudo_inverse = np.linalg.inv(gram) @ A.T
        model.posteriors[0].mean_head.set_weights([pseudo_inverse.T, -pseudo_inverse @ C])
        model.posteriors[0].log_variance_head.set_weights([np.zeros((4, 2)), np.log(S2 / np.diag(gram))])
        # q(z1 | x) = p(z1 | x): x | z1 ~ N(A (a z1 + b) + C, Q).
        q_cov = A @ np.diag(V0) @ A.T + S2 * np.eye(4)
        loading = A @ a
        precision = 1.0 + loading @ np.linalg.solve(q_cov, loading)
        gain = np.linalg.solve(q_cov, loading) / precision  # mean = gain . (x - A b - C)
        model.encoders[1].dense_layers[0].set_weights([np.stack([gain, np.zeros(4)], axis=1), np.zeros(2)])
        model.posteriors[1].mean_head.set_weights([np.array([[1.0], [0.0]]), np.array([-gain @ (A @ b + C)])])
        model.posteriors[1].log_variance_head.set_weights([np.zeros((2, 1)), np.array([-math.log(precision)])])
    return model


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(100, 1))
    z0 = z1 * a + b + np.sqrt(V0) * rng.normal(size=(100, 2))
    return (z0 @ A.T + C + math.sqrt(S2) * rng.normal(size=(100, 4))).astype(np.float32)


@pytest.mark.parametrize("inference", ["bottom_up", "top_down"])
def test_exact_posterior_gives_exact_log_likelihood(inference, linear_data):
    model = linear_model(inference)
    exact = exact_log_px(linear_data)
    np.testing.assert_allclose(model.log_likelihood(linear_data, num_samples=1, seed=3), exact, atol=2e-3)
    # The training ELBO (closed-form KLs where they exist, Monte Carlo elsewhere) is log p(x) in expectation.
    repeated = np.repeat(linear_data[:4], 5000, axis=0)
    bound = model.training_bound(model(repeated, training=False)).numpy().reshape(4, 5000)
    standard_error = bound.std(axis=1) / math.sqrt(5000)
    assert np.all(np.abs(bound.mean(axis=1) - exact[:4]) < 4 * standard_error + 1e-3), (bound.mean(1), exact[:4])


@pytest.mark.parametrize("inference", ["bottom_up", "top_down"])
def test_a_shifted_posterior_loosens_the_bound_and_importance_sampling_recovers(inference, linear_data):
    model = linear_model(inference)
    kernel, bias = model.posteriors[0].mean_head.get_weights()
    model.posteriors[0].mean_head.set_weights([kernel, bias + 0.7])
    exact = exact_log_px(linear_data).mean()
    elbo = model.importance_sampling(linear_data, num_samples=200, seed=1)["elbo"].numpy().mean()
    estimate = model.log_likelihood(linear_data, num_samples=2000, seed=2).numpy().mean()
    assert exact - elbo > 0.3, (exact, elbo)
    assert abs(estimate - exact) < 0.03, (estimate, exact)


def test_precision_weighting_by_hand():
    mean, log_variance = objectives.precision_weighted(
        tf.constant([1.0]), tf.constant([0.0]), tf.constant([3.0]), tf.constant([math.log(3.0)])
    )
    # precisions 1 and 1/3: variance 3/4, mean (1 + 3/3) * 3/4
    np.testing.assert_allclose(mean, [1.5], rtol=1e-6)
    np.testing.assert_allclose(np.exp(log_variance), [0.75], rtol=1e-6)


def test_gaussian_kl_against_tfp():
    from zoo.distributions import tfd

    rng = np.random.default_rng(0)
    m, lv, pm, plv = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(4))
    expected = tfd.kl_divergence(
        tfd.MultivariateNormalDiag(m, np.exp(lv / 2)), tfd.MultivariateNormalDiag(pm, np.exp(plv / 2))
    )
    np.testing.assert_allclose(objectives.gaussian_kl(m, lv, pm, plv), expected, rtol=1e-5)
    np.testing.assert_allclose(tf.reduce_sum(objectives.gaussian_kl(m, lv, pm, plv, axis=None), -1), expected, rtol=1e-5)


def test_kl_warmup_weighs_the_latent_terms():
    model = zoo.HierarchicalVAE(
        input_shape=(8, 8, 1),
        levels=[{"hidden_units": (8,), "latent_dim": 3}, {"hidden_units": (4,), "latent_dim": 2}],
        kl_warmup_steps=10, seed=0,
    )
    model.compile()
    x = binary_images()
    outputs = model(x, training=False)
    log_px_z, kl = outputs["log_px_z"][:, 0].numpy(), outputs["kl"].numpy()
    np.testing.assert_allclose(model.kl_weight(), 0.1)  # first update
    np.testing.assert_allclose(model.training_bound(outputs, 0.1), log_px_z - 0.1 * kl, rtol=1e-6)
    np.testing.assert_allclose(model.training_bound(outputs), log_px_z - kl, rtol=1e-6)
    model.optimizer.iterations.assign(4)
    np.testing.assert_allclose(model.kl_weight(), 0.5)
    model.optimizer.iterations.assign(50)
    np.testing.assert_allclose(model.kl_weight(), 1.0)
    loss = model.compute_loss(x=x, y_pred=outputs, training=True)
    np.testing.assert_allclose(loss, -np.mean(log_px_z - kl), rtol=1e-5)
    # K > 1: the weight multiplies log p(z) - log q(z) inside the IWAE bound.
    iwae = zoo.HierarchicalVAE(input_shape=(8, 8, 1), num_importance_samples=4, seed=0,
                               levels=[{"hidden_units": (8,), "latent_dim": 3}])
    out = iwae(x, training=False)
    log_w = out["log_px_z"] + 0.25 * (out["log_weights"] - out["log_px_z"])
    expected = tf.reduce_logsumexp(log_w, axis=1) - math.log(4)
    np.testing.assert_allclose(iwae.training_bound(out, 0.25), expected, rtol=1e-6)


def test_kl_per_level_and_active_units_are_metrics():
    model = zoo.HierarchicalVAE(
        input_shape=(8, 8, 1),
        levels=[{"hidden_units": (8,), "latent_dim": 3}, {"hidden_units": (4,), "latent_dim": 2}],
        seed=0,
    )
    outputs = {
        "log_weights": tf.zeros([2, 1]), "log_px_z": tf.zeros([2, 1]),
        "kl": tf.constant([1.4, 1.8]), "kl_levels": tf.constant([[0.4, 1.0], [0.6, 1.2]]),
        # per unit, averaged over the batch: 0.05, 0.15, 0.3 | 0.08, 1.1 -> 3 active (> 0.1 nats)
        "kl_units": tf.constant([[0.0, 0.1, 0.3, 0.06, 1.04], [0.1, 0.2, 0.3, 0.1, 1.16]]),
        "reconstruction": tf.zeros([2, 8, 8, 1]),
    }
    model.compute_loss(y_pred=outputs, training=False)
    results = {m.name: float(m.result()) for m in model.metrics if m.name != "loss"}
    assert results["active_units"] == 3.0
    np.testing.assert_allclose([results["kl_0"], results["kl_1"]], [0.5, 1.1], rtol=1e-6)
    history = model.compile() or model.fit(binary_images((16, 8, 8, 1)), epochs=1, batch_size=8, verbose=0)
    assert {"kl_0", "kl_1", "active_units", "bound", "kl"} <= set(history.history)
    # kl is the sum of the levels' KLs
    out = model(binary_images(), training=False)
    np.testing.assert_allclose(out["kl"], tf.reduce_sum(out["kl_levels"], -1), rtol=1e-6)
    np.testing.assert_allclose(out["kl_levels"][:, 0], tf.reduce_sum(out["kl_units"][:, :3], -1), rtol=1e-5)


@pytest.mark.parametrize("cls", [zoo.HierarchicalVAE, zoo.LadderVAE])
def test_temperature_sampling(cls):
    model = cls(
        input_shape=(8, 8, 1),
        levels=[{"hidden_units": (8,), "latent_dim": 3}, {"hidden_units": (4,), "latent_dim": 2}],
        seed=0,
    )
    cold = model.sample(4, seed=1, temperature=0.0).numpy()
    np.testing.assert_allclose(cold, model.sample(4, seed=2, temperature=0.0))  # the prior means: no noise
    np.testing.assert_allclose(cold[0], model.decode(np.zeros((1, 2), np.float32))["mean"][0], rtol=1e-6)
    warm = model.sample(4, seed=1).numpy()
    np.testing.assert_allclose(warm, model.sample(4, seed=1))
    spread = lambda t: np.std(model.sample(200, seed=3, temperature=t).numpy(), axis=0).mean()  # noqa: E731
    assert spread(0.0) < 1e-6 < spread(0.5) < spread(1.0)
    for bad in (-1.0, float("nan"), "hot", True):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            model.sample(2, seed=0, temperature=bad)


def test_vae_iwae_and_memvae_are_level_stacks():
    for model in (zoo.VAE(), zoo.VAE(num_importance_samples=5), zoo.MemVAE()):
        assert isinstance(model, zoo.HierarchicalVAE) and model.num_levels == 1
    memvae = zoo.MemVAE()
    assert [block is None for block in memvae.decoder.memory_blocks] == [False, False]
    assert memvae.levels[0]["num_slots"] == (70, 30)


@pytest.mark.parametrize(
    "preset, trainable",
    [("iwae_mnist_2layer", 521_084), ("ladder_vae_mnist", 1_862_904)],
)
def test_hierarchical_preset_parameter_counts(preset, trainable):
    # iwae_mnist_2layer by hand: q 784-200-200-100 (197,200 + 40,200), 100-100-50 (20,200 + 10,100);
    # p 50-100-100-100 (15,200 + 20,200), 100-200-200-784 (60,400 + 157,584)
    model = zoo.models.LatentVariableModel.from_preset(preset)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(levels=[]), "levels must be a non-empty sequence of dicts"),
        (dict(levels="200-100"), "levels must be a non-empty sequence of dicts"),
        (dict(levels=[{"hidden_units": (4,)}]), r"lacks \['latent_dim'\]"),
        (dict(levels=[{"hidden_units": (4,), "latent_dim": 2, "units": 3}]), r"unknown keys \['units'\]"),
        (dict(levels=[{"hidden_units": (4,), "latent_dim": 2.5}]), r"levels\[0\]\['latent_dim'\] must be an int >= 1"),
        (dict(levels=[{"hidden_units": (4, 4), "latent_dim": 2, "num_slots": (3,)}]), r"num_slots.\] must be 2"),
        (dict(inference="sideways"), "inference must be one of"),
        (dict(kl_warmup_steps=-1), "kl_warmup_steps must be an int >= 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.HierarchicalVAE(input_shape=(8, 8, 1), **kwargs)


def test_latent_activity_finds_a_collapsed_group_and_plots_it(tmp_path):
    import matplotlib.figure
    import matplotlib.image

    model = zoo.HierarchicalVAE(
        input_shape=(8, 8, 1),
        levels=[{"hidden_units": (8,), "latent_dim": 3}, {"hidden_units": (4,), "latent_dim": 2}],
        seed=0,
    )
    # q(z1 | z0) = N(0, I) = p(z1): the top group carries nothing. q(z0 | x) has variance e^-2:
    # at least 0.5 (e^-2 - 1 + 2) = 0.57 nats per unit.
    for head in (model.posteriors[1].mean_head, model.posteriors[1].log_variance_head):
        head.set_weights([np.zeros((4, 2)), np.zeros(2)])
    kernel, _ = model.posteriors[0].log_variance_head.get_weights()
    model.posteriors[0].log_variance_head.set_weights([np.zeros_like(kernel), np.full(3, -2.0)])
    batches = [binary_images((4, 8, 8, 1), seed=i) for i in range(3)]
    activity = zoo.analysis.latent_activity(model, batches)
    assert activity["examples"] == 12
    np.testing.assert_allclose(activity["kl_per_group"][1], 0.0, atol=1e-6)
    np.testing.assert_allclose(activity["kl_per_unit"][3:], [0.0, 0.0], atol=1e-6)
    assert min(activity["kl_per_unit"][:3]) > 0.5 * (math.exp(-2) - 1 + 2) - 1e-4
    np.testing.assert_allclose(sum(activity["kl_per_unit"][:3]), activity["kl_per_group"][0], rtol=1e-5)
    assert (activity["active_units"], activity["active_groups"]) == (3, 1)
    assert activity["group_order"] == "from x upward"
    backend = matplotlib.get_backend()
    axes = zoo.analysis.plot_kl_per_group(activity["kl_per_group"], str(tmp_path / "kl.png"))
    image = matplotlib.image.imread(tmp_path / "kl.png")
    assert image.ndim == 3 and image.shape[0] > 100
    assert [bar.get_height() for bar in axes.patches] == pytest.approx(activity["kl_per_group"])
    assert matplotlib.get_backend() == backend  # a notebook's inline backend stays
    # Into given axes (a notebook's figure), without writing a file.
    figure = matplotlib.figure.Figure()
    given = figure.add_subplot()
    assert zoo.analysis.plot_kl_per_group([1.0, 2.0, 3.0], axes=given) is given
    assert len(given.patches) == 3 and given.get_xlabel() == "latent group (from x upward)"
    with pytest.raises(ValueError, match="kl_per_group must be a non-empty list of finite numbers"):
        zoo.analysis.plot_kl_per_group([float("nan")], str(tmp_path / "bad.png"))


@pytest.mark.parametrize("cls", [zoo.HierarchicalVAE, zoo.LadderVAE])
def test_bad_inputs_raise_value_errors(cls):
    model = cls(
        input_shape=(8, 8, 1),
        levels=[{"hidden_units": (8,), "latent_dim": 3}, {"hidden_units": (4,), "latent_dim": 2}],
        seed=0,
    )
    x = binary_images()
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 8, 8, 1\], got shape \[4, 64\]"):
        model.log_likelihood(x.reshape(4, 64), num_samples=3)
    with pytest.raises(ValueError, match="Bernoulli likelihood expects x binary"):
        model.reconstruct(x * 0.5)
    with pytest.raises(ValueError, match=r"z must be float latents of shape \[N, 2\]"):
        model.decode(np.zeros((3, 3), np.float32))  # the top level's z is 2-d
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        model.sample(0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.encode(np.where(x > 0, np.nan, x))


@pytest.mark.large  # a convergence run: 300 updates of the paper's five-level model on real data
@needs_mnist
def test_ladder_preset_trains_stably_on_binarized_mnist():
    # The paper's five-level model with its defaults (batch norm, warm-up), 2 x 150 updates of batch 100.
    model = zoo.LadderVAE.from_preset("ladder_vae_mnist", seed=0)
    model.compile()
    train = zoo.data.load("binarized_mnist", "train", batch_size=100, seed=0)
    history = model.fit(train, epochs=2, steps_per_epoch=150, verbose=0).history
    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)
    assert history["bound"][1] > history["bound"][0] + 10.0, history["bound"]
    assert history["active_units"][1] >= 1, history["active_units"]
