import os

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="zoo")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` whose matrix products use every CPU core, also at small sizes.

    TensorFlow's oneDNN `MatMul` runs on a single thread when its operands fit in the L2
    cache (`ExecuteSingleThreadedGemm` in tensorflow/core/kernels/mkl), and every product of
    `vae_mnist_500_500_100` at batch 100 does: the forward products, the input gradients and
    the kernel gradients. This layer splits the rows of each product into one block per
    intra-op thread and multiplies the blocks as one `BatchMatMul`, whose blocks run in
    parallel. On a 2-core CPU a `vae_mnist_500_500_100` training step took 1.29x as long
    with Keras's layer (`benchmarks/step_breakdown.py`).

    Same arguments, weights and outputs (up to float rounding) as Keras's layer. Inputs of
    any rank are multiplied as `[rows, features]`. Where a GPU is visible, or TensorFlow is
    limited to one intra-op thread, this is Keras's layer.
    """

    def call(self, inputs, training=None):
        blocks = _num_blocks()
        if blocks == 1:
            return super().call(inputs, training=training)
        x = blocked_matmul(inputs, tf.convert_to_tensor(self.kernel), blocks)
        if self.bias is not None:
            x = tf.nn.bias_add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


def _num_blocks():
    if tf.config.list_logical_devices("GPU"):
        return 1
    return tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))


def blocked_matmul(x, kernel, blocks):
    """`x @ kernel` for `x` of shape `[..., K]` and `kernel` `[K, U]`, in `blocks` parallel row blocks.

    Blocked when the product has at least `MIN_BLOCKED_MACS` multiply-adds (below that the
    threads cost more than they save) and the rows divide evenly; the gradient too: `dx` over
    the rows of `dy`, `dkernel = x^T dy` over the rows of `x^T`.
    """
    k, u = kernel.shape

    @tf.custom_gradient
    def product(x, kernel):
        rows = tf.reshape(x, [-1, k])
        n = rows.shape[0] if rows.shape[0] is not None else tf.shape(rows)[0]
        large = n >= -(-MIN_BLOCKED_MACS // (k * u))
        count = _count(large & (n % blocks == 0), blocks)

        def grad(dy):
            dy = tf.reshape(dy, [-1, u])
            dx = _blocked(dy, kernel, count, transpose_b=True)
            dkernel = _blocked(tf.transpose(rows), dy, _count(large & (k % blocks == 0), blocks))
            return tf.reshape(dx, tf.shape(x)), dkernel

        y = _blocked(rows, kernel, count)
        return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [u]], axis=0)), grad

    return product(x, kernel)


MIN_BLOCKED_MACS = 2**23


def _count(condition, blocks):
    if isinstance(condition, bool):  # static shapes: decided while tracing
        return blocks if condition else 1
    return tf.where(condition, blocks, 1)


def _blocked(a, b, count, transpose_b=False):
    """`a @ b` (`a` of shape `[R, C]`) as a `BatchMatMul` of `count` row blocks."""
    columns = a.shape[1] if a.shape[1] is not None else tf.shape(a)[1]
    product = tf.matmul(tf.reshape(a, tf.stack([count, -1, columns])), b, transpose_b=transpose_b)
    return tf.reshape(product, [-1, b.shape[0] if transpose_b else b.shape[1]])
