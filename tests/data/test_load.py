import gzip
import os
import re
import time

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

import zoo
from tests.conftest import FREY_FACES_FILE, MNIST_DIR, has_binarized_mnist, missing_data


@pytest.mark.skipif(not os.environ.get("ZOO_REQUIRE_DATA"), reason="the data is required where ZOO_REQUIRE_DATA is set")
def test_the_real_data_is_here_where_it_is_required():
    # Without it, the tests that need it skip or run on synthetic stand-ins, and the run stays green.
    assert not missing_data(), f"missing: {missing_data()}"


@pytest.fixture(scope="module")
def mnist_idx_dir(tmp_path_factory):
    """The shared MNIST test archives, or small IDX files the test writes."""
    if (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        return str(MNIST_DIR)
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes(16) + rng.integers(0, 256, (50, 28, 28), dtype=np.uint8).tobytes())
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes(8) + (np.arange(50) % 10).astype(np.uint8).tobytes())
    return str(root)


@pytest.fixture(scope="module")
def frey_path(tmp_path_factory):
    if FREY_FACES_FILE.exists():
        return str(FREY_FACES_FILE)
    path = tmp_path_factory.mktemp("frey") / "frey_rawface.mat"
    ff = np.random.default_rng(0).integers(0, 256, (560, 1965), dtype=np.uint8)
    scipy.io.savemat(path, {"ff": ff})
    return str(path)


@pytest.mark.skipif(not has_binarized_mnist(), reason="binarized_mnist is not prepared in TFDS_DATA_DIR")
def test_binarized_mnist_batches_are_binary_float_images():
    ds = zoo.data.load("binarized_mnist", split="test", batch_size=100)
    assert ds.element_spec.shape.as_list() == [None, 28, 28, 1] and ds.element_spec.dtype == tf.float32
    sizes = [int(b.shape[0]) for b in ds]
    assert sum(sizes) == 10_000 and set(sizes) == {100}
    x = next(iter(ds)).numpy()
    assert set(np.unique(x)) == {0.0, 1.0}
    # The test split is not shuffled: two passes agree; the train split reshuffles every epoch.
    np.testing.assert_array_equal(x, next(iter(ds)).numpy())
    train = zoo.data.load("binarized_mnist", split="train[:1000]", batch_size=100, seed=1)
    first, second = (next(iter(train)).numpy() for _ in range(2))
    assert not np.array_equal(first, second)
    # An empty slice of a prepared dataset is a split problem (it was reported as data not prepared).
    with pytest.raises(ValueError, match=r"^dataset 'binarized_mnist' has no split 'test\[:0\]': "):
        zoo.data.load("binarized_mnist", split="test[:0]")
    with pytest.raises(ValueError, match="has no split 'tset'"):
        zoo.data.load("binarized_mnist", split="tset")


def test_mnist_dynamic_binarization_resamples_every_epoch_reproducibly(mnist_idx_dir):
    ds = zoo.data.load("mnist", split="test", batch_size=50, path=mnist_idx_dir, shuffle=False, seed=3)
    epoch1, epoch2 = (next(iter(ds)).numpy() for _ in range(2))
    assert set(np.unique(epoch1)) <= {0.0, 1.0}
    assert not np.array_equal(epoch1, epoch2)
    again = zoo.data.load("mnist", split="test", batch_size=50, path=mnist_idx_dir, shuffle=False, seed=3)
    np.testing.assert_array_equal(epoch1, next(iter(again)).numpy())
    # The binarization follows the grey levels: E[x] equals the intensity.
    images, _ = zoo.data.mnist.read_idx(mnist_idx_dir, "test")
    grey = images[:50, ..., None] / 255.0
    draws = np.mean([next(iter(ds)).numpy() for _ in range(100)], axis=0)
    assert np.abs(draws - grey).mean() < 0.03


def test_mnist_with_labels(mnist_idx_dir):
    ds = zoo.data.load("mnist", split="test", batch_size=10, path=mnist_idx_dir, with_labels=True, shuffle=False)
    x, y = next(iter(ds))
    assert x.shape == (10, 28, 28, 1) and y.dtype == tf.int64
    _, labels = zoo.data.mnist.read_idx(mnist_idx_dir, "test")
    np.testing.assert_array_equal(y.numpy(), labels[:10])


def test_mnist_idx_splits_slice_as_tfds_does(mnist_idx_dir):
    # The mnist dataset trains on train[:50000] and validates on train[50000:]: the IDX reader takes them too.
    images, labels = zoo.data.mnist.read_idx(mnist_idx_dir, "test")
    for split, rows in (("test[:30]", slice(None, 30)), ("test[30:]", slice(30, None)), ("test[-5:]", slice(-5, None))):
        sliced_images, sliced_labels = zoo.data.mnist.read_idx(mnist_idx_dir, split)
        np.testing.assert_array_equal(sliced_images, images[rows])
        np.testing.assert_array_equal(sliced_labels, labels[rows])
    for split in ("test[:10%]", "tset", "validation"):
        with pytest.raises(ValueError, match=rf"MNIST IDX files exist for splits \['test', 'train'\], whole or sliced "
                                             rf"with integers \(e.g. 'train\[:50000\]'\), got '{re.escape(split)}'"):
            zoo.data.mnist.read_idx(mnist_idx_dir, split)


def test_damaged_data_files_are_value_errors_naming_the_file(tmp_path):
    # They were raw IsADirectoryError, KeyError, EOFError or BadGzipFile tracebacks in the CLIs.
    with pytest.raises(FileNotFoundError, match=r"dataset 'frey_faces': '.*' is a directory; pass path= the file"):
        zoo.data.load("frey_faces", path=str(tmp_path))
    (tmp_path / "junk.mat").write_bytes(b"not a MATLAB file at all" * 10)
    with pytest.raises(ValueError, match=r"dataset 'frey_faces': .*junk.mat is not a MATLAB file that scipy reads"):
        zoo.data.load("frey_faces", path=str(tmp_path / "junk.mat"))
    scipy.io.savemat(tmp_path / "other.mat", {"faces": np.zeros((560, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"other.mat has no variable 'ff' \(it has \['faces'\]\)"):
        zoo.data.load("frey_faces", path=str(tmp_path / "other.mat"))
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    with gzip.open(mnist / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes(16) + bytes(28 * 28 * 3))
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(8) + bytes(4))[:-6])  # truncated
    with pytest.raises(ValueError, match=r"dataset 'mnist': .*t10k-labels-idx1-ubyte.gz is not a gzipped IDX archive"):
        zoo.data.mnist.read_idx(str(mnist), "test")
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(8) + bytes(4)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz holds 2352 pixels, not 28 x 28 for each of the "
                                         r"4 labels"):
        zoo.data.mnist.read_idx(str(mnist), "test")


def test_frey_faces(frey_path):
    train = zoo.data.load("frey_faces", split="train", batch_size=2000, path=frey_path)
    test = zoo.data.load("frey_faces", split="test", batch_size=2000, path=frey_path)
    x_train, x_test = next(iter(train)).numpy(), next(iter(test)).numpy()
    assert x_train.shape == (1765, 28, 20, 1) and x_test.shape == (200, 28, 20, 1)
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0 and x_train.dtype == np.float32
    raw = scipy.io.loadmat(frey_path)["ff"]
    np.testing.assert_allclose(x_test[-1, :, :, 0], raw[:, -1].reshape(28, 20) / 255.0, rtol=1e-6)


def test_missing_data_errors_name_the_dataset_the_place_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"'binarized_mnist' is not prepared in {tmp_path}.*Fix: point TFDS_DATA_DIR"):
        zoo.data.load("binarized_mnist", split="test", data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match=rf"'mnist' split 'test': {tmp_path}.*does not exist. Fix"):
        zoo.data.load("mnist", split="test", path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="'frey_faces'.*Fix: pass path="):
        zoo.data.load("frey_faces", path=str(tmp_path / "frey_rawface.mat"))


@pytest.mark.parametrize("name", ["binarized_mnist", "mnist"])
def test_offline_load_of_an_absent_dataset_fails_at_once_and_writes_nothing(tmp_path, monkeypatch, name):
    # No download unless asked: TFDS's default retried the network for minutes and left downloads/ and
    # <name>/incomplete.* folders in the (shared, read-only) data directory.
    data_dir = tmp_path / "tensorflow_datasets"
    data_dir.mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=rf"{name!r} is not prepared in {data_dir}\. Fix: .*download=True"):
        zoo.data.load(name, split="test")
    assert time.perf_counter() - start < 5
    assert list(data_dir.iterdir()) == []


def test_bad_arguments(mnist_idx_dir):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; available: .*binarized_mnist"):
        zoo.data.load("cifar")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        zoo.data.load("mnist", split="test", batch_size=0, path=mnist_idx_dir)


def test_shuffled_pipelines_drop_the_partial_batch_and_unshuffled_keep_every_example():
    examples = tf.data.Dataset.from_tensor_slices(np.arange(250, dtype=np.float32))
    train = zoo.data.pipeline.finish(examples, 100, shuffle=True, seed=0)
    assert train.element_spec.shape == (100,)  # static: the training step's shapes are fixed while tracing
    epochs = [np.concatenate(list(train.as_numpy_iterator())) for _ in range(2)]
    assert [len(e) for e in epochs] == [200, 200] and not np.array_equal(epochs[0], epochs[1])
    test = zoo.data.pipeline.finish(examples, 100, shuffle=False, seed=0)
    assert [len(b) for b in test.as_numpy_iterator()] == [100, 100, 50]
    tiny = zoo.data.pipeline.finish(examples.take(30), 100, shuffle=True, seed=0)  # smaller than a batch: kept
    assert [len(b) for b in tiny.as_numpy_iterator()] == [30]
