"""The MEM-VAE paper's analyses (zoo.analysis) on real data: binarized MNIST for training and
imputation, the labelled MNIST test set (IDX files, dynamically binarized) for class statistics
and recognition features. Models are small and trained briefly; the assertions are the analyses'
invariants plus margins over trivial baselines."""

import numpy as np
import pytest

import zoo
from tests.conftest import MNIST_DIR, has_binarized_mnist

needs_data = pytest.mark.skipif(
    not (has_binarized_mnist() and (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists()),
    reason=f"needs binarized_mnist (TFDS) and the MNIST test IDX files in {MNIST_DIR}",
)
SMALL = dict(hidden_units=(128, 64), latent_dim=16, seed=0)


def _train(model):
    model.compile(jit_compile=False)  # for models this small, XLA's compile time outweighs its speed-up
    model.fit(zoo.data.load("binarized_mnist", split="train[:10000]", batch_size=100, seed=0), epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def mem_vae():
    return _train(zoo.MemVAE(num_slots=(20, 10), **SMALL))


@pytest.fixture(scope="module")
def vis_mem_vae():
    return _train(zoo.MemVAE(num_slots=(20, 10), attention="softmax", composition="sum", **SMALL))


@pytest.fixture(scope="module")
def labelled():
    """The first 2,000 labelled MNIST test images, binarized once (fixed seed)."""
    data = zoo.data.load("mnist", split="test", batch_size=500, path=str(MNIST_DIR), with_labels=True, shuffle=False)
    return [(np.asarray(x), np.asarray(y)) for x, y in data.take(4)]


@pytest.fixture(scope="module")
def binarized_test():
    data = zoo.data.load("binarized_mnist", split="test", batch_size=200, shuffle=False)
    return np.asarray(next(iter(data)))


@pytest.mark.parametrize("kind", ["left_half", "rectangle", "random"])
def test_masks(kind):
    observed = zoo.analysis.imputation_mask((2, 28, 28, 1), kind, size=12, drop_rate=0.6, seed=0)
    missing = 1 - observed
    expected = {"left_half": 28 * 14, "rectangle": 144}.get(kind)
    if expected is not None:
        assert missing[0].sum() == expected and np.array_equal(observed[0], observed[1])
    else:
        assert abs(missing.mean() - 0.6) < 0.05 and not np.array_equal(observed[0], observed[1])
    if kind == "left_half":
        assert missing[0, :, :14].all() and not missing[0, :, 14:].any()


def _check_imputation(model, x):
    observed = zoo.analysis.imputation_mask(x.shape, "left_half")
    # Baseline: every missing pixel predicted by its mean over this very batch (an oracle that
    # knows the test images' average but not the observed half of each image).
    oracle = np.sum((1 - observed) * (x - x.mean(axis=0)) ** 2) / np.sum(1 - observed)
    result = zoo.analysis.impute(model, x, observed, num_iterations=5, seed=0)
    np.testing.assert_array_equal(result["imputed"] * observed, x * observed)
    assert result["mse"].shape == (5,) and result["missing_pixels"] == len(x) * 28 * 14
    assert result["mse"][-1] < result["mse"][0] and result["mse"][-1] < oracle, (result["mse"], oracle)
    return result


@needs_data
def test_imputation(mem_vae, binarized_test):
    _check_imputation(mem_vae, binarized_test)
    with pytest.raises(ValueError, match="mask"):
        zoo.analysis.impute(mem_vae, binarized_test, np.ones((200, 28, 20, 1), np.float32))


@pytest.mark.large
@needs_data
def test_imputation_vae_and_memvae_through_one_function(mem_vae, binarized_test):
    vae = _train(zoo.VAE(**SMALL))
    errors = [_check_imputation(model, binarized_test)["mse"][-1] for model in (vae, mem_vae)]
    assert all(np.isfinite(errors))


@needs_data
def test_generation_without_memory(mem_vae):
    images = zoo.analysis.generation_without_memory(mem_vae, num_samples=6, seed=0)
    assert list(images) == ["memory", "without_layer_0", "without_layer_1", "no_memory"]
    for value in images.values():
        assert value.shape == (6, 28, 28, 1) and value.min() >= 0 and value.max() <= 1
    for name in ("without_layer_0", "without_layer_1", "no_memory"):
        assert np.abs(images[name] - images["memory"]).mean() > 1e-3, name
    with pytest.raises(ValueError, match="no memory"):
        zoo.analysis.generation_without_memory(zoo.MemVAE(num_slots=(0, 0), **SMALL))


@needs_data
def test_slot_preferences_and_slot_images(vis_mem_vae, labelled):
    stats = zoo.analysis.slot_preferences_per_class(vis_mem_vae, labelled, top_k=3)
    assert [s["layer"] for s in stats] == [0, 1]
    labels = np.concatenate([y for _, y in labelled])
    for s, slots in zip(stats, (20, 10)):
        assert s["mean_preferences"].shape == (10, slots)
        np.testing.assert_allclose(s["mean_preferences"].sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(s["counts"], np.bincount(labels, minlength=10))
        assert np.all(np.diff(s["top_preferences"], axis=1) <= 0)
        np.testing.assert_allclose(s["top_preferences"][:, 0], s["mean_preferences"].max(axis=1))
    # Trained on digits, the memory is used differently by different classes.
    assert np.ptp(stats[0]["mean_preferences"], axis=0).max() > 1e-3
    images = zoo.analysis.class_slot_images(vis_mem_vae, stats, layer=0)
    assert images.shape == (10, 3, 28, 28, 1)
    np.testing.assert_allclose(images[4, 1], np.asarray(vis_mem_vae.slot_images(0))[stats[0]["top_slots"][4, 1]])
    with pytest.raises(ValueError, match="labels"):
        zoo.analysis.slot_preferences_per_class(vis_mem_vae, [(labelled[0][0], labelled[0][1] + 10)])


@needs_data
def test_recognition_features_linear_classifier(mem_vae, labelled):
    features, labels = zoo.analysis.recognition_features(mem_vae, labelled)
    assert features.shape == (2000, 64) and labels.shape == (2000,)
    result = zoo.analysis.linear_classifier_accuracy(features[:1500], labels[:1500], features[1500:], labels[1500:])
    assert result["num_test"] == 500
    assert result["accuracy"] > 0.7, result  # chance is 0.1
    with pytest.raises(ValueError, match="same number of rows"):
        zoo.analysis.linear_classifier_accuracy(features, labels[:10], features, labels)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, -1, 2]), r"^train_labels must be integers >= 0 of shape \[N\], N >= 1, got dtype int64 and "
                              r"shape \(4,\), min -1$"),
    (np.array([[0], [1], [2], [1]]), r"got dtype int64 and shape \(4, 1\)$"),
    (np.array([0.0, 1.0, 2.0, 1.0]), r"got dtype float64 and shape \(4,\), min 0.0$"),
    (np.array(3), r"got dtype int64 and shape \(\)$"),  # a TypeError in len() before
    (np.array([], np.int64), r"got dtype int64 and shape \(0,\)$"),
])
def test_linear_classifier_refuses_labels_that_are_not_classes(labels, message):
    features = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        zoo.analysis.linear_classifier_accuracy(features, labels, features, np.array([0, 1, 2, 1]))


@pytest.mark.parametrize("max_examples", [0, -3, 2.5, True])
def test_dataset_log_likelihood_refuses_a_bad_max_examples(max_examples):
    # 0 and -3 were reported as "the dataset gave no examples", 2.5 failed in a slice, True meant 1.
    model = zoo.VAE(input_shape=(4, 4, 1), hidden_units=(4,), latent_dim=2, seed=0)
    x = np.zeros((3, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=rf"^max_examples must be an int >= 1, got {max_examples}$"):
        zoo.analysis.dataset_log_likelihood(model, [x], num_samples=2, max_examples=max_examples)


def test_analyses_name_the_models_they_need():
    # They failed inside with KeyError 'kl_levels', KeyError 'log_variance' or AttributeError 'num_slots'.
    conv = zoo.ConvVAE(input_shape=(8, 8, 1), filters=(4,), strides=(2,), latent_dim=2, seed=0)
    nvae = zoo.NVAE(input_shape=(8, 8, 1), scales=[{"groups": 1, "latent_channels": 2}], channels=4, seed=0)
    vae = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(4,), latent_dim=2, seed=0)
    x = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match=r"^latent_activity needs a latent hierarchy \(VAE, MemVAE, HierarchicalVAE, "
                                         r"LadderVAE or NVAE\), whose outputs hold the KL per group and per unit; got "
                                         r"ConvVAE$"):
        zoo.analysis.latent_activity(conv, [x])
    assert zoo.analysis.latent_activity(nvae, [x])["examples"] == 2
    mask = zoo.analysis.imputation_mask(x.shape, "left_half")
    with pytest.raises(ValueError, match=r"^impute needs a model whose encode gives a Gaussian's mean and log_variance "
                                         r"and whose decode takes that z \(.*\); got NVAE$"):
        zoo.analysis.impute(nvae, x, mask)
    assert zoo.analysis.impute(conv, x, mask, num_iterations=2)["mse"].shape == (2,)  # as before the check
    for analysis in (lambda: zoo.analysis.generation_without_memory(vae),
                     lambda: zoo.analysis.slot_preferences_per_class(vae, [(x, np.zeros(2, np.int64))])):
        with pytest.raises(ValueError, match=r"needs a MemVAE; got VAE$"):
            analysis()
    memvae = zoo.MemVAE(input_shape=(8, 8, 1), hidden_units=(4,), latent_dim=2, num_slots=(3,),
                        local_reconstruction_weights=(0.1,), seed=0)
    with pytest.raises(ValueError, match=r"^num_samples must be an int >= 1, got 0$"):
        zoo.analysis.generation_without_memory(memvae, num_samples=0)
