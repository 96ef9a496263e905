"""Hard (VMA) vs soft memory addressing: training updates per second as the memory grows, and test-time readout.

    python benchmarks/vma_speed.py --out=runs/vma_speed.json

Bornschein et al. (2017) report that sampling one address becomes faster per update than
soft attention over the whole memory from |M| >= 48 on. Both models here are the Omniglot
convolutional networks of the zoo with the memory given per batch (`vma_omniglot_conv` and
the soft-attention baseline with the same encoder/decoder), trained with `fit` (XLA) on a
fixed batch of `--batch_size` targets and |M| random binary memory entries (graph mode; XLA
with `--jit_compile`, whose compilation takes minutes per setting on 2 cores). Each setting is
warmed up (compilation) and then timed over at least `--min_seconds`. All settings run in
one process, one after the other, so their ratios are comparable; absolute rates depend on
the other load of the machine.

Readout: with `--readout_entries` memory entries, the time to classify a batch of queries
(VMA: q(a|x) over all entries) and to reconstruct it (VMA: argmax address, posterior mean;
baseline: attention read), after warm-up.
"""

import json
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("memory_sizes", ["16", "48", "128", "512", "2048"], "Memory sizes |M| to time.")
flags.DEFINE_integer("batch_size", 32, "Targets per update.")
flags.DEFINE_float("min_seconds", 8.0, "Timed seconds per setting (after warm-up).")
flags.DEFINE_integer("readout_entries", 2560, "Memory entries for the test-time readout.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (compilation takes minutes per setting here).")
flags.DEFINE_string("out", "runs/vma_speed.json", "Where the results go.")


def models():
    import zoo

    return {
        "VMA": lambda: zoo.VMA.from_preset("vma_omniglot_conv", seed=0),
        "soft attention": lambda: zoo.SoftAttentionVAE.from_preset("soft_attention_omniglot_conv", seed=0),
    }


def binary(shape, seed):
    return (np.random.default_rng(seed).random(shape) < 0.2).astype(np.float32)


def timed_steps(model, memory_size):
    """Updates per second of `fit` on a fixed batch, timed after one compiled warm-up epoch."""
    import tensorflow as tf

    batch = {"x": binary((FLAGS.batch_size, 28, 28, 1), 0), "memory": binary((memory_size, 28, 28, 1), 1)}
    data = tf.data.Dataset.from_tensors(batch).repeat()
    model.compile(jit_compile=FLAGS.jit_compile)
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    compile_seconds = time.perf_counter() - start
    steps, elapsed = 0, 0.0
    while elapsed < FLAGS.min_seconds:
        chunk = max(1, steps)  # doubles the timed steps until the time budget is spent
        start = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=chunk, verbose=0)
        elapsed += time.perf_counter() - start
        steps += chunk
    return {"updates_per_second": steps / elapsed, "timed_updates": steps, "warmup_seconds": compile_seconds}


def best_seconds(run, repeats=3):
    run()  # warm-up: tracing and compilation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv):
    del argv
    results = {"batch_size": FLAGS.batch_size, "jit_compile": FLAGS.jit_compile, "training": [], "readout": {}}
    for memory_size in [int(m) for m in FLAGS.memory_sizes]:
        row = {"memory_size": memory_size}
        for name, build in models().items():
            row[name] = timed_steps(build(), memory_size)
        row["vma_speedup"] = row["VMA"]["updates_per_second"] / row["soft attention"]["updates_per_second"]
        results["training"].append(row)
        print(json.dumps(row), flush=True)

    queries = binary((FLAGS.batch_size, 28, 28, 1), 2)
    memory = binary((FLAGS.readout_entries, 28, 28, 1), 3)
    labels = np.arange(FLAGS.readout_entries) % 20
    built = {name: build() for name, build in models().items()}
    vma = built["VMA"]
    results["readout"] = {
        "memory_entries": FLAGS.readout_entries,
        "queries": FLAGS.batch_size,
        "VMA classify seconds": best_seconds(lambda: vma.classify(queries, memory, labels).numpy()),
        **{
            f"{name} reconstruct seconds": best_seconds(lambda m=model: np.asarray(m.reconstruct(queries, memory)))
            for name, model in built.items()
        },
    }
    print(json.dumps(results["readout"]), flush=True)
    with open(FLAGS.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
