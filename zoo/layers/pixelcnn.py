import math

import keras
import tensorflow as tf

from zoo import distributions, validation
from zoo.layers.dense import Dense
from zoo.layers.gated_pixelcnn_block import GatedPixelCNNBlock

PIXELCNN_LIKELIHOODS = ("bernoulli", "gaussian", "logistic_mixture")
# The decoders a latent-variable model can put on top of its generative path.
DECODERS = ("factorized", "pixelcnn")


class _Compiled:
    """Holds a `tf.function` outside TensorFlow's object tracking: a SavedModel serves the model's
    endpoints, which trace the sampling loop into their own graphs, not this cached function."""

    def __init__(self, fn):
        self.fn = tf.function(fn, reduce_retracing=True)


@keras.saving.register_keras_serializable(package="zoo")
class PixelCNN(keras.layers.Layer):
    """A gated PixelCNN over images, optionally conditioned: the parameters of p(x_ij | x_<ij, c) at every pixel.

        p(x | c) = prod_{i, j} p(x_ij | x_<ij, c)     (raster order; the channels of a pixel independent given the rest)

    `num_blocks` `GatedPixelCNNBlock`s of `filters` channels (the first with mask "A"), then
    ELU - 1x1 conv (`filters`) - ELU - 1x1 conv to the likelihood's parameters, shaped as
    `zoo.layers.LikelihoodHead`'s: Bernoulli `{"logits", "mean"}`, Gaussian `{"mean",
    "log_variance"}`, logistic mixture `{"logits", "means", "log_scales"}` `[N, H, W, C, M]`
    and `mean`; so `zoo.distributions.log_likelihood` gives the exact log p(x | c).

    The condition c (a latent's features) becomes a map at the image's resolution: a vector
    `[N, D]` through a dense layer to an image-shaped `[N, H, W, C]` map (what a factorised
    decoder's head computes; a vector broadcast over the image would carry no position), a
    map `[N, h, w, D]` upsampled (nearest neighbour) when coarser (h and w dividing H and W). A 1x1 convolution projects
    it to `filters` channels, and every block adds its own projections of it to both stacks
    (van den Oord et al.'s conditional PixelCNN). With `concatenate_input=True` the
    first block reads the image concatenated with that map, as PixelVAE's decoder
    concatenates the image's masked features with the latent's; with `False` it reads the map
    alone, so nothing sees x and the same network is a factorised decoder (the ablation
    without the concatenation).

    `call([x, c])` (or `call(x)` unconditioned) is the teacher-forced pass used for log p(x|c).
    `generate(c, seed=...)` draws x ~ p(x | c) exactly, pixel by pixel, in one compiled loop:
    each row runs the vertical stacks once on the image so far (rows above only), then each
    pixel of the row runs the one-row horizontal stacks, so a draw costs about H + W full
    passes, not H x W.

    Args:
        event_shape: `(H, W, C)`, the images.
        likelihood: `"bernoulli"` (binary images), `"gaussian"` or `"logistic_mixture"` (8-bit
            images k / 255). Default `"bernoulli"`.
        filters: int, channels of every block. Default 32.
        num_blocks: int >= 1, gated blocks (the depth). Default 4.
        kernel_size: odd int >= 3. Default 3.
        condition_shape: None (unconditioned), `(D,)` or `(h, w, D)`. Default None.
        concatenate_input: bool, whether the first block reads the image (False needs a condition). Default True.
        num_mixtures: int, components of the logistic mixture (unused by the other likelihoods). Default 10.
        seed: int or None, seeds the initial weights. Default None.

    Example:

    >>> pixelcnn = PixelCNN(event_shape=(4, 4, 1), filters=8, num_blocks=2, condition_shape=(3,), seed=0)
    >>> c = keras.ops.ones((2, 3))
    >>> pixelcnn([keras.ops.zeros((2, 4, 4, 1)), c])["logits"].shape
    TensorShape([2, 4, 4, 1])
    >>> pixelcnn.generate(c, seed=[1, 2])["image"].shape
    TensorShape([2, 4, 4, 1])

    References:
        van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
        Generation with PixelCNN Decoders", NIPS 2016.
        Gulrajani, Kumar, Ahmed, Taiga, Visin, Vazquez & Courville, "PixelVAE: A Latent Variable
        Model for Natural Images", ICLR 2017.
    """

    def __init__(
        self,
        event_shape,
        likelihood="bernoulli",
        filters=32,
        num_blocks=4,
        kernel_size=3,
        condition_shape=None,
        concatenate_input=True,
        num_mixtures=10,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.event_shape = validation.positive_ints("event_shape", event_shape)
        if len(self.event_shape) != 3:
            raise ValueError(f"PixelCNN needs event_shape (height, width, channels), got {event_shape!r}")
        if likelihood not in PIXELCNN_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {PIXELCNN_LIKELIHOODS}, got {likelihood!r}")
        self.likelihood = likelihood
        self.filters = validation.positive_int("filters", filters)
        self.num_blocks = validation.positive_int("num_blocks", num_blocks)
        self.kernel_size = validation.positive_int("kernel_size", kernel_size, minimum=3)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre pixel), got {kernel_size!r}")
        self.condition_shape = None if condition_shape is None else validation.positive_ints("condition_shape", condition_shape)
        if self.condition_shape is not None and (len(self.condition_shape) not in (1, 3) or (
            len(self.condition_shape) == 3 and any(n % m for n, m in zip(self.event_shape[:2], self.condition_shape[:2]))
        )):
            raise ValueError(
                "condition_shape must be None, (features,) or (height, width, channels) with a height and width that "
                f"divide the image's {self.event_shape[:2]}, got {condition_shape!r}"
            )
        concatenate_input = validation.boolean("concatenate_input", concatenate_input)
        if not concatenate_input and self.condition_shape is None:
            raise ValueError("concatenate_input=False leaves the PixelCNN without inputs: it needs a condition_shape")
        self.concatenate_input = concatenate_input
        self.num_mixtures = validation.positive_int("num_mixtures", num_mixtures)
        self.seed = validation.constructor_seed(seed)
        init = lambda i: keras.initializers.GlorotUniform(validation.derived_seed(self.seed, i))  # noqa: E731
        conditioned = self.condition_shape is not None
        if conditioned:
            if len(self.condition_shape) == 1:
                self.condition_dense = Dense(math.prod(self.event_shape), kernel_initializer=init(0), name="condition_dense")
            self.condition_projection = keras.layers.Conv2D(
                self.filters, 1, kernel_initializer=init(self.num_blocks + 3), name="condition"
            )
        self.blocks = [
            GatedPixelCNNBlock(
                self.filters, self.kernel_size, mask_type="A" if b == 0 else "B",
                condition_channels=self.filters if conditioned else None,
                seed=validation.derived_seed(self.seed, b + 1), name=f"block_{b}",
            )
            for b in range(self.num_blocks)
        ]
        channels = self.event_shape[-1]
        outputs = {"bernoulli": channels, "gaussian": 2 * channels, "logistic_mixture": 3 * self.num_mixtures * channels}
        self.head_hidden = keras.layers.Conv2D(self.filters, 1, kernel_initializer=init(self.num_blocks + 1), name="head_hidden")
        self.head_output = keras.layers.Conv2D(
            outputs[likelihood], 1, kernel_initializer=init(self.num_blocks + 2), name="head_output"
        )
        self._compiled = _Compiled(self._autoregress)

    @property
    def conditioned(self):
        return self.condition_shape is not None

    @property
    def autoregressive(self):
        """Whether the output at a pixel depends on the pixels before it (False: a factorised decoder)."""
        return self.concatenate_input

    def build(self, input_shape):
        height, width, channels = self.event_shape
        stack_channels = (channels if self.concatenate_input else 0) + (self.filters if self.conditioned else 0)
        if len(self.condition_shape or ()) == 1:
            self.condition_dense.build((None, self.condition_shape[0]))
            self.condition_projection.build((None, *self.event_shape))
        elif self.conditioned:
            self.condition_projection.build((None, *self.condition_shape))
        shape = (None, height, width, stack_channels)
        for block in self.blocks:
            block.build([shape, shape])
            shape = (None, height, width, self.filters)
        self.head_hidden.build(shape)
        self.head_output.build(shape)

    # The two passes ------------------------------------------------------------------------

    def _condition_map(self, condition):
        """The condition as a `[N, H, W, filters]` map (see the class docstring)."""
        condition = tf.cast(condition, self.compute_dtype)
        if len(self.condition_shape) == 1:
            condition = tf.reshape(self.condition_dense(condition), (-1, *self.event_shape))
        projected = self.condition_projection(condition)  # [N, h, w, F]
        height, width = self.event_shape[:2]
        # Nearest-neighbour upsampling by whole factors, as repeats (their gradient compiles with XLA).
        projected = tf.repeat(projected, height // projected.shape[1], axis=1)
        return tf.repeat(projected, width // projected.shape[2], axis=2)

    def _stack_input(self, x, condition_map):
        parts = [2.0 * tf.cast(x, self.compute_dtype) - 1.0] if self.concatenate_input else []
        if condition_map is not None:
            parts.append(condition_map)
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    def _vertical(self, stack_input, terms):
        """Every block's link into its horizontal stack, `[N, H, W, 2 filters]` each (rows above only)."""
        links, v = [], stack_input
        for block, block_terms in zip(self.blocks, terms):
            v, link = block.vertical(v, block_terms)
            links.append(link)
        return links

    def _horizontal(self, stack_input, links):
        """The horizontal stacks and the head on a band of rows: the likelihood's parameters there."""
        h = stack_input
        for block, link in zip(self.blocks, links):
            h = block.horizontal(h, link)
        return self._parameters(self.head_output(tf.nn.elu(self.head_hidden(tf.nn.elu(h)))))

    def _parameters(self, out):
        out = tf.cast(out, tf.float32)
        if self.likelihood == "bernoulli":
            return {"logits": out, "mean": tf.sigmoid(out)}
        if self.likelihood == "gaussian":
            mean, log_variance = tf.split(out, 2, axis=-1)
            return {"mean": mean, "log_variance": log_variance}
        shape = tf.concat([tf.shape(out)[:-1], [3, self.event_shape[-1], self.num_mixtures]], axis=0)
        logits, means, log_scales = tf.unstack(tf.reshape(out, shape), axis=-3)  # each [..., C, M]
        mean = distributions.discretized_logistic_mixture_mean(logits, means)
        return {"logits": logits, "means": means, "log_scales": log_scales, "mean": mean}

    def _prepare(self, condition):
        condition_map = self._condition_map(condition) if self.conditioned else None
        terms = [block.condition_terms(condition_map) for block in self.blocks]
        return condition_map, terms

    def call(self, inputs):
        x, condition = (inputs[0], inputs[1]) if self.conditioned else (inputs, None)
        condition_map, terms = self._prepare(condition)
        stack_input = self._stack_input(x, condition_map)
        return self._horizontal(stack_input, self._vertical(stack_input, terms))

    # Sampling ------------------------------------------------------------------------------

    def _choose(self, params, seed):
        """A value for each pixel of `params` (`[..., C]`, mixtures `[..., C, M]`): a draw, or with `seed=None` the
        conditional mean rounded to the data's support (Bernoulli: the mode; 8-bit: the nearest k / 255)."""
        if self.likelihood == "bernoulli":
            if seed is None:
                return tf.cast(params["logits"] > 0, tf.float32)
            return tf.cast(tf.random.stateless_uniform(tf.shape(params["mean"]), seed) < params["mean"], tf.float32)
        if self.likelihood == "gaussian":
            if seed is None:
                return params["mean"]
            noise = tf.random.stateless_normal(tf.shape(params["mean"]), seed)
            return params["mean"] + tf.exp(0.5 * params["log_variance"]) * noise
        if seed is None:
            return tf.round(params["mean"] * (distributions.NUM_BINS - 1)) / (distributions.NUM_BINS - 1)
        return distributions.discretized_logistic_mixture_sample(params["logits"], params["means"], params["log_scales"], seed)

    def _autoregress(self, condition, num_samples, seed):
        height, width, channels = self.event_shape
        condition_map, terms = self._prepare(condition)
        size = tf.shape(condition_map)[0] if self.conditioned else num_samples
        if not self.autoregressive:  # nothing reads x: every pixel at once
            stack_input = self._stack_input(None, condition_map)
            params = self._horizontal(stack_input, self._vertical(stack_input, terms))
            return {**params, "image": self._choose(params, seed)}
        columns = tf.one_hot(tf.range(width), width)  # [W, W]: column j's indicator

        def next_row(i, x):
            stack_input = self._stack_input(x, condition_map)
            # Row i as a static [N, 1, W, ...] band (a gather, not a slice: XLA needs the size).
            row_of = lambda t: tf.gather(t, [i], axis=1)  # noqa: E731
            links = [row_of(link) for link in self._vertical(stack_input, terms)]  # [N, 1, W, 2F] each
            condition_row = row_of(condition_map) if self.conditioned else None

            def next_pixel(j, row):
                params = self._horizontal(self._stack_input(row, condition_row), links)  # [N, 1, W, ...]
                pixel = {key: value[:, 0, j] for key, value in params.items()}  # [N, C] (mixtures [N, C, M])
                pixel_seed = None if seed is None else tf.random.experimental.stateless_fold_in(seed, i * width + j)
                return j + 1, row + columns[j][None, None, :, None] * self._choose(pixel, pixel_seed)[:, None, None, :]

            _, row = tf.while_loop(lambda j, _: j < width, next_pixel, (0, tf.zeros([size, 1, width, channels])))
            return i + 1, x + tf.one_hot(i, height)[None, :, None, None] * row

        _, image = tf.while_loop(lambda i, _: i < height, next_row, (0, tf.zeros([size, height, width, channels])))
        return {**self.call([image, condition] if self.conditioned else image), "image": image}

    def generate(self, condition=None, num_samples=None, seed=None):
        """Images pixel by pixel: `image` `[N, H, W, C]` and the likelihood's parameters at it.

        With a stateless `seed` (int32 `[2]`), exact draws x ~ p(x | c); with `seed=None`, the
        greedy image: each pixel the conditional mean given the pixels before it, rounded to
        the data's support (deterministic). `num_samples` sets N when unconditioned (else N is
        the condition's batch). The whole image is one compiled `tf.while_loop` (rows, and
        pixels within a row).
        """
        if self.conditioned:
            if condition is None:
                raise ValueError(f"this PixelCNN is conditioned on {self.condition_shape}: generate needs a condition")
            condition = tf.convert_to_tensor(condition)
            if tuple(condition.shape[1:]) != self.condition_shape:
                raise ValueError(
                    f"condition must have shape [N, {', '.join(map(str, self.condition_shape))}], got {condition.shape}"
                )
        else:
            num_samples = validation.num_samples(num_samples)
        seed = None if seed is None else distributions.seed_pair(seed)
        if not self.built:  # its variables made here, not inside the compiled loop
            self.build(None)
        return self._compiled.fn(condition, num_samples, seed)

    def get_config(self):
        return {
            **super().get_config(),
            "event_shape": self.event_shape,
            "likelihood": self.likelihood,
            "filters": self.filters,
            "num_blocks": self.num_blocks,
            "kernel_size": self.kernel_size,
            "condition_shape": self.condition_shape,
            "concatenate_input": self.concatenate_input,
            "num_mixtures": self.num_mixtures,
            "seed": self.seed,
        }
