"""TFDS-backed `tf.data` pipelines: `zoo.data.load(name, split, batch_size, ...)`."""

import numpy as np

from zoo.data import episodes, frey_faces, mnist, omniglot
from zoo.data.omniglot import preprocess as preprocess_omniglot

LOADERS = {
    "binarized_mnist": mnist.load_binarized,
    "mnist": mnist.load_dynamic,
    "frey_faces": frey_faces.load,
    "omniglot": omniglot.load,
}


def load(name, split="train", batch_size=100, **kwargs):
    """Returns a batched, prefetched `tf.data.Dataset` of float32 images for `name`.

    Args:
        name: one of `zoo.data.LOADERS`: "binarized_mnist" (fixed binarization),
            "mnist" (dynamic binarization, resampled every epoch), "frey_faces", "omniglot"
            (alphabet-disjoint train/test; episodes: `zoo.data.omniglot.episodes`).
        split: the split name ("train", "validation", "test", or TFDS slicing such as "train[:10%]").
        batch_size: int, examples per batch.
        **kwargs: loader options: `shuffle` (default: on for train splits; shuffled pipelines drop
            each epoch's last partial batch, so batches have a static size, and unshuffled ones keep
            every example), `seed`,
            `data_dir` (TFDS data directory), `download` (default False: data not prepared in the
            TFDS data directory raises `FileNotFoundError` at once; True lets TFDS download and
            prepare it there), `path` (a local copy for frey_faces / MNIST IDX files / Omniglot
            archives), `with_labels` (mnist, omniglot).

    Example:

    >>> train = zoo.data.load("binarized_mnist", split="train", batch_size=100)
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(LOADERS)}")
    if not isinstance(split, str):
        raise ValueError(f"split must be a split name such as 'train' or 'test[:10%]', got {split!r}")
    return LOADERS[name](split=split, batch_size=batch_size, **kwargs)


def load_episodes(name, split="train", num_targets=4, num_memory=4, num_classes=None, num_episodes=None, seed=0,
                  **kwargs):
    """Episodes `{"x": targets, "memory": entries}` for models whose memory comes with each batch.

    Args:
        name: "omniglot" (few-shot episodes, `zoo.data.omniglot.episodes`: `num_classes`
            characters (default 8), `num_targets` target and `num_memory` memory drawings of
            each), or "binarized_mnist" / "mnist" ("train to recall" episodes,
            `zoo.data.episodes.recall_episodes`: `num_memory` distinct images of `split` as the
            memory, `num_targets` of them as the targets).
        split: the split the images come from.
        num_episodes: int, or None for an endless stream.
        seed: int, seeds the stream (the same seed gives the same episodes).
        **kwargs: loader options (`path`, `data_dir`, ...).

    Example:

    >>> recall = zoo.data.load_episodes("binarized_mnist", "train", num_targets=32, num_memory=256)
    """
    if name == "omniglot":
        return omniglot.episodes(split, num_classes=num_classes or 8, num_targets=num_targets,
                                 num_memory=num_memory, num_episodes=num_episodes, seed=seed, **kwargs)
    if name in ("binarized_mnist", "mnist"):
        if num_classes is not None:
            raise ValueError(f"{name} gives recall episodes, which have no classes; got num_classes={num_classes!r}")
        images = load(name, split=split, batch_size=10_000, shuffle=False, **kwargs)
        images = np.concatenate([batch.numpy() for batch in images]).astype(np.uint8)  # binary: 1 byte a pixel
        return episodes.recall_episodes(images, memory_size=num_memory, num_targets=num_targets,
                                        num_episodes=num_episodes, seed=seed)
    raise ValueError(f"no episodes for dataset {name!r}; available: omniglot, binarized_mnist, mnist")
