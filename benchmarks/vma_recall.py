"""VMA "train to recall" on binarized MNIST (Bornschein et al. 2017, sec. 4.1).

    python benchmarks/vma_recall.py --model_dir=runs/vma_recall --epochs=10
    python benchmarks/vma_recall.py --mode=evaluate --model_dir=runs/vma_recall   # the saved weights only
    python benchmarks/vma_recall.py --noshared_embedding --model_dir=runs/vma_recall_untied   # h^q = h^m + r

Every step fills the memory with |M| = 256 examples of the training set and asks the model
for exactly those examples (`zoo.data.episodes.recall_episodes`). With a flat prior p(a) the
best model is a lookup table: it addresses the stored copy (q(a|x) one-hot, so
KL(q(a|x) || p(a)) = log |M|) and reproduces it (log p(x|z, m_a) = 0), so
-log p(x | M) -> log |M| = 5.545 nats. The script reports the training curve and, on 256-entry
memories of test images, -log p(x | M) (importance sampled), the address KL and the recall
accuracy argmax_a q(a|x) == the stored copy. Results: `model_dir/recall.json`.
"""

import csv
import json
import math
import os
import shlex
import sys
import time

import numpy as np
from absl import app, flags

import reporting  # benchmarks/reporting.py: commit and machine, read off the machine

PROCESS_START = time.time()

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "Train then evaluate, or evaluate the saved weights.")
flags.DEFINE_string("model_dir", "runs/vma_recall", "Checkpoints, history and results.")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("steps_per_epoch", 300, "Episodes per epoch.")
flags.DEFINE_integer("memory_size", 256, "|M|, examples stored per episode.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("num_samples", 1000, "Importance samples for the test log-likelihood.")
flags.DEFINE_integer("test_episodes", 4, "256-entry test memories evaluated.")
flags.DEFINE_integer("seed", 0, "Seeds the model and the episode streams.")
flags.DEFINE_bool("shared_embedding", True, "One addressing network (h^q = h^m) or untied ones (StochasticAddress).")
flags.DEFINE_float("residual_scale", None, "Untied only: c in h^q = h^m + c r (StochasticAddress); default: the library's.")
flags.DEFINE_enum("vimco_baseline", None, ["arithmetic", "geometric"], "VIMCO baseline; default: the preset's.")


def main(argv):
    del argv
    import keras

    import zoo

    os.makedirs(FLAGS.model_dir, exist_ok=True)
    images = {
        split: next(iter(zoo.data.load("binarized_mnist", split, batch_size=50_000, shuffle=False))).numpy()
        for split in ("train", "test")
    }
    train = zoo.data.episodes.recall_episodes(images["train"], memory_size=FLAGS.memory_size, seed=FLAGS.seed)
    overrides = {"shared_embedding": FLAGS.shared_embedding}
    if FLAGS.residual_scale is not None:
        overrides["residual_scale"] = FLAGS.residual_scale
    if FLAGS.vimco_baseline is not None:
        overrides["vimco_baseline"] = FLAGS.vimco_baseline
    model = zoo.VMA.from_preset("vma_mnist_recall", seed=FLAGS.seed, **overrides)
    model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate))
    weights = os.path.join(FLAGS.model_dir, "model.weights.h5")
    start = time.time()
    if FLAGS.mode == "train":
        model.fit(
            train, epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, verbose=2,
            callbacks=[
                keras.callbacks.BackupAndRestore(os.path.join(FLAGS.model_dir, "backup")),
                keras.callbacks.CSVLogger(os.path.join(FLAGS.model_dir, "history.csv"), append=True),
            ],
        )
        model.save_weights(weights)
    else:
        model.load_weights(weights)
    train_seconds = time.time() - start
    with open(os.path.join(FLAGS.model_dir, "history.csv")) as f:
        last_epoch = list(csv.DictReader(f))[-1]

    test = zoo.data.episodes.recall_episodes(
        images["test"], memory_size=FLAGS.memory_size, num_episodes=FLAGS.test_episodes, seed=FLAGS.seed + 1,
        with_labels=True,
    )
    start = time.time()
    likelihood = zoo.evaluation.dataset_log_likelihood(model, test, num_samples=FLAGS.num_samples, seed=FLAGS.seed)
    address_kl, recalled = [], []
    for episode in test:
        log_q = model.address_posterior(episode["x"], memory=episode["memory"]).numpy()  # [T, M]
        # With a flat prior, KL(q(a|x) || p(a)) = log |M| - H(q(a|x)).
        address_kl.append(math.log(FLAGS.memory_size) + np.sum(np.exp(log_q) * log_q, axis=-1))
        recalled.append(np.argmax(log_q, axis=-1) == episode["addresses"].numpy())
    results = {
        "preset": "vma_mnist_recall",
        "overrides": overrides,
        "log_memory_size": math.log(FLAGS.memory_size),
        "final_epoch_train": {k: float(v) for k, v in last_epoch.items() if v != "NA"},  # CSVLogger: NA = no validation
        "train_seconds_this_invocation": train_seconds,
        "test_nll_nats": likelihood["nll_nats"],
        "test_nll_stderr": likelihood["nll_stderr"],
        "test_bound_nats": likelihood["bound_nats"],
        "test_address_kl": float(np.mean(np.concatenate(address_kl))),
        "test_recall_accuracy": float(np.mean(np.concatenate(recalled))),
        "test_examples": likelihood["examples"],
        "num_samples": FLAGS.num_samples,
        "evaluation_seconds": time.time() - start,
        "seed": FLAGS.seed,
        "command": shlex.join(["python", *sys.argv]),
        "commit": reporting.git_commit(),
        "cpu": reporting.machine()["cpu"],
        "wall_seconds": time.time() - PROCESS_START,  # this invocation: data, training, evaluation
    }
    print(json.dumps(results, indent=1))
    with open(os.path.join(FLAGS.model_dir, "recall.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
