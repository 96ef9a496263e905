"""Variance of the VIMCO gradient of VMA's address network with the arithmetic and the geometric baseline.

    python experiments/vimco_baseline_variance.py --model_dir=~/zoo-runs/vimco_variance --train_steps=2000

Trains `vma_mnist_recall` (shared h^q = h^m unless --noshared_embedding) on "train to recall"
episodes of binarized MNIST for --train_steps updates (or loads the weights saved in
--model_dir by an earlier run with the same training flags), then draws --draws fresh episodes
(a 256-entry memory and its 256 targets) and, for each, one forward pass with K samples per target. Both baselines'
surrogates are built from that same pass, so every draw gives a paired pair of gradients of
the loss with respect to the address network's weights (h^q, h^m and, with a learned prior,
e^p). Reported per baseline: the total variance (trace of the covariance over draws), the
squared norm of the mean gradient, and the variance ratio with a paired bootstrap interval.
The same is measured on the weights before training (stage "init"). Writes --out (JSON);
`python experiments/results_md.py --write` puts its table into RESULTS.md.
"""

import json
import os
import sys
import time

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's zoo

from zoo.cli import run_app  # noqa: E402
from zoo.runs import provenance  # noqa: E402
from zoo.runs.errors import UsageError  # noqa: E402
from zoo.runs.files import read_json, write_json  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "~/zoo-runs/vimco_variance", "Where the trained weights are saved / loaded.")
flags.DEFINE_string("out", "experiments/results/vimco_baseline_variance.json", "JSON results.")
flags.DEFINE_integer("train_steps", 2000, "Training updates (Adam 1e-3, the preset's own baseline) before measuring.",
                     lower_bound=1)
flags.DEFINE_integer("draws", 200, "Episodes (minibatch and sample draws) per measurement (a variance: 2 or more).",
                     lower_bound=2)
flags.DEFINE_integer("memory_size", 256, "|M| of the recall episodes (and the number of targets per episode).",
                     lower_bound=1)
flags.DEFINE_bool("shared_embedding", True, "h^q = h^m (the preset's default) or two networks.")
flags.DEFINE_integer("seed", 0, "Seeds the model, the training episodes and the measurement episodes.")


def measure(model, episodes, baselines):
    """Per-draw gradients of each baseline's loss w.r.t. the address weights, paired on one forward pass."""
    import tensorflow as tf

    from zoo import objectives

    weights = model.address.trainable_weights

    @tf.function(jit_compile=True)
    def gradients(x, memory):
        with tf.GradientTape(persistent=True) as tape:
            outputs = model({"x": x, "memory": memory}, training=True)
            log_weights, log_q = tf.transpose(outputs["log_weights"]), tf.transpose(outputs["address_log_prob"])
            losses = [-tf.reduce_mean(objectives.vimco_surrogate(log_weights, log_q, b)) for b in baselines]
        return [tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, weights)], 0) for loss in losses]

    draws = [[] for _ in baselines]
    for episode in episodes:
        for store, g in zip(draws, gradients(episode["x"], episode["memory"])):
            store.append(g.numpy())
    return [np.stack(d).astype(np.float64) for d in draws]  # per baseline [draws, parameters]


def total_variance(gram, rows):
    """Trace of the covariance of the gradients `rows` (with repeats), from their Gram matrix."""
    n = len(rows)
    sub = gram[np.ix_(rows, rows)]
    return (np.trace(sub) / n - sub.sum() / n**2) * n / (n - 1)


def summarise(grads, baselines, rng):
    grams = [g @ g.T for g in grads]  # [draws, draws]: the bootstrap needs only inner products
    everything = np.arange(len(grads[0]))
    stats = {}
    for name, g, gram in zip(baselines, grads, grams):
        stats[name] = {
            "total_variance": float(total_variance(gram, everything)),
            "mean_gradient_squared_norm": float(np.sum(g.mean(axis=0) ** 2)),
        }
    boot = []
    for _ in range(1000):  # paired bootstrap over draws
        rows = rng.integers(0, len(everything), len(everything))
        boot.append(total_variance(grams[0], rows) / total_variance(grams[1], rows))
    stats[f"variance_ratio_{baselines[0]}_over_{baselines[1]}"] = {
        "estimate": stats[baselines[0]]["total_variance"] / stats[baselines[1]]["total_variance"],
        "bootstrap_95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
    }
    # Both estimators are unbiased for the same gradient: their means should agree within noise.
    stats["mean_difference_squared_norm"] = float(np.sum((grads[0].mean(axis=0) - grads[1].mean(axis=0)) ** 2))
    return stats


def main(argv):
    del argv
    start = time.time()
    model_dir = os.path.expanduser(FLAGS.model_dir)
    weights, trained_file = os.path.join(model_dir, "model.weights.h5"), os.path.join(model_dir, "train.json")
    # The weights are reused only by the training they came from (checked before any work).
    training = {"train_steps": FLAGS.train_steps, "seed": FLAGS.seed, "memory_size": FLAGS.memory_size,
                "shared_embedding": FLAGS.shared_embedding}
    if os.path.exists(weights):
        kept = read_json(trained_file).get("training") if os.path.exists(trained_file) else None
        if kept != training:
            raise UsageError(f"--model_dir {model_dir} holds weights of another or an unrecorded training ({kept}), "
                             f"not {training}: pick another --model_dir")
    os.makedirs(model_dir, exist_ok=True)
    import keras  # after the checks: they answer before TensorFlow loads

    import zoo

    images = {
        split: next(iter(zoo.data.load("binarized_mnist", split, batch_size=50_000, shuffle=False))).numpy()
        for split in ("train", "test")
    }
    model = zoo.VMA.from_preset("vma_mnist_recall", seed=FLAGS.seed, shared_embedding=FLAGS.shared_embedding)
    baselines = zoo.objectives.VIMCO_BASELINES
    rng = np.random.default_rng(FLAGS.seed)

    def episodes():
        return zoo.data.episodes.recall_episodes(
            images["test"], memory_size=FLAGS.memory_size, num_episodes=FLAGS.draws, seed=FLAGS.seed + 1
        )

    results = {"init": summarise(measure(model, episodes(), baselines), baselines, rng)}
    train_seconds = 0.0
    if os.path.exists(weights):
        model.load_weights(weights)
    else:
        train_start = time.time()
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(
            zoo.data.episodes.recall_episodes(images["train"], memory_size=FLAGS.memory_size, seed=FLAGS.seed),
            epochs=1, steps_per_epoch=FLAGS.train_steps, verbose=0,
        ).history
        train_seconds = time.time() - train_start
        write_json(trained_file, {"training": training, "metrics": {k: float(v[-1]) for k, v in history.items()}})
        model.save_weights(weights)  # last: weights are only ever beside the record of their training
    with open(trained_file) as f:
        trained = json.load(f)["metrics"]
    results["trained"] = summarise(measure(model, episodes(), baselines), baselines, rng)
    report = {
        "preset": "vma_mnist_recall",
        "shared_embedding": FLAGS.shared_embedding,
        "training_baseline": model.vimco_baseline,
        "train_steps": FLAGS.train_steps,
        "training_metrics_last_epoch": trained,
        "draws": FLAGS.draws,
        "memory_size": FLAGS.memory_size,
        "num_importance_samples": model.num_importance_samples,
        "parameters_measured": int(sum(np.prod(w.shape) for w in model.address.trainable_weights)),
        "stages": results,
        "command": "python " + " ".join(sys.argv),
        "commit": provenance.commit(),
        "cpu": provenance.machine()["cpu"],
        "train_seconds": train_seconds,
        "wall_seconds": time.time() - start,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(report, indent=1))
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    write_json(FLAGS.out, report, indent=1)


if __name__ == "__main__":
    run_app(main)
