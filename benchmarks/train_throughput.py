"""Training and evaluation throughput of vae_mnist_500_500_100, side by side with a PyTorch peer.

    python benchmarks/train_throughput.py [--rounds=2] [--no-append]

Measures, on binarized MNIST with batch 100, each configuration in its own fresh process
(so thread pools, XLA caches and the two frameworks never share a process), interleaved over
`--rounds` rounds so slow drifts of machine load hit every configuration alike:

- Keras `fit` (the zoo's real input pipeline, `zoo.data.load`) without XLA, with XLA, with
  XLA and `steps_per_execution`, without XLA with `steps_per_execution`, and the default
  path: exactly `model.compile(); model.fit(ds)`;
- the same architecture in PyTorch, eager (benchmarks/torch_peer.py);
- `log_likelihood` with k = 5000 importance samples (examples/s);
- the machine's peak float32 matmul FLOP/s (benchmarks/peak_flops.py), and the fraction of it
  that each training configuration reaches (matmul FLOPs per example x examples/s).

Prints a table and appends it, with command, commit, machine, load and wall time, to
benchmarks/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import reporting

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 100
WARMUP_STEPS = 100
TIMED_STEPS = 150
TIMED_EPOCHS = 3
SPE = 25

# name -> compile kwargs (None: the zoo's defaults, `model.compile()`).
KERAS_CONFIGS = {
    "keras fit, no XLA": {"jit_compile": False, "steps_per_execution": 1},
    "keras fit, XLA": {"jit_compile": True, "steps_per_execution": 1},
    f"keras fit, XLA, steps_per_execution={SPE}": {"jit_compile": True, "steps_per_execution": SPE},
    f"keras fit, no XLA, steps_per_execution={SPE}": {"jit_compile": False, "steps_per_execution": SPE},
    "keras fit, zoo default (model.compile())": None,
}


def _train_images(num):
    import numpy as np

    import zoo

    ds = zoo.data.load("binarized_mnist", split=f"train[:{num}]", batch_size=1000, shuffle=False)
    return np.concatenate(list(ds.as_numpy_iterator()))


def keras_worker(compile_kwargs):
    import keras

    import zoo

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    model = zoo.VAE.from_preset("vae_mnist_500_500_100", seed=0)
    model.compile(**(compile_kwargs or {}))
    data = zoo.data.load("binarized_mnist", split="train", batch_size=BATCH).repeat()
    timer = Timer()
    model.fit(data, epochs=1, steps_per_epoch=WARMUP_STEPS, verbose=0)  # tracing, compilation, cache
    model.fit(data, epochs=TIMED_EPOCHS, steps_per_epoch=TIMED_STEPS, verbose=0, callbacks=[timer])
    return {"examples_per_second": TIMED_STEPS * BATCH / statistics.median(timer.seconds),
            "steps_per_execution": model.steps_per_execution, "jit_compile": bool(model.jit_compile)}


def torch_worker(num_threads):
    import torch_peer

    images = _train_images(50_000)
    rate = torch_peer.train_throughput(images, batch_size=BATCH, num_steps=TIMED_STEPS * TIMED_EPOCHS,
                                       warmup_steps=WARMUP_STEPS, num_threads=num_threads)
    return {"examples_per_second": rate}


def eval_worker(num_samples=5000):
    import zoo

    model = zoo.VAE.from_preset("vae_mnist_500_500_100", seed=0)
    x = next(iter(zoo.data.load("binarized_mnist", split="test[:100]", batch_size=100, shuffle=False)))
    model.log_likelihood(x, num_samples=500, seed=0)  # traces the 500-sample chunk used below
    start = time.perf_counter()
    model.log_likelihood(x, num_samples=num_samples, seed=1).numpy()
    return {"examples_per_second": len(x) / (time.perf_counter() - start)}


def peak_worker():
    import peak_flops

    return {"peak_flops": max(peak_flops.peak_matmul_flops().values())}


def _run_worker(name):
    start = time.perf_counter()
    result = reporting.run_worker(__file__, f"--worker={name}")
    print(f"  {name}: {result} ({time.perf_counter() - start:.0f} s)", flush=True)
    return result


# name -> intra-op threads (None: PyTorch's default).
TORCH_CONFIGS = {"pytorch eager (peer), default threads": None, "pytorch eager (peer), 1 thread": 1}


def _worker_names():
    return list(KERAS_CONFIGS) + list(TORCH_CONFIGS) + ["log_likelihood k=5000", "peak matmul"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="print only, do not append to RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, HERE)
        if args.worker in KERAS_CONFIGS:
            result = keras_worker(KERAS_CONFIGS[args.worker])
        elif args.worker in TORCH_CONFIGS:
            result = torch_worker(TORCH_CONFIGS[args.worker])
        elif args.worker.startswith("log_likelihood"):
            result = eval_worker()
        else:
            result = peak_worker()
        print(json.dumps(result))
        return

    sys.path.insert(0, HERE)
    import peak_flops

    start, load_before = time.perf_counter(), os.getloadavg()
    results = {name: [] for name in _worker_names()}
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds}", flush=True)
        for name in _worker_names():
            results[name].append(_run_worker(name))
    wall, load_after = time.perf_counter() - start, os.getloadavg()

    peak = statistics.median(r["peak_flops"] for r in results.pop("peak matmul"))
    flops = peak_flops.vae_training_flops()
    # The peer is its faster thread setting in this run.
    torch_rate = max(statistics.median(r["examples_per_second"] for r in results[name]) for name in TORCH_CONFIGS)
    rows = ["| configuration | examples/s (median) | per round | vs best PyTorch | % of peak matmul FLOP/s |",
            "| --- | ---: | --- | ---: | ---: |"]
    for name, runs in results.items():
        rates = [r["examples_per_second"] for r in runs]
        rate = statistics.median(rates)
        evaluation = name.startswith("log_likelihood")
        per_example = peak_flops.vae_log_likelihood_flops(5000) if evaluation else flops
        ratio = "" if evaluation else f"{rate / torch_rate:.2f}x"
        rows.append(f"| {name} | {rate:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} | {ratio} | "
                    f"{100 * rate * per_example / peak:.1f}% |")
    default = results["keras fit, zoo default (model.compile())"][0]
    table = "\n".join(rows)
    report = f"""
## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {reporting.git_commit()}

- command: `python benchmarks/train_throughput.py --rounds={args.rounds}` (each configuration in a fresh
  process, configurations interleaved, {args.rounds} rounds; Keras: {TIMED_EPOCHS} timed epochs of
  {TIMED_STEPS} steps after {WARMUP_STEPS} warm-up steps, median epoch)
- machine: 2-core Intel Xeon (Sapphire Rapids, AVX-512), no GPU; {platform.python_version()}; load average
  {load_before[0]:.1f} at start, {load_after[0]:.1f} at end (other engineers' jobs share the 2 cores, so
  absolute numbers are low and noisy; compare ratios inside this run)
- wall time: {wall / 60:.1f} min
- model: vae_mnist_500_500_100 (1,440,984 parameters), batch {BATCH}, Adam; binarized MNIST train split
- zoo default path = `model.compile()` -> jit_compile={default['jit_compile']},
  steps_per_execution={default['steps_per_execution']}
- peak float32 matmul: {peak / 1e9:.0f} GFLOP/s (best of TF/XLA and PyTorch square matmuls);
  training = {flops / 1e6:.2f} MFLOP/example (matmuls, forward + backward);
  log_likelihood k=5000 = {peak_flops.vae_log_likelihood_flops(5000) / 1e9:.2f} GFLOP/example

{table}
"""
    print(report)
    if not args.no_append:
        reporting.append(report)


if __name__ == "__main__":
    main()
