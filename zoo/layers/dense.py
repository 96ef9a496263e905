import os
import time

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="zoo")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` that computes a large product in parallel row blocks where this machine runs that faster.

    TensorFlow's CPU `MatMul` can leave cores idle on small products (oneDNN runs a product
    whose operands fit in the L2 cache on one thread), while a `BatchMatMul` of row blocks
    runs its blocks in parallel. Which is faster depends on the processor: it helped on one
    CPU and hurt on another. So nothing is assumed: the first time a static `[rows, in, out]`
    product is traced, both ways of computing a training step's three products (output,
    input gradient, kernel gradient) are timed on the running machine, and the faster is kept
    for the process (see `block_count`).

    Same arguments, weights and outputs (up to float rounding) as Keras's layer, and
    gradients of any order. Inputs of any rank are multiplied as `[rows, features]`. Row
    counts unknown while tracing, GPUs, one intra-op thread and products too small to split
    take Keras's own path.
    """

    def call(self, inputs, training=None):
        rows = inputs.shape[:-1].num_elements()
        blocks = block_count(rows, *self.kernel.shape, inputs.dtype) if rows else 1
        if blocks == 1:
            return super().call(inputs, training=training)
        x = blocked_matmul(inputs, tf.convert_to_tensor(self.kernel), blocks)
        if self.bias is not None:
            x = tf.nn.bias_add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


def blocked_matmul(x, kernel, blocks):
    """`x @ kernel` for `x` `[..., K]` with a static row count divisible by `blocks`, as `blocks` parallel row blocks.

    One block is a plain `MatMul`.
    Written as one broadcast `BatchMatMul`, so its gradients are `BatchMatMul`s too (the input
    gradient in the same row blocks, the kernel gradient as per-block products summed) and
    differentiate again like any TensorFlow op.
    """
    k, u = kernel.shape
    if blocks == 1:
        return tf.tensordot(x, kernel, 1)
    y = tf.matmul(tf.reshape(x, [blocks, -1, k]), kernel)  # [blocks, rows / blocks, U]
    return tf.reshape(y, [*x.shape[:-1], u])


# A block must get this many multiply-adds before splitting is worth timing: handing a smaller
# block to another thread costs about what it saves.
MIN_BLOCK_MACS = 2**22
# Products above this many multiply-adds are not timed (that would cost seconds): operands that
# large no longer fit in cache, where TensorFlow's MatMul already uses every core.
MAX_TIMED_MACS = 2**28
# Measured choices, `(rows, in, out, dtype) -> blocks`, kept for the process (benchmarks report them).
CHOICES = {}
# A blocked product is kept only when its step takes at most this fraction of the plain one's,
# so timing noise never trades Keras's path for an equal one.
_MARGIN = 0.9


def block_count(rows, in_features, out_features, dtype=tf.float32):
    """Row blocks for a `[rows, in_features] @ [in_features, out_features]` product: 1 means Keras's `MatMul`.

    Candidates, for products of at most `MAX_TIMED_MACS`, are the block counts up to the
    intra-op thread count that divide `rows` and give every block `MIN_BLOCK_MACS`. The first
    call for a shape times a training step's products (forward, input gradient, kernel
    gradient) with one block and with each candidate, interleaved, on this machine, and keeps
    the fastest if it beats one block by 10%; later calls return the cached choice.
    """
    if rows * in_features * out_features > MAX_TIMED_MACS:
        return 1
    threads = _num_threads()
    candidates = [
        b for b in range(2, threads + 1)
        if rows % b == 0 and rows * in_features * out_features >= b * MIN_BLOCK_MACS
    ]
    if not candidates:
        return 1
    key = (rows, in_features, out_features, tf.as_dtype(dtype).name)
    if key not in CHOICES:
        with tf.init_scope():  # called while tracing: time eagerly, outside the graph being built
            CHOICES[key] = _fastest(rows, in_features, out_features, tf.as_dtype(dtype), [1] + candidates)
    return CHOICES[key]


def _num_threads():
    if tf.config.list_logical_devices("GPU"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return tf.config.threading.get_intra_op_parallelism_threads() or cores


def _fastest(rows, in_features, out_features, dtype, counts, rounds=7, calls=10):
    x = tf.random.stateless_normal([rows, in_features], seed=[0, 0], dtype=dtype)
    kernel = tf.random.stateless_normal([in_features, out_features], seed=[0, 1], dtype=dtype)
    dy = tf.random.stateless_normal([rows, out_features], seed=[0, 2], dtype=dtype)

    def step(blocks):
        # The three products of a training step as autodiff writes them for `blocked_matmul`
        # (written out: the gradient tape is paused inside `tf.init_scope`).
        @tf.function(autograph=False)
        def run(x, kernel, dy):
            y = blocked_matmul(x, kernel, blocks)
            dx = blocked_matmul(dy, tf.transpose(kernel), blocks)
            if blocks == 1:
                dkernel = tf.matmul(x, dy, transpose_a=True)
            else:
                per_block = tf.matmul(tf.reshape(x, [blocks, -1, in_features]), tf.reshape(dy, [blocks, -1, out_features]), transpose_a=True)
                dkernel = tf.reduce_sum(per_block, axis=0)
            return y[0, 0] + dx[0, 0] + dkernel[0, 0]

        run(x, kernel, dy)  # trace
        return lambda: run(x, kernel, dy)

    steps = {blocks: step(blocks) for blocks in counts}
    best = {blocks: float("inf") for blocks in counts}
    for _ in range(rounds):  # interleaved, best of rounds: robust to load that comes and goes
        for blocks, fn in steps.items():
            start = time.perf_counter()
            for _ in range(calls):
                result = fn()
            result.numpy()
            best[blocks] = min(best[blocks], time.perf_counter() - start)
    return choose(best)


def choose(seconds):
    """The block count to keep from measured `{blocks: seconds}` (which includes 1 block)."""
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] <= _MARGIN * seconds[1] else 1
