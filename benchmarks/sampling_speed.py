"""Sampling speed: an NVAE-style hierarchy against the same hierarchy with a PixelCNN decoder, ms per image.

    python benchmarks/sampling_speed.py [--batch_size=16 --rounds=5 --noappend]

Vahdat & Kautz (2020) sample NVAE in 5.1 ms per image against PixelCNN++'s 8,898.75 ms on a
Titan V at batch 16, about 1,700x. Here both models sample 28x28 binarized-MNIST images on
this CPU: `nvae_mnist_small` (one top-down pass) and `pixelvae_hierarchical_mnist` (the same
latent hierarchy, then its PixelCNN drawn pixel by pixel in one compiled loop), with the
no-concatenation ablation beside them (the PixelCNN without the image input: one pass).
Untrained weights: the work per image does not depend on the weights. Each model is traced
once, then timed over `--rounds` calls of `model.sample(batch_size, seed=...)` with the
models interleaved, in one process; the median per image is reported.

Appends the raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import os
import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 16, "Images per sample call (the NVAE paper's 16).")
flags.DEFINE_integer("rounds", 5, "Timed calls per model.")
flags.DEFINE_bool("append", True, "Record the run (history.jsonl, RESULTS.md); --noappend only prints it.")

PRESETS = ("nvae_mnist_small", "pixelvae_hierarchical_mnist", "pixelvae_hierarchical_mnist_no_concatenation")
# Vahdat & Kautz 2020, sec. 5: ms per image at batch 16 on a Titan V.
PAPER = {"NVAE": 5.1, "PixelCNN++": 8898.75}


def main(argv):
    del argv
    import numpy as np

    import reporting
    import zoo

    start, load_before = time.perf_counter(), os.getloadavg()
    models = {name: zoo.LatentVariableModel.from_preset(name, seed=0) for name in PRESETS}
    traced = {}
    for name, model in models.items():
        t = time.perf_counter()
        np.asarray(model.sample(FLAGS.batch_size, seed=0))
        traced[name] = time.perf_counter() - t
    seconds = {name: [] for name in models}
    for round_ in range(FLAGS.rounds):
        for name, model in models.items():
            t = time.perf_counter()
            np.asarray(model.sample(FLAGS.batch_size, seed=round_ + 1))
            seconds[name].append(time.perf_counter() - t)
    per_image = {name: 1000 * statistics.median(s) / FLAGS.batch_size for name, s in seconds.items()}
    rows = [
        {
            "preset": name,
            "ms per image": round(per_image[name], 2),
            "range (ms per image)": f"{1000 * min(s) / FLAGS.batch_size:.2f}-{1000 * max(s) / FLAGS.batch_size:.2f}",
            "x nvae_mnist_small": f"{per_image[name] / per_image['nvae_mnist_small']:.1f}x",
            "first call (tracing), s": round(traced[name], 1),
        }
        for name, s in seconds.items()
    ]
    for row in rows:
        print(row, flush=True)
    notes = {
        "batch size, timed calls per model": f"{FLAGS.batch_size}, {FLAGS.rounds}",
        "paper (Vahdat & Kautz 2020, Titan V, batch 16): NVAE, PixelCNN++ ms per image, ratio":
            f"{PAPER['NVAE']}, {PAPER['PixelCNN++']}, {PAPER['PixelCNN++'] / PAPER['NVAE']:.0f}x",
    }
    reporting.record("sampling_speed", rows, time.perf_counter() - start, (load_before[0], os.getloadavg()[0]), notes,
                     append=FLAGS.append)


if __name__ == "__main__":
    app.run(main)
