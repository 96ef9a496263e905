"""Hard (VMA) vs soft memory addressing: training updates per second as the memory grows, and test-time readout.

    python benchmarks/vma_speed.py [--noappend]

Bornschein et al. (2017) report that sampling one address becomes faster per update than
soft attention over the whole memory from |M| >= 48 on. Both models here are the Omniglot
convolutional networks of the zoo with the memory given per batch (`vma_omniglot_conv` and
the soft-attention baseline with the same encoder/decoder), trained with `fit` (XLA) on a
fixed batch of `--batch_size` targets and |M| random binary memory entries (graph mode; XLA
with `--jit_compile`, whose compilation takes minutes per setting on 2 cores). Each setting is
warmed up (tracing) and then timed over `--timed_steps` updates in the same `fit` call (a new
`fit` call retraces the step, so timing across calls would count tracing). All settings run in
one process, one after the other, so their ratios are comparable; absolute rates depend on
the other load of the machine.

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
flags.DEFINE_integer("warmup_steps", 2, "Untimed updates per setting (tracing, compilation).")
flags.DEFINE_integer("timed_steps", 3, "Timed updates per setting.")
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


def timed_steps(model, memory_size):
    """Updates per second inside one `fit` call: the first `--warmup_steps` (tracing) are not timed."""
    import keras
    import tensorflow as tf

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    batch = {"x": binary((FLAGS.batch_size, 28, 28, 1), 0), "memory": binary((memory_size, 28, 28, 1), 1)}
    data = tf.data.Dataset.from_tensors(batch).repeat()
    model.compile(jit_compile=FLAGS.jit_compile, steps_per_execution=1)  # a callback per update
    timer = StepTimer()
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=FLAGS.warmup_steps + FLAGS.timed_steps, verbose=0, callbacks=[timer])
    warm = timer.ends[FLAGS.warmup_steps - 1]
    return {
        "updates_per_second": FLAGS.timed_steps / (timer.ends[-1] - warm),
        "timed_updates": FLAGS.timed_steps,
        "warmup_seconds": warm - start,
    }


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
        rates = {name: timed_steps(build(), memory_size)["updates_per_second"] for name, build in models().items()}
        rows.append({"|M|": memory_size, "VMA updates/s": rates["VMA"], "soft attention updates/s": rates["soft attention"],
                     "VMA / soft attention": f"{rates['VMA'] / rates['soft attention']:.2f}x"})
        print(rows[-1], flush=True)

    queries = binary((FLAGS.batch_size, 28, 28, 1), 2)
    memory = binary((FLAGS.readout_entries, 28, 28, 1), 3)
    labels = np.arange(FLAGS.readout_entries) % 20
    built = {name: build() for name, build in models().items()}
    notes = {
        "batch size, warm-up and timed updates per setting, XLA": f"{FLAGS.batch_size}, {FLAGS.warmup_steps}, {FLAGS.timed_steps}, {FLAGS.jit_compile}",
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
