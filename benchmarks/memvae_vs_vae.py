"""Training throughput of presets in one process: MemVAE vs VAE, the hierarchies vs the VAE, ways to compile.

Every model is compiled with the defaults (`model.compile()`) and built in this one process; with
`--variants`, each preset is also built and compiled each other way (`xla`: `jit_compile=True`;
`mixed_bfloat16`: that Keras dtype policy, as `zoo.train --mixed_precision=mixed_bfloat16` builds it;
float16 needs loss scaling and has no fast path on most CPUs, so it is not offered). Their Keras train
functions (one call = `steps_per_execution` steps on the binarized-MNIST training pipeline) alternate
over `--rounds` timed rounds (A B C A B C ...), so a change in machine load hits all of them; the median
per model is reported, with the ratio of time per example. The
paper (Li et al. 2016, sec. 5.1) says a MEM-VAE epoch costs at most twice a VAE's.

    TFDS_DATA_DIR=../shared/tensorflow_datasets .venv/bin/python benchmarks/memvae_vs_vae.py [--no-append]
    TFDS_DATA_DIR=../shared/tensorflow_datasets .venv/bin/python benchmarks/memvae_vs_vae.py \
        --benchmark=hierarchies_throughput --presets=vae_mnist_500_500_100,iwae_mnist_2layer,ladder_vae_mnist
    TFDS_DATA_DIR=../shared/tensorflow_datasets .venv/bin/python benchmarks/memvae_vs_vae.py \
        --benchmark=training_variants --presets=pixelvae_hierarchical_mnist --batch_size=32 \
        --variants=mixed_bfloat16,xla --rounds=3

Appends the raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import argparse
import os
import statistics
import time

import numpy as np

import reporting
import zoo
from zoo.runs import config

DEFAULT = "default"
VARIANTS = ("xla", "mixed_bfloat16")


def build(preset, variant):
    """`preset` compiled the default way or as `variant` says (see the module docstring)."""
    mixed_precision = "mixed_bfloat16" if variant == "mixed_bfloat16" else None
    model = config.build_model({"preset": preset, "overrides": {"seed": 0}, "mixed_precision": mixed_precision})
    if variant == "xla":
        model.compile(jit_compile=True)
    else:
        model.compile()
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="vae_mnist_500_500_100,vae_mnist_530_530_100,memvae_mnist_500_500_100")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--benchmark", default="memvae_vs_vae",
                        choices=["memvae_vs_vae", "hierarchies_throughput", "training_variants"],
                        help="the history entry (and RESULTS.md section) the run goes to")
    parser.add_argument("--variants", default="", help=f"comma-separated, each timed beside the default: {VARIANTS}")
    parser.add_argument("--no-append", action="store_true", help="print only, do not record the run")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        parser.error(f"--variants: expected some of {', '.join(VARIANTS)}; got {args.variants!r}")
    start_all, load_before = time.perf_counter(), os.getloadavg()
    data = zoo.data.load("binarized_mnist", split="train", batch_size=args.batch_size).repeat()
    models, steps, tracing = {}, {}, {}
    for preset in args.presets.split(","):
        for variant in [DEFAULT, *variants]:
            name = preset if variant == DEFAULT else f"{preset}, {variant}"
            model = build(preset, variant)
            model.make_train_function()
            iterator = iter(data)
            start = time.perf_counter()
            model.train_function(iterator)  # tracing
            tracing[name] = time.perf_counter() - start
            models[name] = model
            steps[name] = lambda m=model, it=iterator: np.asarray(m.train_function(it)["loss"])
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
             "examples/s (median)": r, "per round": ", ".join(
                 f"{examples / t:,.0f}" if examples / t >= 100 else f"{examples / t:.2f}" for t in seconds[p]),
             "first call, tracing (s)": tracing[p]}
            for p, r in rate.items()]
    if variants:
        notes = {f"{p}: {v} / default": f"{rate[f'{p}, {v}'] / rate[p]:.2f}x"
                 for p in args.presets.split(",") for v in variants}
    elif args.benchmark == "memvae_vs_vae":
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
