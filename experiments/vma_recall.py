"""VMA "train to recall" on binarized MNIST (Bornschein et al. 2017, sec. 4.1).

    PYTHONPATH=. TFDS_DATA_DIR=/work/shared/tensorflow_datasets python experiments/vma_recall.py \\
        --model_dir=~/zoo-runs/vma_recall --epochs=10
    python experiments/vma_recall.py --noshared_embedding --model_dir=~/zoo-runs/vma_recall_untied   # h^q = h^m + c r

Every step fills the memory with |M| = 256 examples of the training set and asks the model
for exactly those examples (`zoo.data.episodes.recall_episodes`). With a flat prior p(a) the
best model is a lookup table: it addresses the stored copy (q(a|x) one-hot, so
KL(q(a|x) || p(a)) = log |M|) and reproduces it (log p(x|z, m_a) = 0), so
-log p(x | M) -> log |M| = 5.545 nats.

`vma_mnist_recall` trains through the zoo's run library (`zoo.runs.training.train`, the run
directory of `python -m zoo.train`): the same command resumes an interrupted run, and on a
finished run only evaluates it again. The run's best weights (by the bound on validation
recall episodes) are then scored on 256-entry memories of test images: -log p(x | M)
(importance sampled), the address KL and the recall accuracy argmax_a q(a|x) == the stored
copy. Results, with the training curve, command, commit and machine: `model_dir/recall.json`
(gathered over seeds by experiments/vma_untied_recall.py).
"""

import json
import math
import os
import shlex
import sys
import time

import numpy as np
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's zoo, whose commit is recorded

from zoo.cli import run_app  # noqa: E402
from zoo.runs import provenance  # noqa: E402

PROCESS_START = time.time()
PRESET = "vma_mnist_recall"
RESULT_FILE = "recall.json"

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "~/zoo-runs/vma_recall", "Run directory (outside the repository).")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("steps_per_epoch", 300, "Episodes per epoch.")
flags.DEFINE_integer("memory_size", 256, "|M|, examples stored per episode.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("num_samples", 1000, "Importance samples for the test log-likelihood.")
flags.DEFINE_integer("test_episodes", 4, "Test memories evaluated.")
flags.DEFINE_integer("seed", 0, "Seeds the model and the episode streams.")
flags.DEFINE_bool("shared_embedding", True, "One addressing network (h^q = h^m) or untied ones (StochasticAddress).")
flags.DEFINE_float("residual_scale", None, "Untied only: c in h^q = h^m + c r (StochasticAddress); default: the library's.")
flags.DEFINE_enum("vimco_baseline", None, ["arithmetic", "geometric"], "VIMCO baseline; default: the preset's.")


def overrides():
    """The preset's arguments these flags set."""
    chosen = {"shared_embedding": FLAGS.shared_embedding}
    if FLAGS.residual_scale is not None:
        chosen["residual_scale"] = FLAGS.residual_scale
    if FLAGS.vimco_baseline is not None:
        chosen["vimco_baseline"] = FLAGS.vimco_baseline
    return chosen


def train(model_dir):
    from zoo.runs import config, training

    run = config.resolve_config(PRESET, "binarized_mnist", FLAGS.epochs, learning_rate=FLAGS.learning_rate,
                                seed=FLAGS.seed, overrides=overrides(), episode_memory=FLAGS.memory_size,
                                steps_per_epoch=FLAGS.steps_per_epoch)
    training.train(run, model_dir, verbose=2)


def training_by_epoch(model_dir):
    """`{metric: [value of epoch 1, 2, ...]}`: the epoch means of the training metrics the run logged."""
    from zoo.runs import logs

    return {tag.removeprefix("epoch_"): [value for _, value in sorted(steps.items())]
            for tag, steps in logs.scalars(model_dir, "train").items() if tag.startswith("epoch_")}


def evaluate(model_dir):
    """The test scores of the run's best weights, with its training record and provenance."""
    import zoo
    from zoo.runs import logs, state

    model, _ = state.load_trained_model(model_dir)
    images = np.concatenate([batch.numpy() for batch in zoo.data.load("binarized_mnist", "test", batch_size=10_000,
                                                                      shuffle=False)])
    test = zoo.data.episodes.recall_episodes(images, memory_size=FLAGS.memory_size, num_episodes=FLAGS.test_episodes,
                                             seed=FLAGS.seed + 1, with_labels=True)
    start = time.time()
    likelihood = zoo.analysis.dataset_log_likelihood(model, test, num_samples=FLAGS.num_samples, seed=FLAGS.seed)
    address_kl, recalled = [], []
    for episode in test:
        log_q = model.address_posterior(episode["x"], memory=episode["memory"]).numpy()  # [T, M]
        # With a flat prior, KL(q(a|x) || p(a)) = log |M| - H(q(a|x)).
        address_kl.append(math.log(FLAGS.memory_size) + np.sum(np.exp(log_q) * log_q, axis=-1))
        recalled.append(np.argmax(log_q, axis=-1) == episode["addresses"].numpy())
    by_epoch = training_by_epoch(model_dir)
    machine = provenance.machine()
    return {
        "preset": PRESET,
        "overrides": overrides(),
        "log_memory_size": math.log(FLAGS.memory_size),
        "train_by_epoch": by_epoch,
        "final_epoch_train": {metric: values[-1] for metric, values in by_epoch.items()},
        "train_seconds": logs.training_seconds(model_dir),
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
        "commit": provenance.commit(),
        "cpu": machine["cpu"],
        "cores": machine["cores"],
        "wall_seconds": time.time() - PROCESS_START,  # this invocation: data, training, evaluation
    }


def main(argv):
    del argv
    model_dir = os.path.expanduser(FLAGS.model_dir)
    train(model_dir)
    results = evaluate(model_dir)
    print(json.dumps(results, indent=1))
    with open(os.path.join(model_dir, RESULT_FILE), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    run_app(main)
