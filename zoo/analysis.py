"""Evaluation through the models' public methods: log-likelihoods over datasets, and the papers' analyses."""

import math
import time

import numpy as np

from zoo import objectives, validation
from zoo.models.conv_vae import ConvVAE
from zoo.models.hierarchical_vae import HierarchicalVAE
from zoo.models.level_stack import LevelStack
from zoo.models.mem_vae import MemVAE
from zoo.models.soft_attention_vae import SoftAttentionVAE


def dataset_log_likelihood(model, dataset, num_samples=5000, max_examples=None, seed=0):
    """Importance-sampled test log-likelihood of a model over a dataset (Burda et al. 2016, sec. 5).

    Args:
        model: a `zoo.models.LatentVariableModel`.
        dataset: iterable of batches `x` or `(x, ...)` (e.g. `zoo.data.load(..., split="test")`),
            or, for a model that reads a memory given per batch (VMA), dicts `{"x", "memory"}`
            (e.g. `zoo.data.omniglot.episodes(..., num_episodes=100)`): log p(x | memory).
        num_samples: int, importance samples per example (5000 in the papers).
        max_examples: int or None, stop after this many examples.
        seed: int, batch i uses the stateless seed `(seed, i)`, so a run is reproducible.

    Returns:
        dict: `examples`; `nll_nats` = -mean log p(x) and `nll_stderr` its standard error
        over examples; `bound_nats` = -mean ELBO (same samples); `bits_per_dim`; `seconds`.
    """
    if max_examples is not None:
        validation.positive_int("max_examples", max_examples)
    start = time.perf_counter()
    batches = list(batch_log_likelihoods(model, dataset, num_samples, max_examples, seed))
    log_px = np.concatenate([log_px for log_px, _ in batches]) if batches else np.zeros([0])
    elbo = np.concatenate([elbo for _, elbo in batches]) if batches else np.zeros([0])
    return log_likelihood_summary(model, log_px, elbo, num_samples, time.perf_counter() - start)


def batch_log_likelihoods(model, dataset, num_samples, max_examples=None, seed=0, first_batch=0):
    """Yields `(log p(x), ELBO)` of each batch of `dataset` as numpy arrays `[B]`, the estimates of
    `dataset_log_likelihood`; stops after `max_examples` examples.

    `first_batch`: the index of the dataset's first batch in a longer sequence, so that an evaluation resumed
    after its first batches uses the seeds `(seed, first_batch)`, `(seed, first_batch + 1)`, ... an uninterrupted
    one would have used: the same estimate, batch for batch.
    """
    if max_examples is not None:  # 0: a resumed evaluation with nothing left to do
        validation.positive_int("max_examples", max_examples, minimum=0)
    seen = 0
    for i, batch in enumerate(dataset, start=first_batch):
        if max_examples is not None and seen >= max_examples:
            return
        memory = batch["memory"] if isinstance(batch, dict) else None
        x = batch["x"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (tuple, list)) else batch
        if max_examples is not None:
            x = x[: max_examples - seen]
        inputs = x if memory is None else (x, memory)
        estimates = model.importance_sampling(inputs, num_samples=num_samples, seed=[seed, i])
        log_px = estimates["log_likelihood"].numpy()
        seen += len(log_px)
        yield log_px, estimates["elbo"].numpy()


def log_likelihood_summary(model, log_px, elbo, num_samples, seconds):
    """`dataset_log_likelihood`'s result from the per-example estimates `log_px` and `elbo` (numpy `[N]`)."""
    log_px, elbo = np.asarray(log_px, np.float64), np.asarray(elbo, np.float64)
    seen = len(log_px)
    if not seen:
        raise ValueError("the dataset gave no examples to evaluate")
    nll = float(-log_px.mean())
    return {
        "examples": int(seen),
        "num_samples": int(num_samples),
        "nll_nats": nll,
        "nll_stderr": float(log_px.std(ddof=1) / math.sqrt(seen)) if seen > 1 else float("nan"),
        "bound_nats": float(-elbo.mean()),
        "bits_per_dim": float(objectives.bits_per_dim(nll, math.prod(model.input_shape))),
        "seconds": seconds,
    }


def _check_model(function, model, cls, what):
    if not isinstance(model, cls):
        raise ValueError(f"{function} needs {what}; got {type(model).__name__}")


def latent_activity(model, dataset, max_batches=None, threshold=0.1):
    """KL per latent group (level) and per unit of a level-stack model over a dataset: which latents are used.

    Averages the `kl_levels` and `kl_units` outputs of `model(x)` (inference mode: batch norm
    uses its moving statistics) over every example. A unit or group is active when its
    average KL exceeds `threshold` nats; a collapsed posterior shows as groups near 0.

    Returns:
        dict: `kl_per_group` (list, one per group in the model's `group_order`: from x upward
        for the MLP stacks, from the top down for NVAE), `kl_per_unit` (list), `active_units`,
        `active_groups`, `group_order`, `examples`.
    """
    _check_model("latent_activity", model, LevelStack, "a latent hierarchy (VAE, MemVAE, HierarchicalVAE, LadderVAE "
                 "or NVAE), whose outputs hold the KL per group and per unit")
    level_sums, unit_sums, seen = 0.0, 0.0, 0
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        outputs = model(model.validate_inputs(x), training=False)
        level_sums += outputs["kl_levels"].numpy().sum(axis=0)
        unit_sums += outputs["kl_units"].numpy().sum(axis=0)
        seen += int(outputs["kl_levels"].shape[0])
    if not seen:
        raise ValueError("the dataset gave no examples to evaluate")
    per_group, per_unit = level_sums / seen, unit_sums / seen
    return {
        "kl_per_group": per_group.tolist(),
        "kl_per_unit": per_unit.tolist(),
        "active_units": int((per_unit > threshold).sum()),
        "active_groups": int((per_group > threshold).sum()),
        "group_order": model.group_order,
        "examples": seen,
    }


def plot_kl_per_group(kl_per_group, path=None, title="KL per latent group", group_order="from x upward", axes=None):
    """A bar chart of the KL (nats) of each latent group, in `group_order`; returns its matplotlib `Axes`.

    Draws into `axes` (e.g. from `plt.subplots()` in a notebook), or into a new figure that is
    not registered with pyplot; the interactive backend is left as it is. With `path`, the
    figure is written to that PNG.
    """
    from matplotlib.figure import Figure

    kl_per_group = np.asarray(kl_per_group, dtype=float)
    if kl_per_group.ndim != 1 or not len(kl_per_group) or not np.all(np.isfinite(kl_per_group)):
        raise ValueError(f"kl_per_group must be a non-empty list of finite numbers, got {kl_per_group!r}")
    if axes is None:
        axes = Figure(figsize=(max(4.5, 0.5 * len(kl_per_group) + 2.0), 3.0)).add_subplot()
    axes.bar(np.arange(len(kl_per_group)), kl_per_group, color="tab:blue")
    axes.set_xlabel(f"latent group ({group_order})")
    axes.set_ylabel("KL (nats)")
    axes.set_xticks(np.arange(len(kl_per_group)))
    axes.set_title(title, fontsize=9)
    if path is not None:
        axes.figure.tight_layout()
        axes.figure.savefig(path, dpi=100)
    return axes



def plot_learning_curve(curve, path=None, title="learning curve", test=None, axes=None):
    """The bounds per epoch of `zoo.runs.logs.learning_curve(model_dir)` as -bound in nats (lower is better, the
    scale of an NLL); returns its matplotlib `Axes`.

    Draws the training and validation -bound, the validation NLL where the run logged it, the best
    epoch, and `test` (a dict with `epoch`, `nll_nats`, `num_samples`: a test NLL of one epoch's
    weights) as one point. Draws into `axes` or into a new figure not registered with pyplot; with
    `path`, the figure is written to that PNG.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not curve["epochs"]:
        raise ValueError("the learning curve holds no epoch")
    if axes is None:
        axes = Figure(figsize=(6.0, 3.5)).add_subplot()
    epochs = [row["epoch"] for row in curve["epochs"]]
    for key, label, color in (("train_bound", "training -bound", "tab:blue"),
                              ("validation_bound", "validation -bound", "tab:orange")):
        values = [np.nan if row.get(key) is None else -row[key] for row in curve["epochs"]]
        if not np.all(np.isnan(values)):
            axes.plot(epochs, values, marker="o", markersize=3, color=color, label=label)
    if any(row.get("validation_nll") is not None for row in curve["epochs"]):
        values = [np.nan if row["validation_nll"] is None else row["validation_nll"] for row in curve["epochs"]]
        axes.plot(epochs, values, marker="o", markersize=3, color="tab:green", label="validation NLL")
    if curve.get("best_epoch") is not None:
        axes.axvline(curve["best_epoch"], color="grey", linestyle="--", linewidth=1,
                     label=f"best epoch ({curve['best_epoch']}, by {curve['selected_by'].replace('_', ' ')})")
    if test is not None:
        axes.plot([test["epoch"]], [test["nll_nats"]], marker="*", markersize=10, linestyle="none", color="black",
                  label=f"test NLL (k = {test['num_samples']:,})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("nats per example")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7)
    if path is not None:
        axes.figure.tight_layout()
        axes.figure.savefig(path, dpi=100)
    return axes

def memory_size_sweep(model, make_episodes, num_classes=(1, 2, 4, 8, 16), examples_per_class=(1, 2, 4, 8, 16),
                      num_samples=1000, seed=0):
    """Conditional NLL of targets given memories of growing size (Bornschein et al. 2017, Figure 5).

    For every pair (C, n), `make_episodes(C, n)` gives episodes whose memory holds n examples
    of each of C classes and whose targets are other examples of those classes (e.g.
    `lambda c, n: zoo.data.omniglot.episodes("test", c, num_memory=n, num_episodes=20)`);
    -log p(x | memory) is estimated with `num_samples` importance samples
    (see `dataset_log_likelihood`).

    Returns:
        list of dicts, one per (C, n): `num_classes`, `examples_per_class`, `memory_entries`
        (C * n), and `dataset_log_likelihood`'s `examples`, `nll_nats`, `nll_stderr`,
        `bound_nats`, `seconds`.
    """
    rows = []
    for classes in num_classes:
        for per_class in examples_per_class:
            result = dataset_log_likelihood(model, make_episodes(classes, per_class), num_samples, seed=seed)
            rows.append({
                "num_classes": classes, "examples_per_class": per_class, "memory_entries": classes * per_class,
                **{k: result[k] for k in ("examples", "nll_nats", "nll_stderr", "bound_nats", "seconds")},
            })
    return rows


def few_shot_accuracy(model, episodes, max_episodes=None):
    """N-way K-shot classification accuracy from a model's `classify(queries, memory, memory_labels)`.

    No retraining: each episode's labelled support set is the memory, and a query goes to
    the class with the highest p(c | x) (for VMA: the posterior address mass on the class's entries).

    Args:
        model: a model with `classify` (e.g. `zoo.VMA`).
        episodes: iterable of dicts `queries`, `query_labels`, `memory`, `memory_labels`
            (e.g. `zoo.data.omniglot.few_shot_episodes("test", ways=20, shots=1)`).
        max_episodes: int or None, stop after this many episodes.

    Returns:
        dict: `accuracy` (mean of the per-episode accuracies), `stderr` (standard error of the per-episode
        accuracies), `episodes`, `queries`, `ways`, `shots` (of the first episode; None when its classes have
        different numbers of entries), `seconds`.
    """
    start = time.perf_counter()
    per_episode, queries, shape = [], 0, None
    for episode in episodes:
        if max_episodes is not None and len(per_episode) >= max_episodes:
            break
        labels, ways = validation.class_labels(episode["memory_labels"], len(episode["memory"]))
        counts = np.bincount(labels.numpy(), minlength=ways)
        query_labels, _ = validation.class_labels(episode["query_labels"], len(episode["queries"]), ways,
                                                  name="query_labels")
        probabilities = model.classify(episode["queries"], episode["memory"], labels, num_classes=ways)
        correct = np.argmax(np.asarray(probabilities), axis=-1) == query_labels.numpy()
        per_episode.append(correct.mean())
        queries += correct.size
        shape = shape or (ways, int(counts[0]) if counts.min() == counts.max() else None)
    if not per_episode:
        raise ValueError("the episodes gave nothing to classify")
    per_episode = np.asarray(per_episode)
    return {
        "accuracy": float(per_episode.mean()),
        "stderr": float(per_episode.std(ddof=1) / math.sqrt(len(per_episode))) if len(per_episode) > 1 else float("nan"),
        "episodes": len(per_episode),
        "queries": int(queries),
        "ways": shape[0],
        "shots": shape[1],
        "seconds": time.perf_counter() - start,
    }


# Analyses of Li, Zhu & Zhang (2016), "Learning to Generate with Memory" -------------------------

IMPUTATION_MASKS = ("left_half", "rectangle", "random")


def imputation_mask(shape, kind, size=12, drop_rate=0.6, seed=0):
    """Where pixels are observed (1) or missing (0), as in the paper's sec. 5.4.

    Args:
        shape: `[N, H, W, C]`, the shape of the images to mask.
        kind: `"left_half"` (columns 0..W/2-1 missing), `"rectangle"` (a centred
            `size` x `size` square missing) or `"random"` (each pixel missing with
            probability `drop_rate`, independently per image).
        size: int, side of the missing square for `"rectangle"`.
        drop_rate: float in (0, 1), for `"random"`.
        seed: int, for `"random"`.

    Returns:
        float32 array of `shape` with values in {0, 1}.
    """
    if len(shape) != 4:
        raise ValueError(f"imputation_mask expects an image batch shape [N, H, W, C], got {shape!r}")
    n, height, width, channels = (int(d) for d in shape)
    observed = np.ones((n, height, width, channels), np.float32)
    if kind == "left_half":
        observed[:, :, : width // 2] = 0
    elif kind == "rectangle":
        if not 0 < size <= min(height, width):
            raise ValueError(f"size must be in [1, {min(height, width)}], got {size!r}")
        top, left = (height - size) // 2, (width - size) // 2
        observed[:, top : top + size, left : left + size] = 0
    elif kind == "random":
        if not 0 < drop_rate < 1:
            raise ValueError(f"drop_rate must be in (0, 1), got {drop_rate!r}")
        observed = (np.random.default_rng(seed).random(observed.shape) >= drop_rate).astype(np.float32)
    else:
        raise ValueError(f"kind must be one of {IMPUTATION_MASKS}, got {kind!r}")
    return observed


def impute(model, x, observed, num_iterations=100, seed=0):
    """Iterative missing-value imputation through the model (Li et al. 2016, sec. 5.4; Rezende et al. 2014).

    Missing pixels start as noise (Bernoulli(1/2) for binary models, U(0, 1) otherwise). Each
    iteration draws z ~ q(z | x_t) and sets the missing pixels to the decoder mean E[x | z]
    (Bernoulli models: to a sample from it, so inputs stay binary); observed pixels never change.
    Works for every model whose `encode` gives a Gaussian's `mean` and `log_variance` and whose `decode` takes
    that z (the VAE family, `ConvVAE`, `SoftAttentionVAE` with its learned memory).

    Args:
        model: a `VAE` or subclass, `ConvVAE` or `SoftAttentionVAE`.
        x: `[N, *input_shape]` complete images (the truth at the missing pixels).
        observed: same shape, 1 where a pixel is observed, 0 where missing (see `imputation_mask`).
        num_iterations: int >= 1 (100 in the paper).
        seed: int, for the noise and the posterior samples.

    Returns:
        dict: `imputed` (observed pixels, decoder means at the missing ones, from the last
        iteration), `mse` (mean squared error over missing pixels, per iteration, `[num_iterations]`),
        `missing_pixels`.
    """
    _check_model("impute", model, (HierarchicalVAE, ConvVAE, SoftAttentionVAE), "a model whose encode gives a "
                 "Gaussian's mean and log_variance and whose decode takes that z (VAE, MemVAE, HierarchicalVAE, "
                 "LadderVAE, ConvVAE, SoftAttentionVAE)")
    x = np.asarray(x, np.float32)
    observed = np.asarray(observed, np.float32)
    if observed.shape != x.shape or not np.all((observed == 0) | (observed == 1)):
        raise ValueError(
            f"observed must be a 0/1 mask of the images' shape {x.shape}, got shape {observed.shape}"
        )
    missing = 1.0 - observed
    if not missing.any():
        raise ValueError("the mask hides no pixel: nothing to impute")
    num_iterations = validation.positive_int("num_iterations", num_iterations)
    rng = np.random.default_rng(seed)
    binary = model.likelihood == "bernoulli"
    noise = (rng.random(x.shape) < 0.5) if binary else rng.random(x.shape)
    current = observed * x + missing * noise.astype(np.float32)
    errors = []
    for _ in range(num_iterations):
        posterior = model.encode(current)
        mean, log_variance = (np.asarray(posterior[k]) for k in ("mean", "log_variance"))
        z = mean + np.exp(0.5 * log_variance) * rng.standard_normal(mean.shape).astype(np.float32)
        x_mean = np.asarray(model.decode(z)["mean"])
        errors.append(float(np.sum(missing * (x_mean - x) ** 2) / missing.sum()))
        fill = (rng.random(x.shape) < x_mean).astype(np.float32) if binary else x_mean
        current = observed * x + missing * fill
    return {
        "imputed": observed * x + missing * x_mean,
        "mse": np.asarray(errors),
        "missing_pixels": int(missing.sum()),
    }


def generation_without_memory(model, num_samples=20, seed=0):
    """Samples from the same z with every memory on, one memory off at a time, and all off (appendix C).

    A disabled memory reads a vector of ones in place of h_m (the paper's choice).

    Returns:
        dict of decoder means `[num_samples, *input_shape]`: `"memory"` (all on),
        `"without_layer_<l>"` for each hidden layer l with memory (from x upward), `"no_memory"`.
    """
    _check_model("generation_without_memory", model, MemVAE, "a MemVAE")
    num_samples = validation.num_samples(num_samples)
    layers = [i for i, slots in enumerate(model.num_slots) if slots > 0]
    if not layers:
        raise ValueError("the model has no memory to disable (all num_slots are 0)")
    z = np.random.default_rng(seed).standard_normal((num_samples, model.latent_dim)).astype(np.float32)
    depth = len(model.num_slots)
    images = {"memory": model.decode(z)["mean"]}
    for layer in layers:
        images[f"without_layer_{layer}"] = model.decode(z, memory_enabled=tuple(i != layer for i in range(depth)))["mean"]
    images["no_memory"] = model.decode(z, memory_enabled=(False,) * depth)["mean"]
    return {name: np.asarray(value) for name, value in images.items()}


def slot_preferences_per_class(model, batches, num_classes=10, top_k=3):
    """Average slot preferences per class and each class's top-k slots (appendix D, Table 4).

    Preferences f_a are taken at z = posterior mean and normalised to sum to one per
    example (the authors' statistics), then averaged over the examples of each class.

    Args:
        model: a `MemVAE`.
        batches: iterable of `(x, labels)` batches (e.g. `zoo.data.load("mnist", "test",
            with_labels=True, path=...)`).
        num_classes: int, labels are in [0, num_classes).
        top_k: int, slots reported per class.

    Returns:
        list with one dict per memory block, from x upward: `layer`, `mean_preferences`
        `[num_classes, S]`, `top_slots` and `top_preferences` `[num_classes, top_k]`, `counts` `[num_classes]`.
    """
    _check_model("slot_preferences_per_class", model, MemVAE, "a MemVAE")
    sums, counts = None, np.zeros(num_classes, np.int64)
    for x, labels in batches:
        labels = np.asarray(labels).astype(np.int64)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must be in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
        preferences = [np.asarray(p, np.float64) for p in model.slot_preferences(x)]
        one_hot = np.eye(num_classes)[labels]  # [B, C]
        normalised = [one_hot.T @ (p / p.sum(axis=1, keepdims=True)) for p in preferences]
        sums = normalised if sums is None else [s + n for s, n in zip(sums, normalised)]
        counts += one_hot.sum(axis=0).astype(np.int64)
    if sums is None:
        raise ValueError("the batches gave no examples")
    if not counts.all():
        raise ValueError(f"every class needs examples, got counts {counts.tolist()}")
    layers = [i for i, slots in enumerate(model.num_slots) if slots > 0]
    results = []
    for layer, total in zip(layers, sums):
        mean = total / counts[:, None]
        top = np.argsort(-mean, axis=1, kind="stable")[:, :top_k]
        results.append({
            "layer": layer,
            "mean_preferences": mean,
            "top_slots": top,
            "top_preferences": np.take_along_axis(mean, top, axis=1),
            "counts": counts,
        })
    return results


def class_slot_images(model, preferences, layer=0):
    """Images of each class's preferred slots (VIS-MEM-VAE, Figure 7): `[C, top_k, *input_shape]`.

    Args:
        model: a `MemVAE`, typically softmax attention with the sum composition.
        preferences: the output of `slot_preferences_per_class` for this model.
        layer: int, the hidden layer (from x upward) whose slots are decoded.
    """
    entry = next((p for p in preferences if p["layer"] == layer), None)
    if entry is None:
        raise ValueError(f"no slot preferences for layer {layer}; have layers {[p['layer'] for p in preferences]}")
    return np.asarray(model.slot_images(layer))[entry["top_slots"]]


def recognition_features(model, batches):
    """Encoder features (last deterministic layer) and labels over `(x, labels)` batches: `([N, H], [N])`."""
    features, labels = [], []
    for x, y in batches:
        features.append(np.asarray(model.encoder_features(x)))
        labels.append(np.asarray(y))
    if not features:
        raise ValueError("the batches gave no examples")
    return np.concatenate(features), np.concatenate(labels).astype(np.int64)


def linear_classifier_accuracy(train_features, train_labels, test_features, test_labels, epochs=30, learning_rate=1e-2,
                               l2=1e-4, seed=0):
    """Test accuracy of a linear multi-class SVM (Crammer-Singer hinge, L2) on standardised features.

    The paper's protocol (a linear SVM on the recognition features: VAE 97.90%, MEM-VAE
    98.03% on MNIST) with a Keras linear layer trained by Adam in place of LIBLINEAR.

    Returns:
        dict: `accuracy`, `train_accuracy`, `num_train`, `num_test`.
    """
    import keras

    train_features = np.asarray(train_features, np.float32)
    test_features = np.asarray(test_features, np.float32)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    for name, labels in (("train_labels", train_labels), ("test_labels", test_labels)):
        if labels.ndim != 1 or not labels.size or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise ValueError(f"{name} must be integers >= 0 of shape [N], N >= 1, got dtype {labels.dtype} and shape "
                             f"{labels.shape}" + (f", min {labels.min()}" if labels.ndim == 1 and labels.size else ""))
    if train_features.ndim != 2 or test_features.shape[1:] != train_features.shape[1:]:
        raise ValueError(
            f"features must be [N, D] with the same D, got {train_features.shape} and {test_features.shape}"
        )
    if len(train_labels) != len(train_features) or len(test_labels) != len(test_features):
        raise ValueError("features and labels must have the same number of rows")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    mean, std = train_features.mean(axis=0), train_features.std(axis=0) + 1e-6
    keras.utils.set_random_seed(seed)
    classifier = keras.Sequential([
        keras.Input((train_features.shape[1],)),
        keras.layers.Dense(num_classes, kernel_regularizer=keras.regularizers.L2(l2)),
    ])
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_hinge", metrics=["accuracy"])
    one_hot = np.eye(num_classes, dtype=np.float32)
    classifier.fit((train_features - mean) / std, one_hot[train_labels], epochs=epochs, batch_size=100, verbose=0)

    def accuracy(features, labels):
        scores = classifier.predict((features - mean) / std, batch_size=1000, verbose=0)
        return float(np.mean(np.argmax(scores, axis=1) == labels))

    return {
        "accuracy": accuracy(test_features, test_labels),
        "train_accuracy": accuracy(train_features, train_labels),
        "num_train": int(len(train_labels)),
        "num_test": int(len(test_labels)),
    }
