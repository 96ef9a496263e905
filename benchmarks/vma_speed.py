"""Hard (VMA) vs soft memory addressing: training updates per second as the memory grows, and test-time readout.

    python benchmarks/vma_speed.py [--noappend]

Bornschein et al. (2017) report that sampling one address becomes faster per update than
soft attention over the whole memory from |M| >= 48 on. Both models here are the Omniglot
convolutional networks of the zoo with the memory given per batch (`vma_omniglot_conv` and
the soft-attention baseline with the same encoder/decoder), compiled in graph mode with one
step per call (XLA with `--jit_compile`) and trained with `train_on_batch` on a fixed batch of `--batch_size` targets and |M|
random binary memory entries. Per memory size both models are built and warmed up (tracing),
then timed in alternating blocks of `--timed_steps` updates over `--rounds` rounds, so
load that comes and goes hits both alike; the table gives the median updates/s over rounds
and the ratio of the medians.

Readout: with `--readout_entries` memory entries, the time to classify a batch of queries
(VMA: q(a|x) over all entries) and to reconstruct it (VMA: argmax address, posterior mean;
baseline: attention read), after warm-up.

Appends the raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import os
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("memory_sizes", ["16", "32", "48", "128", "512", "2048"], "Memory sizes |M| to time.")
flags.DEFINE_integer("batch_size", 32, "Targets per update.")
flags.DEFINE_integer("warmup_steps", 2, "Untimed updates per model and memory size (tracing, compilation).")
flags.DEFINE_integer("timed_steps", 5, "Updates per timed block.")
flags.DEFINE_integer("rounds", 5, "Timed blocks per model and memory size, alternating between the models.")
flags.DEFINE_integer("readout_entries", 2560, "Memory entries for the test-time readout.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (compilation takes minutes per setting here).")
flags.DEFINE_bool("append", True, "Record the run (history.jsonl, RESULTS.md); --noappend only prints it.")


def models():
    import zoo

    return {
        "VMA": lambda: zoo.VMA.from_preset("vma_omniglot_conv", seed=0),
        "soft attention": lambda: zoo.SoftAttentionVAE.from_preset("soft_attention_omniglot_conv", seed=0),
    }


def binary(shape, seed):
    return (np.random.default_rng(seed).random(shape) < 0.2).astype(np.float32)


def updates_per_second(memory_size):
    """{model name: [updates/s of each round]} at this memory size, the models alternating over rounds."""
    batch = {"x": binary((FLAGS.batch_size, 28, 28, 1), 0), "memory": binary((memory_size, 28, 28, 1), 1)}
    built = {}
    for name, build in models().items():
        built[name] = build()
        built[name].compile(jit_compile=FLAGS.jit_compile, steps_per_execution=1)  # one update per call
        for _ in range(FLAGS.warmup_steps):
            built[name].train_on_batch(batch)
    rates = {name: [] for name in built}
    for _ in range(FLAGS.rounds):
        for name, model in built.items():
            start = time.perf_counter()
            for _ in range(FLAGS.timed_steps):
                model.train_on_batch(batch)  # returns the metrics as numbers: the update has run
            rates[name].append(FLAGS.timed_steps / (time.perf_counter() - start))
    return rates


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
    import reporting

    start, load_before = time.perf_counter(), os.getloadavg()
    rows = []
    for memory_size in [int(m) for m in FLAGS.memory_sizes]:
        rates = updates_per_second(memory_size)
        vma, soft = (float(np.median(rates[name])) for name in ("VMA", "soft attention"))
        rows.append({"|M|": memory_size, "VMA updates/s": vma, "soft attention updates/s": soft,
                     "VMA / soft attention": f"{vma / soft:.2f}x",
                     "per round, VMA / soft attention": ", ".join(
                         f"{v:.2f} / {s:.2f}" for v, s in zip(rates["VMA"], rates["soft attention"]))})
        print(rows[-1], flush=True)

    queries = binary((FLAGS.batch_size, 28, 28, 1), 2)
    memory = binary((FLAGS.readout_entries, 28, 28, 1), 3)
    labels = np.arange(FLAGS.readout_entries) % 20
    built = {name: build() for name, build in models().items()}
    notes = {
        "batch size, warm-up updates, updates per timed block, rounds, XLA": f"{FLAGS.batch_size}, {FLAGS.warmup_steps}, {FLAGS.timed_steps}, {FLAGS.rounds}, {FLAGS.jit_compile}",
        f"readout with {FLAGS.readout_entries} entries, {FLAGS.batch_size} queries: VMA classify (s)":
            best_seconds(lambda: built["VMA"].classify(queries, memory, labels).numpy()),
        **{
            f"readout: {name} reconstruct (s)": best_seconds(lambda m=model: np.asarray(m.reconstruct(queries, memory=memory)))
            for name, model in built.items()
        },
    }
    reporting.record("vma_speed", rows, time.perf_counter() - start, (load_before[0], os.getloadavg()[0]), notes,
                     append=FLAGS.append)


if __name__ == "__main__":
    app.run(main)
