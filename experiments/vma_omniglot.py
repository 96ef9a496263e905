"""Generative few-shot learning with VMA on Omniglot (Bornschein et al. 2017, sec. 4.2 and Figure 5).

    PYTHONPATH=. python experiments/vma_omniglot.py --model_dir=~/zoo-runs/vma_omniglot --epochs=40

Training: the convolutional VMA (preset `vma_omniglot_conv`) with the memory given per batch,
through the zoo's run library (`zoo.runs.training.train`, the run directory of
`python -m zoo.train`), on episodes of the alphabet-disjoint training split
(`zoo.data.omniglot`): C = 8 characters from random alphabets, 4 targets each,
`--memory_per_class` other drawings of each in memory. The same command resumes an interrupted
run, and on a finished run only evaluates it again.

Evaluation of the run's best weights (by training bound: Omniglot has no validation split), on
held-out alphabets only: -log p(x | memory) with K = 1000 importance samples as the memory grows
(classes x examples per class, Figure 5), and N-way K-shot accuracy of `VMA.classify`
(5/20-way, 1/5-shot). Results, with the command, commit and machine: `model_dir/vma_omniglot.json`
(beside the run library's own files).
"""

import json
import os
import shlex
import sys
import time

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's zoo, whose commit is recorded

from zoo.cli import run_app  # noqa: E402
from zoo.runs import provenance  # noqa: E402
from zoo.runs.files import write_json  # noqa: E402

PROCESS_START = time.time()
PRESET = "vma_omniglot_conv"
RESULT_FILE = "vma_omniglot.json"
FEW_SHOT = ((5, 1), (5, 5), (20, 1), (20, 5))  # (ways, shots)

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "~/zoo-runs/vma_omniglot", "Run directory (outside the repository).")
flags.DEFINE_string("data_path", None, "Directory of Lake's Omniglot archives (default: zoo.data.omniglot's search).")
flags.DEFINE_integer("epochs", 40, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", 250, "Episodes per epoch.", lower_bound=1)
flags.DEFINE_integer("num_classes", 8, "Characters per training episode.", lower_bound=1)
flags.DEFINE_integer("targets_per_class", 4, "Target drawings per character in training episodes (paper: 4).",
                     lower_bound=1)
flags.DEFINE_integer("memory_per_class", 4, "Memory drawings per character in training episodes.", lower_bound=1)
flags.DEFINE_float("learning_rate", 3e-4, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "Seeds the model and the episode streams.")
flags.DEFINE_integer("num_samples", 1000, "Importance samples for the conditional NLL.", lower_bound=1)
flags.DEFINE_list("sweep_classes", ["1", "4", "16"], "Memory classes for the NLL sweep.")
flags.DEFINE_list("sweep_per_class", ["1", "2", "4", "8", "16"], "Memory drawings per class for the NLL sweep.")
for _name in ("sweep_classes", "sweep_per_class"):  # checked with the other flags, not after training
    flags.register_validator(_name, lambda values: bool(values) and all(v.isdigit() and int(v) >= 1 for v in values),
                             message="must be a comma-separated list of ints >= 1")
flags.DEFINE_integer("sweep_targets", 8, "Targets per sweep point (one per memory class and episode).", lower_bound=1)
flags.DEFINE_integer("few_shot_episodes", 300, "Episodes per N-way K-shot setting.", lower_bound=1)


def train(model_dir):
    from zoo.runs import config, training

    run = config.resolve_config(PRESET, "omniglot", FLAGS.epochs, learning_rate=FLAGS.learning_rate, seed=FLAGS.seed,
                                data_path=FLAGS.data_path, episode_classes=FLAGS.num_classes,
                                episode_targets=FLAGS.targets_per_class, episode_memory=FLAGS.memory_per_class,
                                steps_per_epoch=FLAGS.steps_per_epoch)
    training.train(run, model_dir, verbose=2)


def evaluate(model_dir):
    """The memory-size sweep and few-shot accuracies of the run's best weights, with provenance."""
    import zoo
    from zoo.runs import logs, state

    model, _ = state.load_trained_model(model_dir)
    common = dict(path=FLAGS.data_path)
    results = {"preset": PRESET, "split_test_alphabets": zoo.data.omniglot.read("test", **common)["test_alphabets"]}
    start = time.time()
    results["memory_size_sweep"] = zoo.analysis.memory_size_sweep(
        model,
        lambda classes, per_class: zoo.data.omniglot.episodes(
            "test", num_classes=classes, num_targets=1, num_memory=per_class,
            num_episodes=-(-FLAGS.sweep_targets // classes),
            seed=FLAGS.seed + 1, class_sampling="character", **common,
        ),
        num_classes=[int(c) for c in FLAGS.sweep_classes],
        examples_per_class=[int(n) for n in FLAGS.sweep_per_class],
        num_samples=FLAGS.num_samples,
        seed=FLAGS.seed,
    )
    for row in results["memory_size_sweep"]:
        print(json.dumps(row))
    results["few_shot"] = []
    for ways, shots in FEW_SHOT:
        episodes = zoo.data.omniglot.few_shot_episodes(
            "test", ways=ways, shots=shots, queries_per_class=1, num_episodes=FLAGS.few_shot_episodes,
            seed=FLAGS.seed + 2, **common,
        )
        results["few_shot"].append(zoo.analysis.few_shot_accuracy(model, episodes))
        print(json.dumps(results["few_shot"][-1]))
    machine = provenance.machine()
    results.update(
        evaluation_seconds=time.time() - start,
        train_seconds=logs.training_seconds(model_dir),
        command=shlex.join(["python", *sys.argv]),
        commit=provenance.commit(),
        cpu=machine["cpu"],
        cores=machine["cores"],
        wall_seconds=time.time() - PROCESS_START,  # this invocation: training, evaluation
    )
    return results


def main(argv):
    del argv
    model_dir = os.path.expanduser(FLAGS.model_dir)
    train(model_dir)
    results = evaluate(model_dir)
    write_json(os.path.join(model_dir, RESULT_FILE), results, indent=1)


if __name__ == "__main__":
    run_app(main)
