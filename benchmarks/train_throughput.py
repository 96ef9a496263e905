"""Training and evaluation throughput of vae_mnist_500_500_100, side by side with a PyTorch peer.

    python benchmarks/train_throughput.py [--rounds=2] [--no-append]

Measures, on binarized MNIST with batch 100, each configuration in its own fresh process (so
thread pools, caches and the two frameworks never share a process), interleaved over
`--rounds` rounds so slow drifts of machine load hit every configuration alike:

- Keras `fit` on the zoo's input pipeline (`zoo.data.load`): the default path, exactly
  `model.compile(); model.fit(ds)`; the same with `keras.layers.Dense` instead of
  `zoo.layers.Dense` (plain Keras); and with XLA (`jit_compile=True`), which the default
  leaves off on CPUs;
- the same model in PyTorch, eager (benchmarks/torch_peer.py), at its default thread count
  and at one thread;
- `log_likelihood` with k = 5000 importance samples, zoo and a PyTorch evaluator doing the same
  chunked sampling under `torch.no_grad()` (examples/s);
- the machine's peak float32 matmul FLOP/s (benchmarks/peak_flops.py), and the fraction of it
  each configuration reaches (matmul FLOPs per example x examples/s).

Appends the raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import argparse
import json
import os
import statistics
import sys
import time

import reporting

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 100
WARMUP_STEPS = 100
TIMED_STEPS = 150
TIMED_EPOCHS = 3
NUM_SAMPLES = 5000

DEFAULT = "zoo default (model.compile())"
PLAIN = "plain Keras (keras.layers.Dense)"
# name -> (compile kwargs, zoo.layers.Dense replaced by keras.layers.Dense)
KERAS_CONFIGS = {
    DEFAULT: ({}, False),
    PLAIN: ({}, True),
    "zoo default with XLA": ({"jit_compile": True}, False),
}
# name -> intra-op threads (None: PyTorch's default).
TORCH_CONFIGS = {"pytorch eager, default threads": None, "pytorch eager, 1 thread": 1}
ZOO_EVAL = f"zoo log_likelihood k={NUM_SAMPLES}"
TORCH_EVAL = f"pytorch log_likelihood k={NUM_SAMPLES}, default threads"
PEAK = "peak matmul"


def _images(split, num):
    import numpy as np

    import zoo

    ds = zoo.data.load("binarized_mnist", split=f"{split}[:{num}]", batch_size=1000, shuffle=False)
    return np.concatenate(list(ds.as_numpy_iterator()))


def keras_worker(compile_kwargs, plain_dense):
    import keras

    import zoo
    from zoo.layers import dense_stack, gaussian_latent, likelihood_head

    if plain_dense:
        for module in (dense_stack, gaussian_latent, likelihood_head):
            module.Dense = keras.layers.Dense

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    model = zoo.VAE.from_preset("vae_mnist_500_500_100", seed=0)
    model.compile(**compile_kwargs)
    data = zoo.data.load("binarized_mnist", split="train", batch_size=BATCH).repeat()
    timer = Timer()
    model.fit(data, epochs=1, steps_per_epoch=WARMUP_STEPS, verbose=0)  # tracing, compilation, cache
    model.fit(data, epochs=TIMED_EPOCHS, steps_per_epoch=TIMED_STEPS, verbose=0, callbacks=[timer])
    return {"examples_per_second": TIMED_STEPS * BATCH / statistics.median(timer.seconds),
            "steps_per_execution": model.steps_per_execution, "jit_compile": bool(model.jit_compile),
            "row_blocks": ", ".join(f"{k[:3]} -> {v}" for k, v in zoo.layers.dense.CHOICES.items()) or "none timed"}


def torch_worker(num_threads):
    import torch_peer

    rate = torch_peer.train_throughput(_images("train", 50_000), batch_size=BATCH, num_steps=TIMED_STEPS * TIMED_EPOCHS,
                                       warmup_steps=WARMUP_STEPS, num_threads=num_threads)
    return {"examples_per_second": rate}


def zoo_eval_worker():
    import zoo

    model = zoo.VAE.from_preset("vae_mnist_500_500_100", seed=0)
    x = _images("test", BATCH)
    model.log_likelihood(x, num_samples=500, seed=0)  # traces the 500-sample chunk used below
    start = time.perf_counter()
    model.log_likelihood(x, num_samples=NUM_SAMPLES, seed=1).numpy()
    return {"examples_per_second": len(x) / (time.perf_counter() - start)}


def torch_eval_worker():
    import torch_peer

    return {"examples_per_second": torch_peer.log_likelihood_throughput(_images("test", BATCH), NUM_SAMPLES)}


def peak_worker():
    import peak_flops

    return {"peak_flops": max(peak_flops.peak_matmul_flops().values())}


WORKERS = {
    **{name: lambda c=config: keras_worker(*c) for name, config in KERAS_CONFIGS.items()},
    **{name: lambda t=threads: torch_worker(t) for name, threads in TORCH_CONFIGS.items()},
    ZOO_EVAL: zoo_eval_worker,
    TORCH_EVAL: torch_eval_worker,
    PEAK: peak_worker,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="print only, do not record the run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    if args.worker:
        print(json.dumps(WORKERS[args.worker]()))
        return
    import peak_flops

    start, load_before = time.perf_counter(), os.getloadavg()
    results = {name: [] for name in WORKERS}
    for round_index in range(args.rounds):
        for name in WORKERS:
            worker_start = time.perf_counter()
            results[name].append(reporting.run_worker(__file__, f"--worker={name}"))
            print(f"round {round_index + 1}/{args.rounds} {name}: {results[name][-1]} "
                  f"({time.perf_counter() - worker_start:.0f} s)", flush=True)
    wall, load_after = time.perf_counter() - start, os.getloadavg()

    peak = statistics.median(r["peak_flops"] for r in results.pop(PEAK))
    rate = {name: statistics.median(r["examples_per_second"] for r in runs) for name, runs in results.items()}
    torch_rate = max(rate[name] for name in TORCH_CONFIGS)
    rows = []
    for name, runs in results.items():
        evaluation = "log_likelihood" in name
        flops = peak_flops.vae_log_likelihood_flops(NUM_SAMPLES) if evaluation else peak_flops.vae_training_flops()
        rows.append({
            "configuration": name,
            "examples/s (median)": rate[name],
            "per round": ", ".join(f"{r['examples_per_second']:,.1f}" for r in runs),
            "vs faster PyTorch": "" if evaluation else f"{rate[name] / torch_rate:.2f}x",
            "% of peak matmul": f"{100 * rate[name] * flops / peak:.1f}%",
        })
    default = results[DEFAULT][0]
    notes = {
        "zoo default compiles with": f"jit_compile={default['jit_compile']}, steps_per_execution={default['steps_per_execution']}",
        "zoo.layers.Dense row blocks chosen in the zoo default's workers, (rows, in, out) -> blocks":
            "; ".join(r["row_blocks"] for r in results[DEFAULT]),
        "peak float32 matmul (GFLOP/s)": round(peak / 1e9, 1),
        "zoo default / faster PyTorch (target >= 1.0x, goal 1.2x)": f"{rate[DEFAULT] / torch_rate:.2f}x",
        "zoo default / plain Keras (target >= 1.0x)": f"{rate[DEFAULT] / rate[PLAIN]:.2f}x",
        "zoo log_likelihood / PyTorch evaluator (target >= 1.2x)": f"{rate[ZOO_EVAL] / rate[TORCH_EVAL]:.2f}x",
    }
    reporting.record("train_throughput", rows, wall, (load_before[0], load_after[0]), notes, append=not args.no_append)


if __name__ == "__main__":
    main()
