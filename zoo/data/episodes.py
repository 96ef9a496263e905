"""Episodes for memory models, sampled in-graph from arrays held in memory.

`class_episodes`: few-shot episodes (targets and a labelled memory of the same classes);
`recall_episodes`: "train to recall" (targets are copies of memory entries). Both draw every
episode from a stateless seed, so a stream is reproducible and evaluation episodes repeat.
"""

import numpy as np
import tensorflow as tf

from zoo import validation


def class_episodes(
    images, labels, groups=None, num_classes=8, num_targets=4, num_memory=4, num_episodes=None, seed=0,
    with_labels=False, name="dataset",
):
    """Few-shot episodes of `num_classes` distinct classes from labelled arrays.

    Args:
        images: array `[N, ...]` (values are cast to float32).
        labels: int array `[N]`, the class of each image.
        groups: int array `[N]` or None. Given, each class is drawn by first drawing its
            group uniformly (e.g. an Omniglot alphabet), then a class within it; None draws
            classes uniformly. Classes in an episode are always distinct.
        num_classes: C, classes per episode.
        num_targets: T, target examples per class.
        num_memory: N, memory examples per class, disjoint from the targets.
        num_episodes: int, or None for an endless stream.
        seed: int, seeds the stream.
        with_labels: bool, add the labels to each element.
        name: how errors name the data.

    Returns:
        `tf.data.Dataset` of dicts `{"x": [C*T, ...], "memory": [C*N, ...]}` float32 (the
        input of a memory model's `fit`); `with_labels` adds `labels` `[C*T]` and
        `memory_labels` `[C*N]`, int32 episode-local classes 0..C-1 (class-major order).
        Classes with fewer than T + N examples are left out; the others use their first E
        examples, E the smallest such class size (all 20 drawers for Omniglot).
    """
    for arg, value in (("num_classes", num_classes), ("num_targets", num_targets), ("num_memory", num_memory)):
        validation.positive_int(arg, value)
    if num_episodes is not None:
        validation.positive_int("num_episodes", num_episodes)
    images, labels = np.asarray(images), np.asarray(labels)
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape [{len(images)}] (one per image), got {list(labels.shape)}")
    per_class = num_targets + num_memory
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    usable = np.flatnonzero(counts >= per_class)
    if len(usable) < num_classes:
        raise ValueError(
            f"{name}: episodes of {num_classes} classes with {num_targets} targets + {num_memory} memory "
            f"examples each need {num_classes} classes with >= {per_class} examples, but only {len(usable)} "
            f"of {len(classes)} classes have that many (largest class: {counts.max()} examples)"
        )
    size = counts[usable].min()
    grouped = np.stack([images[inverse == c][:size] for c in usable])  # [classes, E, ...]
    if groups is None:
        log_weights = np.zeros(len(usable), np.float32)
    else:
        class_groups = np.asarray(groups)[[np.flatnonzero(inverse == c)[0] for c in usable]]
        _, group_index, group_sizes = np.unique(class_groups, return_inverse=True, return_counts=True)
        log_weights = -np.log(group_sizes[group_index]).astype(np.float32)
    grouped = tf.constant(grouped)
    log_weights = tf.constant(log_weights)
    event_shape = tuple(images.shape[1:])

    def sample(pair):
        class_seed, example_seed = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
        # Gumbel top-k draws distinct classes, each in proportion to its weight among those left.
        uniform = tf.random.stateless_uniform(log_weights.shape, class_seed, minval=1e-20, maxval=1.0)
        _, chosen = tf.math.top_k(log_weights - tf.math.log(-tf.math.log(uniform)), k=num_classes)
        order = tf.argsort(tf.random.stateless_uniform([num_classes, size], example_seed), axis=1)
        picked = tf.gather(tf.gather(grouped, chosen), order[:, :per_class], batch_dims=1)  # [C, T+N, ...]
        picked = tf.cast(picked, tf.float32)
        episode = {
            "x": tf.reshape(picked[:, :num_targets], (num_classes * num_targets,) + event_shape),
            "memory": tf.reshape(picked[:, num_targets:], (num_classes * num_memory,) + event_shape),
        }
        if with_labels:
            episode["labels"] = tf.repeat(tf.range(num_classes), num_targets)
            episode["memory_labels"] = tf.repeat(tf.range(num_classes), num_memory)
        return episode

    return _seeds(seed, num_episodes).map(sample, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def recall_episodes(images, memory_size=256, num_targets=None, num_episodes=None, seed=0, with_labels=False):
    """"Train to recall" episodes (Bornschein et al. 2017, sec. 4.1): the targets are stored in memory.

    Each episode draws `memory_size` distinct examples as the memory and `num_targets`
    distinct ones among them (default: all) as targets. A model that addresses the stored
    copy exactly and copies it reaches log p(x) = log p(a) = -log |M| with a flat prior, and
    KL(q(a|x) || p(a)) = log |M|.

    Returns:
        `tf.data.Dataset` of dicts `{"x": [T, ...], "memory": [M, ...]}` float32; `with_labels`
        adds `addresses` `[T]` int32, the memory index holding each target.
    """
    validation.positive_int("memory_size", memory_size)
    num_targets = memory_size if num_targets is None else num_targets
    validation.positive_int("num_targets", num_targets)
    if num_episodes is not None:
        validation.positive_int("num_episodes", num_episodes)
    images = np.asarray(images)
    if memory_size > len(images) or num_targets > memory_size:
        raise ValueError(
            f"recall episodes need num_targets <= memory_size <= number of images, got num_targets={num_targets}, "
            f"memory_size={memory_size}, {len(images)} images"
        )
    data = tf.constant(images)

    def sample(pair):
        memory_seed, target_seed = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
        _, indices = tf.math.top_k(tf.random.stateless_uniform([len(images)], memory_seed), k=memory_size)
        _, addresses = tf.math.top_k(tf.random.stateless_uniform([memory_size], target_seed), k=num_targets)
        memory = tf.cast(tf.gather(data, indices), tf.float32)
        episode = {"x": tf.gather(memory, addresses), "memory": memory}
        if with_labels:
            episode["addresses"] = addresses
        return episode

    return _seeds(seed, num_episodes).map(sample, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _seeds(seed, num_episodes):
    """Episode i's stateless seed is (seed, i): no global or process seed (`keras.utils.set_random_seed`) moves it."""
    indices = tf.data.Dataset.counter() if num_episodes is None else tf.data.Dataset.range(num_episodes)
    return indices.map(lambda i: tf.stack([tf.constant(seed, tf.int64), i]))
