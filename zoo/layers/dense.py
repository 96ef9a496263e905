import os

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="zoo")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` whose matrix products use every CPU core, also at small sizes.

    TensorFlow's oneDNN `MatMul` runs on a single thread when its operands fit in the L2
    cache (`ExecuteSingleThreadedGemm` in tensorflow/core/kernels/mkl), and every product of
    `vae_mnist_500_500_100` at batch 100 does. This layer splits the rows of the forward
    product and of the input gradient into up to one block per intra-op thread and multiplies
    the blocks as one `BatchMatMul`, whose blocks run in parallel. On a 2-core CPU a
    `vae_mnist_500_500_100` training step took 1.18x as long with Keras's layer
    (`benchmarks/step_breakdown.py` at 5f7711b, benchmarks/RESULTS.md).

    Same arguments, weights and outputs (up to float rounding) as Keras's layer. Inputs of
    any rank are multiplied as `[rows, features]`. Where a GPU is visible, or TensorFlow is
    limited to one intra-op thread, this is Keras's layer.
    """

    def call(self, inputs, training=None):
        k, u = self.kernel.shape
        rows = inputs.shape[:-1].num_elements()
        blocks = _num_blocks()
        if blocks == 1 or (rows is not None and _count(rows, k * u, blocks) == 1):
            return super().call(inputs, training=training)  # one block: Keras's fused matmul + bias
        x = blocked_matmul(inputs, tf.convert_to_tensor(self.kernel), blocks)
        if self.bias is not None:
            x = tf.nn.bias_add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


def _num_blocks():
    if tf.config.list_logical_devices("GPU"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return tf.config.threading.get_intra_op_parallelism_threads() or cores


# Multiply-adds a block must get: below this, handing a block to another thread costs about what it saves.
MIN_BLOCK_MACS = 2**22


def blocked_matmul(x, kernel, blocks):
    """`x @ kernel` for `x` of shape `[..., K]` and `kernel` `[K, U]`, in up to `blocks` parallel row blocks.

    The input gradient `dy @ kernel^T` is blocked the same way. The kernel gradient `x^T dy` is
    not: it is off the backward pass's critical path, and the executor already runs it beside
    the next layer's work (blocking it too measured no faster).
    """
    k, u = kernel.shape

    @tf.custom_gradient
    def product(x, kernel):
        rows = tf.reshape(x, [-1, k])
        n = rows.shape[0] if rows.shape[0] is not None else tf.shape(rows)[0]
        count = _count(n, k * u, blocks)

        def grad(dy):
            dy = tf.reshape(dy, [-1, u])
            dx = _blocked(dy, kernel, count, transpose_b=True)
            return tf.reshape(dx, tf.shape(x)), tf.matmul(rows, dy, transpose_a=True)

        y = _blocked(rows, kernel, count)
        return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [u]], axis=0)), grad

    return product(x, kernel)


def _count(rows, kernel_size, blocks):
    """Row blocks for a product of `rows * kernel_size` multiply-adds.

    The most blocks (up to `blocks`) that divide the rows evenly and get `MIN_BLOCK_MACS` each;
    decided while tracing when the shapes are static, else at run time between `blocks` and 1.
    """
    if isinstance(rows, int):
        fits = [d for d in range(2, blocks + 1) if rows % d == 0 and rows * kernel_size >= d * MIN_BLOCK_MACS]
        return max(fits, default=1)
    enough = rows >= -(-blocks * MIN_BLOCK_MACS // kernel_size)
    return tf.where(enough & (rows % blocks == 0), blocks, 1)


def _blocked(a, b, count, transpose_b=False):
    """`a @ b` (`a` of shape `[R, C]`) as a `BatchMatMul` of `count` row blocks."""
    if isinstance(count, int) and count == 1:
        return tf.matmul(a, b, transpose_b=transpose_b)
    product = tf.matmul(tf.reshape(a, tf.stack([count, -1, a.shape[1]])), b, transpose_b=transpose_b)
    return tf.reshape(product, [-1, b.shape[0] if transpose_b else b.shape[1]])
