"""MNIST pipelines: the fixed binarization (`binarized_mnist`) and dynamic binarization (`mnist`)."""

import gzip
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data import pipeline

# Lecun's IDX archives, read when TFDS `mnist` is not prepared (e.g. offline).
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def tfds_dataset(name, split, data_dir=None, download=False):
    """`tfds.load(name, split)` from a prepared TFDS data directory, with errors that say where and how to fix.

    Without `download=True` nothing is fetched and nothing is written: data that is not
    prepared in the directory raises `FileNotFoundError` at once (TFDS would otherwise retry
    downloads for minutes and leave `downloads/` and `incomplete.*` folders behind).
    """
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    if not download and not _prepared(name, data_dir):
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared in {data_dir}. Fix: point TFDS_DATA_DIR (or data_dir=) at a "
            f"directory holding a prepared copy, or pass download=True (needs internet access) to let TFDS "
            f"download and prepare it there."
        )
    try:
        return tfds.load(name, split=split, data_dir=data_dir, download=download)
    except Exception as error:  # TFDS raises many types here (not found, network, checksum)
        # Offline the data is prepared (checked above), so its ValueErrors are about the split (e.g. an empty slice).
        if isinstance(error, ValueError) and (not download or "split" in str(error).lower()):
            raise ValueError(f"dataset {name!r} has no split {split!r}: {error}") from None
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared in {data_dir} and could not be downloaded "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]}). Fix: point TFDS_DATA_DIR "
            f"(or data_dir=) at a directory holding a prepared copy, or run once with internet "
            f"access so TFDS can download it."
        ) from error


def _prepared(name, data_dir):
    """Whether TFDS `name` is prepared in `data_dir`; looks only, writes nothing."""
    if not os.path.isdir(os.path.join(data_dir, name)):
        return False
    return tfds.builder(name, data_dir=data_dir).is_prepared()


def load_binarized(split="train", batch_size=100, shuffle=None, seed=0, data_dir=None, download=False):
    """Larochelle's fixed binarization of MNIST (Salakhutdinov & Murray 2008), float32 `[B, 28, 28, 1]`.

    Splits: train (50,000), validation (10,000), test (10,000); TFDS slicing like
    `"train[:1000]"` works too.
    """
    ds = tfds_dataset("binarized_mnist", split, data_dir, download)
    ds = ds.map(lambda ex: tf.cast(ex["image"], tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
    shuffle = split.startswith("train") if shuffle is None else shuffle
    return pipeline.finish(ds, batch_size, shuffle, seed, num_examples=50_000)


def read_idx(path, split):
    """Reads MNIST's IDX archives from `path`: uint8 images `[N, 28, 28]` and labels `[N]`.

    `split`: `"train"` or `"test"`, or a slice of one as TFDS writes it (`"train[:50000]"`, `"train[50000:]"`,
    the `mnist` dataset's own training and validation splits).
    """
    match = re.fullmatch(r"(\w+)(?:\[(-?\d+)?:(-?\d+)?\])?", split)
    if not match or match[1] not in _IDX_FILES:
        raise ValueError(f"MNIST IDX files exist for splits {sorted(_IDX_FILES)}, whole or sliced with integers "
                         f"(e.g. 'train[:50000]'), got {split!r}")
    split, start, stop = match[1], *(int(bound) if bound else None for bound in match.groups()[1:])
    arrays = []
    for filename, offset in zip(_IDX_FILES[split], (16, 8)):
        file = os.path.join(path, filename)
        if not os.path.exists(file):
            raise FileNotFoundError(
                f"dataset 'mnist' split {split!r}: {file} does not exist. Fix: pass path= a directory "
                f"with {_IDX_FILES[split]} (from http://yann.lecun.com/exdb/mnist/), or prepare TFDS 'mnist'."
            )
        try:
            with gzip.open(file, "rb") as f:
                arrays.append(np.frombuffer(f.read(), np.uint8, offset=offset))
        except (OSError, EOFError, ValueError) as error:  # not gzip, truncated, shorter than its header
            raise ValueError(f"dataset 'mnist': {file} is not a gzipped IDX archive ({error})") from None
    images, labels = arrays
    if images.size != 28 * 28 * labels.size:
        raise ValueError(f"dataset 'mnist': {_IDX_FILES[split][0]} holds {images.size} pixels, not 28 x 28 for each of "
                         f"the {labels.size} labels in {_IDX_FILES[split][1]}")
    return images.reshape(-1, 28, 28)[start:stop], labels[start:stop]


def load_dynamic(
    split="train", batch_size=100, shuffle=None, seed=0, data_dir=None, download=False, path=None,
    with_labels=False,
):
    """MNIST with dynamic binarization: pixels resampled from the grey levels every epoch.

    Reads TFDS `mnist`, or the IDX archives in `path` when given. float32 `[B, 28, 28, 1]`
    in {0, 1}; with `with_labels=True` the elements are `(x, label)`.
    """
    if path is not None:
        images, labels = read_idx(path, split)
        ds = tf.data.Dataset.from_tensor_slices((images[..., None], labels.astype(np.int64)))
    else:
        ds = tfds_dataset("mnist", split, data_dir, download).map(lambda ex: (ex["image"], ex["label"]))
    ds = ds.map(lambda image, label: (tf.cast(image, tf.float32) / 255.0, label)).cache()
    if not with_labels:
        ds = ds.map(lambda x, label: x)
    ds = pipeline.dynamic_binarization(ds, seed)
    shuffle = split.startswith("train") if shuffle is None else shuffle
    return pipeline.finish(ds, batch_size, shuffle, seed, cache=False, num_examples=60_000)
