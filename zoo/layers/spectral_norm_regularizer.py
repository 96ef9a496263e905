import keras
from keras import ops

from zoo import validation


def conv_kernel_matrix(layer):
    """The kernel of a `keras.layers.Conv2D` or `DepthwiseConv2D` as NVAE reshapes it, `[out, fan_in]`.

    PyTorch stores a convolution's weight `[out, in / groups, kh, kw]` and NVAE's spectral
    regulariser views it as `[out, in / groups * kh * kw]`. Keras's Conv2D kernel `[kh, kw, in, out]`
    becomes `[out, in * kh * kw]` in that same layout; a depthwise kernel `[kh, kw, in, m]`
    becomes `[in * m, kh * kw]` (one row per output channel, as a grouped PyTorch conv).
    """
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        raise ValueError(f"conv_kernel_matrix takes a keras Conv2D or DepthwiseConv2D layer, got {type(layer).__name__}")
    kernel = ops.convert_to_tensor(layer.kernel)
    kh, kw, channels, last = kernel.shape
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # last = the depth multiplier
        return ops.reshape(ops.transpose(kernel, (2, 3, 0, 1)), (channels * last, kh * kw))
    return ops.reshape(ops.transpose(kernel, (3, 2, 0, 1)), (last, channels * kh * kw))


def power_iteration(matrices, u, num_iterations, epsilon=1e-3):
    """`num_iterations` steps of power iteration on a stack of matrices, from left vectors `u`.

        v <- normalize(u^T W),   u <- normalize(W v)      (NVAE's `spectral_norm_parallel`)

    where normalize(x) = x / max(||x||, epsilon), as PyTorch's `F.normalize`. Then u^T W v
    estimates W's largest singular value.

    Args:
        matrices: float `[N, R, C]`.
        u: float `[N, R]`, the previous left singular vectors.
        num_iterations: int or int scalar tensor >= 1.
        epsilon: float, the smallest norm divided by. Default 1e-3.

    Returns:
        `(u [N, R], v [N, C])`.
    """

    def normalize(x):
        return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True)), epsilon)

    def step(_, state):
        u, _ = state
        v = normalize(ops.einsum("nr,nrc->nc", u, matrices))
        return normalize(ops.einsum("nrc,nc->nr", matrices, v)), v

    v0 = ops.zeros((matrices.shape[0], matrices.shape[2]), matrices.dtype)
    return ops.fori_loop(0, num_iterations, step, (u, v0))


@keras.saving.register_keras_serializable(package="zoo")
class SpectralNormRegularizer(keras.layers.Layer):
    """NVAE's spectral regulariser: the sum of the largest singular values of convolution kernels.

        L_SR = sum_i sigma_max(W_i),   sigma_max(W) ~ u^T W v

    with u, v each kernel's left and right singular vectors estimated by power iteration. The
    vectors persist between steps as non-trainable weights (`u_*`, `v_*`, one pair of stacks per
    distinct matrix shape, iterated together as in the authors' `spectral_norm_parallel`): a
    training call runs `num_power_iterations` steps from the stored vectors
    (`initial_power_iterations` the first time) and stores the result; any other call reuses
    the stored vectors. Gradients flow to the kernels through u^T W v only (u and v are held
    constant), so d L_SR / d W_i = u_i v_i^T. Computed in float32 under any dtype policy.

    A model adds `lambda * L_SR` to its loss (NVAE: lambda between 1e-2 and 1e-1), plus the same
    lambda times `zoo.objectives.batch_norm_scale_penalty`. Build it in the model's `build`
    (the matrix shapes fix its weights), then call it in `compute_loss`.

    Call args:
        matrices: a list of float matrices `[R_i, C_i]`, each kernel as NVAE reshapes it
            (`conv_kernel_matrix`, `ResidualCell.conv_kernel_matrices()`).
        training: bool, run (and store) the power iteration. Default False.

    Returns a float32 scalar.

    Args:
        num_power_iterations: int >= 1, power-iteration steps per training call. Default 4 (NVAE's).
        initial_power_iterations: int >= 1, steps of the first training call. Default 40 (NVAE's 10 x 4).
        epsilon: positive float, the smallest norm a vector is divided by. Default 1e-3 (NVAE's).
        seed: int or None, seeds the random initial vectors. Default None.

    Example:

    >>> cell = ResidualCell(filters=4, seed=0)
    >>> _ = cell(keras.ops.ones((2, 8, 8, 4)))
    >>> regularizer = SpectralNormRegularizer(seed=0)
    >>> regularizer(cell.conv_kernel_matrices(), training=True).shape
    TensorShape([])

    References:
        Vahdat & Kautz, "NVAE: A Deep Hierarchical Variational Autoencoder", NeurIPS 2020, sec. 3.2
        (spectral regularization); Yoshida & Miyato 2017; NVlabs/NVAE `model.py` (`spectral_norm_parallel`).
    """

    def __init__(self, num_power_iterations=4, initial_power_iterations=40, epsilon=1e-3, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_power_iterations = validation.positive_int("num_power_iterations", num_power_iterations)
        self.initial_power_iterations = validation.positive_int("initial_power_iterations", initial_power_iterations)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.seed = validation.constructor_seed(seed)

    @staticmethod
    def _shapes(input_shape):
        if len(input_shape) and all(s is None or isinstance(s, int) for s in input_shape):
            input_shape = [input_shape]  # a single matrix
        shapes = [tuple(s) for s in input_shape]
        if not shapes or any(len(s) != 2 or None in s for s in shapes):
            raise ValueError(
                f"SpectralNormRegularizer takes a non-empty list of matrices [rows, columns] with known shapes, "
                f"got shapes {shapes}"
            )
        return shapes

    def build(self, input_shape):
        shapes = self._shapes(input_shape)
        # Matrices of one shape are iterated as one stack: `groups[k] = (shape, [matrix indices])`.
        self.groups = []
        for i, shape in enumerate(shapes):
            for group_shape, members in self.groups:
                if group_shape == shape:
                    members.append(i)
                    break
            else:
                self.groups.append((shape, [i]))
        self.left_vectors, self.right_vectors = [], []
        for k, ((rows, columns), members) in enumerate(self.groups):
            for side, size, store in (("u", rows, self.left_vectors), ("v", columns, self.right_vectors)):
                store.append(self.add_weight(
                    shape=(len(members), size), dtype="float32", trainable=False, name=f"{side}_{k}",
                    initializer=keras.initializers.RandomNormal(seed=validation.derived_seed(self.seed, 2 * k + (side == "v"))),
                ))
        self.initialized = self.add_weight(shape=(), dtype="bool", initializer="zeros", trainable=False, name="initialized")

    def call(self, matrices, training=False):
        if not isinstance(matrices, (list, tuple)):
            matrices = [matrices]
        matrices = [ops.cast(m, "float32") for m in matrices]
        num_iterations = ops.where(self.initialized, self.num_power_iterations, self.initial_power_iterations)
        total = ops.zeros((), "float32")
        for ((_, members), u_store, v_store) in zip(self.groups, self.left_vectors, self.right_vectors):
            stack = ops.stack([matrices[i] for i in members])  # [N, R, C]
            if training:
                u, v = power_iteration(ops.stop_gradient(stack), ops.convert_to_tensor(u_store), num_iterations, self.epsilon)
                u_store.assign(u)
                v_store.assign(v)
            else:
                u, v = u_store, v_store
            u, v = ops.stop_gradient(u), ops.stop_gradient(v)
            total = total + ops.sum(ops.einsum("nr,nrc,nc->n", u, stack, v))
        if training:
            self.initialized.assign(True)
        return total

    def compute_output_shape(self, input_shape):
        return ()

    def get_config(self):
        return {
            **super().get_config(),
            "num_power_iterations": self.num_power_iterations,
            "initial_power_iterations": self.initial_power_iterations,
            "epsilon": self.epsilon,
            "seed": self.seed,
        }

