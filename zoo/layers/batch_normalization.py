import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="zoo")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a hand-written gradient for training on `[N, C]` features.

    Same arguments, weights, moving statistics and outputs as Keras's layer. In training
    on rank-2 inputs (the MLP stacks of the zoo) the backward pass is the closed form

        dx = gamma / (N sigma) * (N dy - sum(dy) - x_hat * sum(dy * x_hat))

    instead of automatic differentiation through the moments (which adds a broadcast for
    every reduction's gradient). On a 2-core CPU a `vae_mnist_500_500_100` step with Keras's
    layer took 1.00-1.05x as long (`benchmarks/step_breakdown.py`, the runs in
    benchmarks/RESULTS.md from e6572d9 on). Other cases
    (inference, masks, renormalization, other axes) take Keras's own path.
    """

    def call(self, inputs, training=None, mask=None):
        fast = training and self.trainable and mask is None and not self.renorm
        if not fast or len(inputs.shape) != 2 or self.axis not in (1, -1):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones(x.shape[-1:])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros(x.shape[-1:])
        outputs, mean, variance = _normalize(x, gamma, beta, self.epsilon)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


def _normalize(x, gamma, beta, epsilon):
    """Batch-normalizes `[N, C]` over axis 0; returns outputs, batch mean and (biased) batch variance."""

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        mean, variance = tf.nn.moments(x, axes=[0])
        inv_std = tf.math.rsqrt(variance + epsilon)
        x_hat = (x - mean) * inv_std

        def grad(dy, unused_dmean, unused_dvariance):
            # The moments only feed the moving averages, which are never differentiated.
            n = tf.cast(tf.shape(x)[0], x.dtype)
            dbeta = tf.reduce_sum(dy, axis=0)
            dgamma = tf.reduce_sum(dy * x_hat, axis=0)
            dx = (gamma * inv_std / n) * (n * dy - dbeta - x_hat * dgamma)
            return dx, dgamma, dbeta

        return (x_hat * gamma + beta, tf.stop_gradient(mean), tf.stop_gradient(variance)), grad

    return normalize(x, gamma, beta)
