"""Optimizers tuned for the zoo's models on the TensorFlow backend."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="zoo")
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose update runs as one fused TensorFlow kernel per variable.

    Same arguments, update rule, slot variables and checkpoints as Keras's Adam:

        alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m += (1 - beta_1) (g - m);  v += (1 - beta_2) (g^2 - v);  w -= alpha m / (sqrt(v) + epsilon)

    Keras writes this as about ten element-wise ops per variable, each a full pass over
    memory; `ResourceApplyAdam` does it in one. On a 2-core CPU a `vae_mnist_500_500_100`
    training step with Keras's Adam took 1.12-1.31x as long (`benchmarks/step_breakdown.py`,
    the runs in benchmarks/RESULTS.md from e6572d9 on).
    AMSGrad and sparse gradients take Keras's own path.

    Example:

    >>> model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2)
    >>> model.compile(optimizer=zoo.optimizers.Adam(learning_rate=3e-4))
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), local_step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), local_step),
            lr=tf.cast(learning_rate, dtype),
            beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )
