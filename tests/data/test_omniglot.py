import zipfile

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import OMNIGLOT_DIR
from zoo.data import episodes, omniglot

needs_archives = pytest.mark.skipif(
    not (OMNIGLOT_DIR / "images_background_small1.zip").exists(), reason="the shared Omniglot archives are not here"
)


def drawing(points, channels=None):
    """A white 105x105 uint8 page with black pixels at `points`."""
    page = np.full((105, 105), 255, np.uint8)
    for row, col in points:
        page[row, col] = 0
    return page if channels is None else np.repeat(page[..., None], channels, axis=-1)


def test_preprocess_max_pools_ink_to_28_and_26():
    page = drawing([(50, 50), (104, 0)])
    x28 = omniglot.preprocess(page).numpy()
    x26 = omniglot.preprocess(page, image_size=26).numpy()
    assert x28.shape == (28, 28, 1) and x26.shape == (26, 26, 1)
    # 28: the page is padded by 3 pixels before 4x4 pooling; 26: the last row and column are cropped.
    assert np.argwhere(x28[..., 0]).tolist() == [[13, 13], [26, 0]]
    assert np.argwhere(x26[..., 0]).tolist() == [[12, 12]]
    # RGB, RGBA, float and light-ink inputs go through the same path.
    np.testing.assert_array_equal(omniglot.preprocess(drawing([(50, 50), (104, 0)], channels=3)), x28)
    np.testing.assert_array_equal(omniglot.preprocess(page[None] / 255.0)[0], x28)
    np.testing.assert_array_equal(omniglot.preprocess(255 - page, ink="light"), x28)
    batch = omniglot.preprocess(np.stack([page, drawing([])]))
    assert batch.shape == (2, 28, 28, 1) and float(tf.reduce_sum(batch[1])) == 0.0


def test_preprocess_png_path_and_bytes(tmp_path):
    page = drawing([(10, 20), (11, 20)], channels=1)
    png = tf.io.encode_png(page).numpy()
    path = tmp_path / "character.png"
    path.write_bytes(png)
    expected = omniglot.preprocess(page)
    np.testing.assert_array_equal(omniglot.preprocess(str(path)), expected)
    np.testing.assert_array_equal(omniglot.preprocess([png, png]), np.stack([expected, expected]))
    np.testing.assert_array_equal(zoo.data.preprocess_omniglot(path), expected)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((28, 28), np.uint8), {}, "expects 105x105 images"),
        (np.full((105, 105), 2.0), {}, r"values in \[0, 1\]"),
        (np.zeros((105, 105), np.int32), {}, "dtype int32"),
        (np.zeros((105, 105), np.uint8), {"image_size": 32}, "image_size must be one of"),
        (np.zeros((105, 105), np.uint8), {"ink": "black"}, "ink must be"),
        (b"not a png", {}, "could not decode"),
    ],
)
def test_preprocess_rejects_bad_input(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        omniglot.preprocess(images, **kwargs)


@pytest.fixture(scope="module")
def splits():
    return {split: omniglot.read(split, path=str(OMNIGLOT_DIR)) for split in ("train", "test", "all")}


@needs_archives
def test_small_archives_split_by_alphabet(splits):
    train, test, everything = splits["train"], splits["test"], splits["all"]
    # Greek and Latin are in both small sets: read once, 8 alphabets and 242 characters x 20 drawers.
    assert len(everything["alphabet_names"]) == 8
    assert len(np.unique(everything["labels"])) == 242 and len(everything["labels"]) == 242 * 20
    assert train["test_alphabets"] == ["Japanese_(katakana)", "Tagalog"]
    assert len(np.unique(test["labels"])) == 47 + 17 and len(np.unique(train["labels"])) == 242 - 64
    assert not set(train["alphabets"]) & set(test["alphabets"])
    assert not set(train["labels"]) & set(test["labels"])
    assert train["images"].shape == (178 * 20, 28, 28, 1) and train["images"].dtype == np.float32
    assert set(np.unique(train["images"])) == {0.0, 1.0}
    # A cached image is exactly what the public preprocessing makes of its PNG (global id 0108 = label 107).
    with zipfile.ZipFile(OMNIGLOT_DIR / "images_background_small1.zip") as zf:
        png = zf.read("images_background_small1/Balinese/character01/0108_01.png")
    first = np.flatnonzero(train["labels"] == 107)[0]
    np.testing.assert_array_equal(train["images"][first], omniglot.preprocess(png))


@needs_archives
def test_explicit_test_alphabets_and_loader():
    test = omniglot.read("test", path=str(OMNIGLOT_DIR), test_alphabets=["Greek"], image_size=26)
    assert test["images"].shape == (24 * 20, 26, 26, 1)
    with pytest.raises(ValueError, match="not Omniglot alphabets"):
        omniglot.read("test", path=str(OMNIGLOT_DIR), test_alphabets=["Klingon"])
    x, labels = next(iter(zoo.data.load("omniglot", "test", batch_size=50, with_labels=True, path=str(OMNIGLOT_DIR))))
    assert x.shape == (50, 28, 28, 1) and labels.dtype == tf.int64


def test_missing_data_error_names_dataset_directory_and_fix(tmp_path):
    # FileNotFoundError, as for every dataset that is not there (BUILD.md); it was a ValueError.
    with pytest.raises(FileNotFoundError, match=r"dataset 'omniglot'.*" + str(tmp_path) + r".*Fix: pass path="):
        omniglot.read("train", path=str(tmp_path))
    with pytest.raises(ValueError, match="split must be one of"):
        omniglot.read("validation", path=str(tmp_path))


def test_reads_tfds_omniglot_when_prepared(tmp_path):
    import tensorflow_datasets as tfds

    (tmp_path / "omniglot").mkdir()
    with tfds.testing.mock_data(num_examples=12):
        data = omniglot.read("all", image_size=26, data_dir=str(tmp_path))
    # Mock TFDS gives 12 examples per split; the "test" split supplies the held-out alphabets.
    assert data["images"].shape == (24, 26, 26, 1)
    assert set(np.unique(data["images"])) <= {0.0, 1.0}


def test_download_prepares_tfds_omniglot(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # Nothing prepared in the data directory: download=True asks TFDS (here mocked) to prepare it, as in Colab.
    with tfds.testing.mock_data(num_examples=5):
        data = zoo.data.load("omniglot", split="all", batch_size=10, data_dir=str(tmp_path / "new"), download=True)
        assert next(iter(data)).shape == (10, 28, 28, 1)
    calls = []

    def offline(*args, **kwargs):
        calls.append(kwargs["download"])
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(FileNotFoundError, match=r"'omniglot' could not be downloaded.*ConnectionError: no route"):
        omniglot.read("all", data_dir=str(tmp_path / "other"), download=True)
    assert calls == [True]


def labels_by_image(data):
    return {image.tobytes(): label for image, label in zip(data["images"], data["labels"])}


@needs_archives
def test_training_episodes_hold_distinct_characters_and_disjoint_memory(splits):
    lookup = labels_by_image(splits["train"])
    ds = omniglot.episodes("train", num_classes=8, num_targets=4, num_memory=3, num_episodes=5, seed=1,
                           with_labels=True, path=str(OMNIGLOT_DIR))
    spec = ds.element_spec
    assert spec["x"].shape == (32, 28, 28, 1) and spec["memory"].shape == (24, 28, 28, 1)
    first_pass = list(ds.as_numpy_iterator())
    for episode in first_pass:
        x_chars = [lookup[image.tobytes()] for image in episode["x"]]
        memory_chars = [lookup[image.tobytes()] for image in episode["memory"]]
        # Each episode class is one training character, and different classes are different characters.
        for c in range(8):
            chars = {x_chars[i] for i in np.flatnonzero(episode["labels"] == c)}
            chars |= {memory_chars[i] for i in np.flatnonzero(episode["memory_labels"] == c)}
            assert len(chars) == 1
        assert len(set(x_chars)) == 8
        # Targets are other drawings than the memory's.
        memory_images = {image.tobytes() for image in episode["memory"]}
        assert not memory_images & {image.tobytes() for image in episode["x"]}
    # A finite stream repeats its episodes on every pass (evaluation).
    for a, b in zip(first_pass, ds.as_numpy_iterator()):
        np.testing.assert_array_equal(a["x"], b["x"])
    fit_ds = omniglot.episodes("train", path=str(OMNIGLOT_DIR))
    assert set(fit_ds.element_spec) == {"x", "memory"}


@needs_archives
def test_20_way_5_shot_episodes_come_from_held_out_characters(splits):
    lookup = labels_by_image(splits["test"])
    ds = omniglot.few_shot_episodes("test", ways=20, shots=5, queries_per_class=1, num_episodes=3, path=str(OMNIGLOT_DIR))
    for episode in ds.as_numpy_iterator():
        assert episode["memory"].shape == (100, 28, 28, 1) and episode["queries"].shape == (20, 28, 28, 1)
        assert all(image.tobytes() in lookup for image in episode["queries"])
        assert np.array_equal(np.bincount(episode["memory_labels"]), np.full(20, 5))
        # Each label names one held-out character: its 5 support drawings and its query, which is not among them.
        for c in range(20):
            support = {lookup[image.tobytes()] for image in episode["memory"][episode["memory_labels"] == c]}
            query = {lookup[image.tobytes()] for image in episode["queries"][episode["query_labels"] == c]}
            assert len(support) == 1 and query == support, (c, support, query)
        assert not {image.tobytes() for image in episode["memory"]} & {image.tobytes() for image in episode["queries"]}
    with pytest.raises(ValueError, match="need 8 classes with >= 21 examples"):
        omniglot.episodes("test", num_memory=17, path=str(OMNIGLOT_DIR))


def test_group_uniform_class_sampling():
    # Group 0 holds one class, group 1 nine: by group, class 0 is drawn half of the time; by class, a tenth.
    labels = np.repeat(np.arange(10), 2)
    images = labels[:, None].astype(np.float32)
    groups = np.where(labels == 0, 0, 1)
    rates = []
    for g in (groups, None):
        ds = episodes.class_episodes(images, labels, groups=g, num_classes=1, num_targets=1, num_memory=1,
                                     num_episodes=2000, seed=0)
        rates.append(np.mean([float(e["x"][0, 0]) == 0.0 for e in ds.batch(2000).unbatch().as_numpy_iterator()]))
    assert abs(rates[0] - 0.5) < 0.05 and abs(rates[1] - 0.1) < 0.03


def test_recall_episodes_store_the_targets():
    images = np.arange(300, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
    ds = episodes.recall_episodes(images, memory_size=256, num_targets=32, num_episodes=2, seed=0, with_labels=True)
    for episode in ds.as_numpy_iterator():
        assert episode["memory"].shape == (256, 2, 2, 1) and episode["x"].shape == (32, 2, 2, 1)
        assert len(np.unique(episode["memory"][:, 0, 0, 0])) == 256
        np.testing.assert_array_equal(episode["x"], episode["memory"][episode["addresses"]])
    with pytest.raises(ValueError, match="num_targets <= memory_size"):
        episodes.recall_episodes(images, memory_size=400)


def test_episodes_depend_on_their_seed_only():
    """A process seed (which `keras.utils.set_random_seed` sets) leaves the episodes as they were; the endless
    stream starts with the finite one's episodes; another seed draws others."""
    images = np.arange(300, dtype=np.float32)[:, None, None, None]
    labels = np.arange(300) // 10

    def draw(num_episodes, seed=3, process_seed=None):
        tf.random.set_seed(process_seed)
        try:
            streams = (episodes.recall_episodes(images, memory_size=8, num_episodes=num_episodes, seed=seed),
                       episodes.class_episodes(images, labels, num_classes=4, num_targets=2, num_memory=2,
                                               num_episodes=num_episodes, seed=seed))
            return [[e["x"][:, 0, 0, 0].tolist() for e in stream.take(3).as_numpy_iterator()] for stream in streams]
        finally:
            tf.random.set_seed(None)

    reference = draw(3)
    assert draw(3, process_seed=1) == reference and draw(3, process_seed=7) == reference
    assert draw(None, process_seed=2) == reference
    assert draw(3, seed=4) != reference
