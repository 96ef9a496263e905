"""Training throughput of MemVAE vs VAE: examples/s of XLA-compiled `fit`, same batch, one process.

Models alternate over `--rounds` timed rounds (A B A B ...) so a change in machine load hits
both; the median per model is reported, with the ratio VAE/MemVAE time per example. The
paper (Li et al. 2016, sec. 5.1) says a MEM-VAE epoch costs at most twice a VAE's.

    TFDS_DATA_DIR=../shared/tensorflow_datasets .venv/bin/python benchmarks/memvae_vs_vae.py
"""

import argparse
import json
import statistics
import subprocess
import time

import numpy as np

import zoo


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="vae_mnist_500_500_100,vae_mnist_530_530_100,memvae_mnist_500_500_100")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
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
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "commit": commit,
        "batch_size": args.batch_size,
        "examples_per_round": len(x),
        "rounds": args.rounds,
        "examples_per_second": {p: len(x) / statistics.median(s) for p, s in seconds.items()},
    }
    base = result["examples_per_second"]
    memory = [p for p in models if p.startswith("memvae")]
    plain = [p for p in models if p.startswith("vae")]
    result["slowdown"] = {f"{m} / {v}": base[v] / base[m] for m in memory for v in plain}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
