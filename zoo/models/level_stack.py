"""The base of the zoo's level stacks: the bound's terms, per-level KL monitoring, warm-up, sampling."""

import keras
import tensorflow as tf

from zoo import distributions, objectives, validation
from zoo.layers.pixelcnn import DECODERS
from zoo.models.base import LatentVariableModel

# A unit (or a group) is active when its KL, averaged over a batch, exceeds this many nats.
ACTIVE_KL = 0.1


class LevelStack(LatentVariableModel):
    """Base class of models built as a stack of stochastic levels (groups of latents).

    A subclass builds its levels, calls `track_groups(num_groups)` before it is built, sets
    `prior` (the top level's N(0, I)) and implements

    - `_posterior_terms(x, num_samples, training, seed)` (and `features=` if `importance_features`
      returns any): a dict with `log_px_z`, `log_pz`, `log_qz` `[S, B]`, `kl_levels` `[B, L]`
      (each level's KL, averaged over the S samples), `kl_units` `[B, U]` (the same per latent
      unit) and `reconstruction` `[B, *input_shape]`;
    - `_generate(z_top, temperature, seed, **options)`: the likelihood's parameters after
      ancestral sampling below a top-level draw, every prior's scale times `temperature`.

    This class turns them into the outputs of `call` (so into the bound, the loss and the
    metrics), the importance weights of `log_likelihood`, and `sample`; it adds KL warm-up
    and reports, while training, the KL of every level (`kl_0` ... when there are several)
    and `active_units`, the number of units whose KL over a batch exceeds 0.1 nats.

    Args:
        kl_warmup_steps: int >= 0, updates over which the KL weight rises linearly to 1 (0: none).
        input_shape, likelihood, num_importance_samples, seed: as in `LatentVariableModel`.
    """

    # Keyword options of `sample` beyond seed and temperature, passed to `_generate`.
    SAMPLE_OPTIONS = ()

    # The order of the groups in `kl_levels`, `kl_units` and the `kl_i` metrics, for readers and plots.
    group_order = "from x upward"
    # The KL weight's floor during warm-up: 0 is Sønderby et al. (2016)'s linear warm-up from 0.
    kl_warmup_floor = 0.0

    def __init__(self, kl_warmup_steps=0, **kwargs):
        super().__init__(**kwargs)
        self.kl_warmup_steps = validation.positive_int("kl_warmup_steps", kl_warmup_steps, minimum=0)

    def track_groups(self, num_groups):
        """Creates the monitoring metrics for `num_groups` levels (call in `__init__`, before building)."""
        self.active_units_tracker = keras.metrics.Mean(name="active_units")
        self.level_kl_trackers = (
            [keras.metrics.Mean(name=f"kl_{l}") for l in range(num_groups)] if num_groups > 1 else []
        )

    @property
    def num_levels(self):
        return len(self.levels)

    def call(self, inputs, training=False):
        self.check_input_spec(inputs)
        return self._outputs(self._posterior_terms(inputs, self.num_importance_samples, training))

    def _outputs(self, terms):
        return {
            "log_weights": tf.transpose(terms["log_px_z"] + terms["log_pz"] - terms["log_qz"]),  # [B, K]
            "log_px_z": tf.transpose(terms["log_px_z"]),  # [B, K]
            "kl": tf.reduce_sum(terms["kl_levels"], axis=-1),
            "kl_levels": terms["kl_levels"],  # [B, L]
            "kl_units": terms["kl_units"],  # [B, U]
            "reconstruction": terms["reconstruction"],
        }

    def set_decoder_options(self, decoder_type, pixelcnn_filters, pixelcnn_blocks, pixelcnn_kernel_size,
                            concatenate_input):
        """Checks and stores the observation decoder's options: `decoder_type` ("factorized" or "pixelcnn") and
        the PixelCNN's filters, blocks, kernel size and whether it reads the image (`concatenate_input`)."""
        if decoder_type not in DECODERS:
            raise ValueError(f"decoder_type must be one of {DECODERS}, got {decoder_type!r}")
        self.decoder_type = decoder_type
        self.pixelcnn_filters = validation.positive_int("pixelcnn_filters", pixelcnn_filters)
        self.pixelcnn_blocks = validation.positive_int("pixelcnn_blocks", pixelcnn_blocks)
        self.pixelcnn_kernel_size = validation.positive_int("pixelcnn_kernel_size", pixelcnn_kernel_size)
        self.concatenate_input = validation.boolean("concatenate_input", concatenate_input)

    def kl_weight(self):
        """beta = max(min(1, t / kl_warmup_steps), kl_warmup_floor) at the optimizer's update t (1-based)
        (`zoo.objectives.kl_warmup`); 1.0 without warm-up or optimizer."""
        if not self.kl_warmup_steps or getattr(self, "optimizer", None) is None:
            return 1.0
        return objectives.kl_warmup(self.optimizer.iterations + 1, self.kl_warmup_steps, self.kl_warmup_floor)

    def batch_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().batch_loss(x, y, y_pred, sample_weight, training)
        self.active_units_tracker.update_state(
            tf.reduce_sum(tf.cast(tf.reduce_mean(y_pred["kl_units"], axis=0) > ACTIVE_KL, tf.float32))
        )
        for l, tracker in enumerate(self.level_kl_trackers):
            tracker.update_state(y_pred["kl_levels"][:, l])
        return loss

    def log_importance_weights(self, x, num_samples, seed, **shared):
        # `shared`: `features=importance_features(x)` for the stacks that compute it once per estimate (NVAE).
        terms = self._posterior_terms(x, num_samples, False, seed, **shared)
        return terms["log_px_z"] + terms["log_pz"] - terms["log_qz"]

    def sample(self, num_samples, *, seed=None, temperature=1.0, **decode_options):
        """Ancestral samples: the decoder mean at z ~ p(z), `[num_samples, *input_shape]`.

        `temperature` (float >= 0) scales every level's prior standard deviation (0: the
        prior means throughout). `decode_options`, the class's `SAMPLE_OPTIONS`, go to the
        generative layers (MemVAE's `memory_enabled`). An autoregressive decoder (PixelCNN)
        returns the images it draws, x ~ p(x | z), pixel by pixel.
        """
        unknown = sorted(set(decode_options) - set(self.SAMPLE_OPTIONS))
        if unknown:
            accepted = ", ".join(("num_samples", "seed", "temperature") + self.SAMPLE_OPTIONS)
            raise ValueError(f"{type(self).__name__}.sample takes {accepted}; got {', '.join(unknown)}")
        num_samples = validation.num_samples(num_samples)
        temperature = validation.temperature(temperature)
        seed = distributions.seed_pair(validation.seed(seed) if seed is not None else self.seed_generator)
        z_top = self.prior.sample(num_samples, seed=seed)
        if temperature != 1.0:
            z_top *= temperature
        lower = tf.random.experimental.stateless_fold_in(seed, self.num_levels)
        outputs = self._generate(z_top, temperature, lower, **decode_options)
        return outputs["image"] if "image" in outputs else outputs["mean"]

    def get_config(self):
        return {**super().get_config(), "kl_warmup_steps": self.kl_warmup_steps}
