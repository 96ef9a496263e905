"""The shared tail of every pipeline: cache, shuffle, batch, prefetch."""

import tensorflow as tf

from zoo import validation


def finish(ds, batch_size, shuffle, seed, cache=True, num_examples=None):
    """Shuffled (training) pipelines drop each epoch's last partial batch, unless that would
    leave none: a static batch size lets the training step fix its shapes while tracing
    (`zoo.layers.Dense` then decides its blocking once), and the reshuffle each epoch still
    visits every example. Unshuffled (evaluation) pipelines keep every example."""
    batch_size = validation.positive_int("batch_size", batch_size)
    size = int(ds.cardinality())
    if cache:
        ds = ds.cache()
    if shuffle:
        buffer = num_examples or 10_000
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    drop_remainder = bool(shuffle) and (size < 0 or size >= batch_size)  # size < 0: unknown or infinite
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def dynamic_binarization(ds, seed):
    """Resamples x ~ Bernoulli(grey levels) every epoch, reproducibly for a given seed."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def binarize(element, pair):
        x = element[0] if isinstance(element, tuple) else element
        x = tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=pair) < x, tf.float32)
        return (x,) + element[1:] if isinstance(element, tuple) else x

    return tf.data.Dataset.zip((ds, seeds)).map(binarize, num_parallel_calls=tf.data.AUTOTUNE)
