"""Generative few-shot learning with VMA on Omniglot (Bornschein et al. 2017, sec. 4.2 and Figure 5).

    python benchmarks/vma_omniglot.py --mode=train --model_dir=runs/vma_omniglot --epochs=40
    python benchmarks/vma_omniglot.py --mode=evaluate --model_dir=runs/vma_omniglot

Training: the convolutional VMA (preset `vma_omniglot_conv`) with the memory given per batch, on episodes of the
alphabet-disjoint training split (`zoo.data.omniglot`): C = 8 characters from random
alphabets, 4 targets each, `--memory_per_class` other drawings of each in memory. Training
resumes from `model_dir/backup` after an interruption; `model_dir/model.weights.h5` holds the
latest weights and `model_dir/history.csv` the per-epoch metrics.

Evaluation (held-out alphabets only): -log p(x | memory) with K = 1000 importance samples
as the memory grows (classes x examples per class, Figure 5), and N-way K-shot accuracy of
`VMA.classify` (5/20-way, 1/5-shot). Results go to `model_dir/evaluation.json`.
"""

import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "What to run.")
flags.DEFINE_string("model_dir", "runs/vma_omniglot", "Checkpoints, history and results.")
flags.DEFINE_string("data_path", None, "Directory of Lake's Omniglot archives (default: zoo.data.omniglot's search).")
flags.DEFINE_integer("epochs", 40, "Training epochs.")
flags.DEFINE_integer("steps_per_epoch", 250, "Episodes per epoch.")
flags.DEFINE_integer("num_classes", 8, "Characters per training episode.")
flags.DEFINE_integer("targets_per_class", 4, "Target drawings per character in training episodes (paper: 4).")
flags.DEFINE_integer("memory_per_class", 4, "Memory drawings per character in training episodes.")
flags.DEFINE_float("learning_rate", 3e-4, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "Seeds the model and the episode streams.")
flags.DEFINE_integer("num_samples", 1000, "Importance samples for the conditional NLL.")
flags.DEFINE_list("sweep_classes", ["1", "4", "16"], "Memory classes for the NLL sweep.")
flags.DEFINE_list("sweep_per_class", ["1", "2", "4", "8", "16"], "Memory drawings per class for the NLL sweep.")
flags.DEFINE_integer("sweep_targets", 8, "Targets per sweep point (one per memory class and episode).")
flags.DEFINE_integer("few_shot_episodes", 300, "Episodes per N-way K-shot setting.")


def build_model():
    import keras

    import zoo

    model = zoo.VMA.from_preset("vma_omniglot_conv", seed=FLAGS.seed)
    model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate))
    return model


def train():
    import keras

    import zoo

    os.makedirs(FLAGS.model_dir, exist_ok=True)
    episodes = zoo.data.omniglot.episodes(
        "train", num_classes=FLAGS.num_classes, num_targets=FLAGS.targets_per_class, num_memory=FLAGS.memory_per_class,
        seed=FLAGS.seed, path=FLAGS.data_path,
    )
    model = build_model()
    start = time.time()
    model.fit(
        episodes, epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, verbose=2,
        callbacks=[
            keras.callbacks.BackupAndRestore(os.path.join(FLAGS.model_dir, "backup")),
            keras.callbacks.ModelCheckpoint(os.path.join(FLAGS.model_dir, "model.weights.h5"), save_weights_only=True),
            keras.callbacks.CSVLogger(os.path.join(FLAGS.model_dir, "history.csv"), append=True),
        ],
    )
    print(f"training wall time this invocation: {time.time() - start:.0f} s")


def evaluate():
    import zoo

    model = build_model()
    model.load_weights(os.path.join(FLAGS.model_dir, "model.weights.h5"))
    common = dict(path=FLAGS.data_path)
    results = {"preset": "vma_omniglot_conv", "split_test_alphabets": zoo.data.omniglot.read("test", **common)["test_alphabets"]}
    start = time.time()
    results["memory_size_sweep"] = zoo.evaluation.memory_size_sweep(
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
    for ways, shots in ((5, 1), (5, 5), (20, 1), (20, 5)):
        episodes = zoo.data.omniglot.few_shot_episodes(
            "test", ways=ways, shots=shots, queries_per_class=1, num_episodes=FLAGS.few_shot_episodes,
            seed=FLAGS.seed + 2, **common,
        )
        results["few_shot"].append(zoo.evaluation.few_shot_accuracy(model, episodes))
        print(json.dumps(results["few_shot"][-1]))
    results["evaluation_seconds"] = time.time() - start
    with open(os.path.join(FLAGS.model_dir, "evaluation.json"), "w") as f:
        json.dump(results, f, indent=1)


def main(argv):
    del argv
    train() if FLAGS.mode == "train" else evaluate()


if __name__ == "__main__":
    app.run(main)
