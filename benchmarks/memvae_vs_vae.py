"""Training throughput of MemVAE vs VAE: examples/s of `fit` with the default compile, same batch, one process.

Models alternate over `--rounds` timed rounds (A B A B ...) so a change in machine load hits
both; the median per model is reported, with the ratio VAE/MemVAE time per example. The
paper (Li et al. 2016, sec. 5.1) says a MEM-VAE epoch costs at most twice a VAE's.

    TFDS_DATA_DIR=../shared/tensorflow_datasets .venv/bin/python benchmarks/memvae_vs_vae.py [--no-append]

Appends the raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import argparse
import os
import statistics
import time

import numpy as np

import reporting
import zoo


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="vae_mnist_500_500_100,vae_mnist_530_530_100,memvae_mnist_500_500_100")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-append", action="store_true", help="print only, do not record the run")
    args = parser.parse_args()
    start_all, load_before = time.perf_counter(), os.getloadavg()
    data = zoo.data.load("binarized_mnist", split="train", batch_size=args.batch_size, shuffle=False)
    x = np.concatenate([np.asarray(b) for b in data.take(args.steps)])
    models = {}
    for preset in args.presets.split(","):
        model = zoo.LatentVariableModel.from_preset(preset, seed=0)
        model.compile()
        model.fit(x[: 2 * args.batch_size], batch_size=args.batch_size, epochs=1, verbose=0)  # compile
        models[preset] = model
    seconds = {preset: [] for preset in models}
    for _ in range(args.rounds):
        for preset, model in models.items():
            start = time.perf_counter()
            model.fit(x, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
            seconds[preset].append(time.perf_counter() - start)
    rate = {p: len(x) / statistics.median(s) for p, s in seconds.items()}
    rows = [{"preset": p, "trainable parameters": models[p].count_params(), "examples/s (median)": r,
             "per round": ", ".join(f"{len(x) / t:,.0f}" for t in seconds[p])} for p, r in rate.items()]
    memory = [p for p in models if p.startswith("memvae")]
    plain = [p for p in models if p.startswith("vae")]
    notes = {f"epoch time {m} / {v} (target <= 1.5x)": f"{rate[v] / rate[m]:.2f}x" for m in memory for v in plain}
    notes["batch size, examples per round, rounds"] = f"{args.batch_size}, {len(x)}, {args.rounds}"
    reporting.record("memvae_vs_vae", rows, time.perf_counter() - start_all, (load_before[0], os.getloadavg()[0]),
                     notes, append=not args.no_append)


if __name__ == "__main__":
    main()
