"""Training throughput of presets side by side (MemVAE vs VAE; the hierarchies vs the VAE), one process.

Every model is compiled with the defaults (`model.compile()`) and built in this one process;
their Keras train functions (one call = `steps_per_execution` steps on the binarized-MNIST
training pipeline) alternate over `--rounds` timed rounds (A B C A B C ...), so a change in
machine load hits all of them; the median per model is reported, with the ratio of time per example. The
paper (Li et al. 2016, sec. 5.1) says a MEM-VAE epoch costs at most twice a VAE's.

    TFDS_DATA_DIR=../shared/tensorflow_datasets .venv/bin/python benchmarks/memvae_vs_vae.py [--no-append]
    TFDS_DATA_DIR=../shared/tensorflow_datasets .venv/bin/python benchmarks/memvae_vs_vae.py \
        --benchmark=hierarchies_throughput --presets=vae_mnist_500_500_100,iwae_mnist_2layer,ladder_vae_mnist

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
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--benchmark", default="memvae_vs_vae", choices=["memvae_vs_vae", "hierarchies_throughput"],
                        help="the history entry (and RESULTS.md section) the run goes to")
    parser.add_argument("--no-append", action="store_true", help="print only, do not record the run")
    args = parser.parse_args()
    start_all, load_before = time.perf_counter(), os.getloadavg()
    data = zoo.data.load("binarized_mnist", split="train", batch_size=args.batch_size).repeat()
    models, steps = {}, {}
    for preset in args.presets.split(","):
        model = zoo.LatentVariableModel.from_preset(preset, seed=0)
        model.compile()
        model.make_train_function()
        iterator = iter(data)
        model.train_function(iterator)  # tracing
        models[preset] = model
        steps[preset] = lambda m=model, it=iterator: np.asarray(m.train_function(it)["loss"])
    per_call = models[next(iter(models))].steps_per_execution  # training steps per train_function call
    seconds = {preset: [] for preset in models}
    for _ in range(args.rounds):
        for preset, run in steps.items():
            start = time.perf_counter()
            run()
            seconds[preset].append(time.perf_counter() - start)
    examples = per_call * args.batch_size
    rate = {p: examples / statistics.median(s) for p, s in seconds.items()}
    rows = [{"preset": p, "trainable parameters": sum(int(np.prod(v.shape)) for v in models[p].trainable_weights),
             "examples/s (median)": r, "per round": ", ".join(f"{examples / t:,.0f}" for t in seconds[p])}
            for p, r in rate.items()]
    if args.benchmark == "memvae_vs_vae":
        memory = [p for p in models if p.startswith("memvae")]
        plain = [p for p in models if p.startswith("vae")]
        notes = {f"epoch time {m} / {v} (target <= 1.5x)": f"{rate[v] / rate[m]:.2f}x" for m in memory for v in plain}
    else:
        first = next(iter(models))
        notes = {f"epoch time {p} / {first}": f"{rate[first] / rate[p]:.2f}x" for p in list(models)[1:]}
    notes["batch size, steps per timed call, rounds"] = f"{args.batch_size}, {per_call}, {args.rounds}"
    reporting.record(args.benchmark, rows, time.perf_counter() - start_all, (load_before[0], os.getloadavg()[0]),
                     notes, append=not args.no_append)


if __name__ == "__main__":
    main()
