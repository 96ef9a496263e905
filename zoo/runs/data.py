"""A run's data: its splits and episodes, its per-epoch training stream (the same after a resume) and validation."""

from zoo.runs.errors import UsageError

# Evaluation episodes drawn for validation when a memory comes with each batch.
VALIDATION_EPISODES = 20


def load_split(config, split, batch_size, **kwargs):
    """`zoo.data.load` for the run's dataset, with bad splits and missing data as `UsageError`."""
    import zoo

    if config.get("data_path"):
        kwargs["path"] = config["data_path"]
    kwargs.update(config.get("data_options") or {})
    try:
        return zoo.data.load(config["dataset"], split=split, batch_size=batch_size, **kwargs)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"dataset {config['dataset']!r}: {str(error).splitlines()[0]}") from None


def load_episodes(config, split, num_episodes, seed):
    """The run's episodes of `split` (see `zoo.data.load_episodes`), errors as `UsageError`."""
    import zoo

    options = {key: value for key, value in config["episodes"].items() if key != "kind"}
    if config.get("data_path"):
        options["path"] = config["data_path"]
    options.update(config.get("data_options") or {})
    try:
        return zoo.data.load_episodes(config["dataset"], split, num_episodes=num_episodes, seed=seed, **options)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"dataset {config['dataset']!r}: {str(error).splitlines()[0]}") from None


def targets_per_episode(config):
    episodes = config["episodes"]
    return episodes["num_targets"] * episodes.get("num_classes", 1)


def count_examples(config, split):
    ds = load_split(config, split, 1, shuffle=False)
    count = int(ds.cardinality())
    return count if count >= 0 else sum(1 for _ in ds)


def steps_per_epoch(config):
    """`--steps_per_epoch`, else one pass over the training split (episodes: its size in targets)."""
    if config["steps_per_epoch"]:
        return config["steps_per_epoch"]
    batch = targets_per_episode(config) if config["episodes"] else config["batch_size"]
    return max(1, count_examples(config, config["train_split"]) // batch)


def training_stream(config, first_epoch):
    """Batches of epochs `first_epoch .. epochs-1`; epoch e's order depends only on (seed, e).

    That makes a resumed run see exactly the batches the interrupted one would have. The order
    is a stateless permutation of the split (held in memory, as a full shuffle buffer would be),
    so no global or process seed (`tf.random.set_seed`) changes it. Incomplete final batches are
    dropped so every step has the same shape (one XLA program). Episodes come from one stream
    seeded by `--seed`, of which epoch e takes its slice.
    """
    import tensorflow as tf

    steps = config["steps_per_epoch"]
    if config["episodes"]:
        stream = load_episodes(config, config["train_split"], None, config["seed"])
        return stream.skip(first_epoch * steps).take((config["epochs"] - first_epoch) * steps)
    num_examples = count_examples(config, config["train_split"])
    examples = next(iter(load_split(config, config["train_split"], num_examples, shuffle=False)))
    batch = config["batch_size"]

    def epoch(e):
        def one_pass(p):  # --steps_per_epoch may ask for more than one pass
            seed = tf.stack([tf.cast(config["seed"], tf.int64) * 1_000_003 + e, p])
            order = tf.random.experimental.stateless_shuffle(tf.range(num_examples, dtype=tf.int64), seed=seed)
            return tf.data.Dataset.from_tensor_slices(order[: num_examples // batch * batch]).batch(batch)

        return tf.data.Dataset.range(steps).flat_map(one_pass).take(steps)

    indices = tf.data.Dataset.range(first_epoch, config["epochs"]).flat_map(epoch)
    return indices.map(lambda index: tf.gather(examples, index)).prefetch(tf.data.AUTOTUNE)


def sharded(dataset):
    """`dataset` (global batches) set to be split by element between workers.

    Keras's `fit` hands it to the strategy's `experimental_distribute_dataset`, which splits each
    global batch between the replicas. Sharding by data (not by file, the default) keeps the
    batches exactly those of a single-device run: every worker reads the whole pipeline,
    seeded alike, and keeps its replicas' parts.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def validation_stream(config):
    """The data that picks the best epoch: the validation split, or fixed episodes drawn from it."""
    if config["episodes"]:
        return load_episodes(config, config["validation_split"], VALIDATION_EPISODES, config["seed"])
    return load_split(config, config["validation_split"], config["batch_size"], shuffle=False)
