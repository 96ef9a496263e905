"""TFDS-backed `tf.data` pipelines: `zoo.data.load(name, split, batch_size, ...)`."""

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
            `data_dir` (TFDS data directory), `path` (a local copy for frey_faces / MNIST IDX files),
            `with_labels` (mnist).

    Example:

    >>> train = zoo.data.load("binarized_mnist", split="train", batch_size=100)
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(LOADERS)}")
    return LOADERS[name](split=split, batch_size=batch_size, **kwargs)
