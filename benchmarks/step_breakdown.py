"""Where a training step of vae_mnist_500_500_100 spends its time: in-process interleaved A/B.

    python benchmarks/step_breakdown.py [--rounds=30] [--no-append]

Separate processes on a shared 2-core machine differ by more than the effects measured
here. So every variant of both frameworks is built in this one process and timed
in alternating blocks of 25 steps, `--rounds` times; the median per variant is reported,
and the PyTorch peer's step time over the zoo default's, per round (median and quartiles).

- TensorFlow (Keras `train_function`, 25 steps per execution, random binary batches of 100):
  the zoo default; with `keras.layers.Dense` instead of `zoo.layers.Dense`; without batch
  normalization.
- PyTorch (benchmarks/torch_peer.py, eager): the peer, and the peer without batch normalization.
- The products behind `zoo.layers.Dense`: 100x784 @ 784x500 and 100x500 @ 500x784 float32
  matmuls (the first encoder layer and the logits layer at batch 100), as `tf.matmul`, as
  `zoo.layers.dense.blocked_matmul` in two row blocks and in PyTorch: GFLOP/s and CPU cores busy (process CPU
  time / wall time).

Both frameworks' thread pools live in the process, idle while the other runs. Appends the
raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import argparse
import os
import statistics
import time

import reporting

BATCH = 100
STEPS = 25
PRODUCTS = 20
TF_VARIANTS = ("zoo default", "keras Dense", "no batch normalization")
TORCH_VARIANTS = ("pytorch peer", "pytorch peer, no batch normalization")


def _images(num=5000):
    import numpy as np

    return (np.random.default_rng(0).random((num, 28, 28, 1)) < 0.3).astype(np.float32)


def _interleave(steps_fns, rounds):
    """Seconds per step of each `{name: fn}` (fn runs STEPS steps) in every round, timed in alternation,
    and the process's CPU seconds over those wall seconds (cores busy) per name."""
    times = {name: [] for name in steps_fns}
    cpu = {name: 0.0 for name in steps_fns}
    for _ in range(rounds):
        for name, fn in steps_fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - start) / STEPS)
            cpu[name] += time.process_time() - start_cpu
    return times, {name: cpu[name] / (STEPS * sum(times[name])) for name in steps_fns}


def matmul_variants():
    """`{name: fn}`, each fn runs STEPS times PRODUCTS chained pairs of float32 matmuls, 100x784 @ 784x500
    and 100x500 @ 500x784 (the first encoder layer and the logits layer at batch 100)."""
    import numpy as np
    import tensorflow as tf
    import torch

    import zoo

    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 784)).astype(np.float32)
    w = (rng.normal(size=(784, 500)) / 28).astype(np.float32)
    back = (rng.normal(size=(500, 784)) / 22).astype(np.float32)  # keeps the chain at [100, 784]

    def tf_chain(matmul):
        @tf.function
        def run(a):
            for _ in range(PRODUCTS):
                a = matmul(matmul(a, w), back)
            return a

        return lambda: [run(x).numpy() for _ in range(STEPS)]

    def torch_chain():
        a0, w_t, back_t = map(torch.from_numpy, (x, w, back))

        def run():
            for _ in range(STEPS):
                a = a0
                for _ in range(PRODUCTS):
                    a = (a @ w_t) @ back_t
        return run

    return {
        "tf.matmul": tf_chain(tf.matmul),
        "zoo blocked_matmul, 2 blocks": tf_chain(lambda a, b: zoo.layers.dense.blocked_matmul(a, b, 2)),
        "pytorch": torch_chain(),
    }


def tf_variants():
    import keras
    import numpy as np
    import tensorflow as tf

    import zoo
    from zoo.layers import dense_stack, gaussian_latent, likelihood_head

    # A static batch size, as zoo.data's shuffled (training) pipelines give.
    data = tf.data.Dataset.from_tensor_slices(_images()).repeat().batch(BATCH, drop_remainder=True).prefetch(4)

    def build(variant):
        for module in (dense_stack, gaussian_latent, likelihood_head):
            module.Dense = keras.layers.Dense if variant == "keras Dense" else zoo.layers.Dense
        model = zoo.VAE.from_preset("vae_mnist_500_500_100", seed=0, batch_norm=variant != "no batch normalization")
        model.compile()
        model.make_train_function()
        iterator = iter(data)
        model.train_function(iterator)  # tracing
        return lambda: np.asarray(model.train_function(iterator)["loss"])

    return {variant: build(variant) for variant in TF_VARIANTS}


def torch_variants():
    import torch
    import torch_peer

    images = torch.from_numpy(_images().reshape(-1, 784))

    def build(batch_norm):
        torch.manual_seed(0)
        model = torch_peer.TorchVAE(batch_norm=batch_norm)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run():
            for i in range(STEPS):
                loss = model(images[i * BATCH:(i + 1) * BATCH]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        run()  # warm-up
        return run

    return {name: build(name == TORCH_VARIANTS[0]) for name in TORCH_VARIANTS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-append", action="store_true", help="print only, do not record the run")
    args = parser.parse_args()

    start, load_before = time.perf_counter(), os.getloadavg()
    times, _ = _interleave({**tf_variants(), **torch_variants()}, args.rounds)
    matmul_times, busy = _interleave(matmul_variants(), args.rounds)
    wall, load_after = time.perf_counter() - start, os.getloadavg()

    median = {name: statistics.median(t) for name, t in times.items()}
    rows = []
    for framework, variants in (("TensorFlow", TF_VARIANTS), ("PyTorch", TORCH_VARIANTS)):
        for name in variants:
            rows.append({"framework": framework, "variant": name, "ms per step (median)": 1000 * median[name],
                         "vs its default": f"{median[name] / median[variants[0]]:.2f}x"})
    for name, t in matmul_times.items():
        gflops = PRODUCTS * 2 * (2 * BATCH * 784 * 500) / statistics.median(t) / 1e9
        rows.append({"framework": "matmul pair", "variant": name, "GFLOP/s (median)": gflops, "cores busy": f"{busy[name]:.2f}"})
    ratios = [p / z for p, z in zip(times[TORCH_VARIANTS[0]], times[TF_VARIANTS[0]])]
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    import zoo

    notes = {"PyTorch peer step time / zoo default step time, per round (above 1: zoo faster)":
             f"median {q2:.2f}x, quartiles {q1:.2f}x, {q3:.2f}x",
             "zoo.layers.Dense row blocks chosen on this machine, (rows, in, out) -> blocks":
             ", ".join(f"{k[:3]} -> {v}" for k, v in zoo.layers.dense.CHOICES.items()) or "none timed"}
    reporting.record("step_breakdown", rows, wall, (load_before[0], load_after[0]), notes, append=not args.no_append)


if __name__ == "__main__":
    main()
