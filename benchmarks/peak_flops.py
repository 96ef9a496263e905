"""Measured peak float32 matmul FLOP/s of this machine, and the VAE's FLOPs per example.

The peak is the best of TensorFlow (XLA-compiled) and PyTorch square float32 matmuls
over a few sizes: the arithmetic ceiling any float32 training loop here can approach.
"""

import time



def _best_rate(run, n, repeats):
    run()  # warm-up: compilation, thread pools, page faults
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, 2.0 * n**3 * 10 / (time.perf_counter() - start))
    return best


def peak_matmul_flops(sizes=(512, 1024, 2048), repeats=5):
    """Returns {"tensorflow": FLOP/s, "pytorch": FLOP/s} (best over sizes; 10 matmuls per timing)."""
    import tensorflow as tf

    rates = {"tensorflow": 0.0, "pytorch": 0.0}
    for n in sizes:
        a = tf.random.normal([n, n])

        @tf.function(jit_compile=True)
        def ten_matmuls(a):
            out = a
            for _ in range(10):
                out = tf.matmul(a, out) * 1e-3  # scaled to stay finite
            return out

        rates["tensorflow"] = max(
            rates["tensorflow"], _best_rate(lambda: ten_matmuls(a).numpy(), n, repeats))
    try:
        import torch
    except ImportError:
        rates.pop("pytorch")
        return rates
    for n in sizes:
        a = torch.randn(n, n)

        def ten_matmuls():
            out = a
            for _ in range(10):
                out = (a @ out) * 1e-3
            return out

        rates["pytorch"] = max(rates["pytorch"], _best_rate(ten_matmuls, n, repeats))
    return rates


def dense_training_flops(layer_sizes):
    """Matmul FLOPs of one training example through Dense layers [(fan_in, fan_out), ...].

    Forward 2*m*n, weight gradient 2*m*n, input gradient 2*m*n for every layer but
    those fed by the data (whose input gradient is never computed). Element-wise ops
    (BatchNorm, ReLU, the loss, Adam) are left out: they are memory-bound, not FLOP-bound.
    """
    total = 0
    for (fan_in, fan_out), first in layer_sizes:
        total += (4 if first else 6) * fan_in * fan_out
    return total


# vae_mnist_500_500_100: (fan_in, fan_out), fed-by-data.
VAE_MNIST_500_500_100_LAYERS = [
    ((784, 500), True), ((500, 500), False), ((500, 100), False), ((500, 100), False),
    ((100, 500), False), ((500, 500), False), ((500, 784), False),
]


def vae_training_flops():
    return dense_training_flops(VAE_MNIST_500_500_100_LAYERS)


def vae_log_likelihood_flops(num_samples):
    """Forward matmul FLOPs of `log_likelihood(x, num_samples)` per example.

    The encoder runs once per example, the decoder once per importance sample.
    """
    encoder = 2 * (784 * 500 + 500 * 500 + 2 * 500 * 100)
    decoder = 2 * (100 * 500 + 500 * 500 + 500 * 784)
    return encoder + num_samples * decoder


if __name__ == "__main__":
    print({k: f"{v / 1e9:.1f} GFLOP/s" for k, v in peak_matmul_flops().items()})
    print(f"training FLOPs/example: {vae_training_flops() / 1e6:.2f} M")
