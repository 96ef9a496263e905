import fcntl
import json
import os
import pathlib
import signal
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests compile with XLA to check that the models run under it (the goldens' gradients and fit steps); LLVM's
# optimisation of the generated code is a third of that compile time and none of what they check.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
_SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
SHARED_TFDS = _SHARED / "tensorflow_datasets"
SHARED_DATASETS = _SHARED / "datasets"
if SHARED_TFDS.is_dir():
    os.environ.setdefault("TFDS_DATA_DIR", str(SHARED_TFDS))
# The data read from files: where the environment says (as the library and the notebooks read it), else ../shared.
OMNIGLOT_DIR = pathlib.Path(os.environ.get("OMNIGLOT_DIR") or SHARED_DATASETS / "omniglot")
MNIST_DIR = pathlib.Path(os.environ.get("MNIST_DIR") or SHARED_DATASETS / "mnist")
FREY_FACES_FILE = SHARED_DATASETS / "frey_faces" / "frey_rawface.mat"


def has_binarized_mnist():
    root = pathlib.Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()
    return (root / "binarized_mnist").is_dir()


needs_mnist = pytest.mark.skipif(not has_binarized_mnist(), reason="needs binarized_mnist in TFDS_DATA_DIR")


def missing_data():
    """The real data the tests look for and do not find (each absence skips tests or swaps in synthetic data)."""
    files = {"MNIST test archives": MNIST_DIR / "t10k-labels-idx1-ubyte.gz",
             "Omniglot archives": OMNIGLOT_DIR / "images_background_small1.zip", "Frey faces": FREY_FACES_FILE}
    return ([] if has_binarized_mnist() else ["binarized_mnist in TFDS_DATA_DIR"]) + [
        f"{name} ({path})" for name, path in files.items() if not path.exists()]


@pytest.fixture(autouse=True)
def no_global_seed_left_behind():
    """Every test starts without TensorFlow's global seed: a test that sets it must not change what the ops of
    the tests after it draw (seeded ops read it: `tf.random.set_seed` moves their streams)."""
    yield
    import tensorflow as tf

    tf.random.set_seed(None)


def synthetic_binary_images(num, seed=0, shape=(28, 28, 1)):
    """Structured binary images (noisy bars) for machines without the real data."""
    rng = np.random.default_rng(seed)
    images = np.zeros((num,) + shape, np.float32)
    for image in images:
        for _ in range(rng.integers(1, 4)):
            row, col = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
            if rng.random() < 0.5:
                image[row : row + 3, :] = 1.0
            else:
                image[:, col : col + 3] = 1.0
    flips = rng.random(images.shape) < 0.02
    return np.where(flips, 1.0 - images, images).astype(np.float32)


def binarized_mnist_array(split, num):
    """`num` examples of binarized MNIST as float32 [N, 28, 28, 1]: real when available, else synthetic."""
    if not has_binarized_mnist():
        return synthetic_binary_images(num, seed=0 if split.startswith("train") else 1)
    import zoo

    ds = zoo.data.load("binarized_mnist", split=f"{split}[:{num}]", batch_size=num, shuffle=False)
    return next(iter(ds)).numpy()


@pytest.fixture(scope="session")
def mnist_train():
    return binarized_mnist_array("train", 3000)


@pytest.fixture(scope="session")
def mnist_test():
    return binarized_mnist_array("test", 1000)


def built_once_per_session(tmp_path_factory, name, build):
    """`build(directory)`'s JSON-ready result, built once per test session: under pytest-xdist the first worker
    that asks builds it (holding a lock) in the directory the workers share, and the others read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-<user>/pytest-<n>/, above each worker's popen-gw<i>/
    directory, result_file = root / name, root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result_file.exists():
            directory.mkdir()
            result_file.write_text(json.dumps(build(directory)))
    return json.loads(result_file.read_text())


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """A run killed with SIGKILL mid-epoch 2 and resumed, beside an uninterrupted one (tests.testing.TINY, 3 epochs):
    tests may copy them, never change them."""
    from tests.testing import TINY, checkpointed_epoch, finish_app, start_app

    def build(root):
        reference, resumed = str(root / "reference"), str(root / "resumed")
        uninterrupted = start_app("zoo.train", *TINY, "--epochs=3", f"--model_dir={reference}")
        victim = start_app("zoo.train", *TINY, "--epochs=3", f"--model_dir={resumed}")
        deadline = time.time() + 240
        while checkpointed_epoch(resumed) < 1 and victim.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        victim.send_signal(signal.SIGKILL)
        killed_code, _, killed_err = finish_app(victim)
        killed_at = checkpointed_epoch(resumed)
        rerun = finish_app(start_app("zoo.train", *TINY, "--epochs=3", f"--model_dir={resumed}"))
        return {
            "reference": reference, "resumed": resumed, "killed": (killed_code, killed_at, killed_err),
            "rerun": rerun, "uninterrupted": finish_app(uninterrupted),
        }

    return built_once_per_session(tmp_path_factory, "tiny_runs", build)


# Files that keep one pytest-xdist worker busy for a minute or more. `--dist loadfile` hands out files in collection
# order; collected first, none of them is left for the end while the other worker has nothing to do. The notebooks
# come last: their four kernels run side by side and fill both cores, so they are best run while the other worker
# finishes its last file (TensorFlow's thread pools, oversubscribed beside other heavy tests, waste CPU time).
LONGEST_FILES = ["test_goldens.py", "test_train.py", "test_pretrained.py", "runs/test_export.py",
                 "runs/test_training_strategies.py", "runs/test_training.py"]
LAST_FILE = "test_notebooks.py"


def pytest_collection_modifyitems(items):
    tests = pathlib.Path(__file__).parent

    def rank(item):
        relative = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else None
        if relative == LAST_FILE:
            return len(LONGEST_FILES) + 1
        return LONGEST_FILES.index(relative) if relative in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: the rest keep their order
