"""The papers' training recipes: what a preset's `recipe` may say, and its optimizer as Keras objects.

A recipe (`zoo.presets`) is plain data. `check_recipe` rejects keys and optimizers the zoo does
not know; `build_optimizer` builds the optimizer and learning-rate schedule it names.
"""

import keras
import tensorflow as tf

# Keys a training run applies (the CLI's flags override batch_size and learning_rate).
APPLIED_KEYS = {
    "optimizer": "'adam' (default) or 'adamax'",
    "learning_rate": "the (peak) learning rate",
    "batch_size": "examples per update",
    "epsilon": "the optimizer's epsilon",
    "max_global_norm": "Adam only: rescale gradients to this total norm (ClippedAdam)",
    "max_value": "Adam only: clip gradient elements to [-max_value, max_value] (ClippedAdam)",
    "decay_start_epoch": "with decay_per_epoch: constant rate for these epochs, then per-epoch decay (EpochDecay)",
    "decay_per_epoch": "the factor per epoch after decay_start_epoch",
    "warmup_epochs": "with learning_rate_min: linear warm-up over these epochs, then cosine decay",
    "learning_rate_min": "the rate the cosine decay ends at, on the run's last step",
    "weight_decay": "L2 penalty added to the gradient (torch.optim.Adamax's coupled weight_decay)",
}
# Keys that record the paper's protocol for the reader; a run's flags (--epochs, --train_split) choose its own.
REFERENCE_KEYS = {"epochs": "the paper's training length", "train_split": "the paper's training split"}
OPTIMIZERS = ("adam", "adamax")


def check_recipe(name, recipe):
    """Raises ValueError if preset `name`'s `recipe` has a key, optimizer or schedule the zoo does not build."""
    unknown = sorted(set(recipe) - set(APPLIED_KEYS) - set(REFERENCE_KEYS))
    if unknown:
        raise ValueError(f"preset {name!r}: unknown recipe key(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted({**APPLIED_KEYS, **REFERENCE_KEYS}))}")
    optimizer = recipe.get("optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"preset {name!r}: unknown recipe optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    if optimizer != "adam" and {"max_global_norm", "max_value"} & set(recipe):
        raise ValueError(f"preset {name!r}: gradient clipping (max_global_norm, max_value) is built for adam only, "
                         f"not {optimizer!r}")
    if optimizer != "adamax" and "weight_decay" in recipe:
        raise ValueError(f"preset {name!r}: weight_decay (coupled L2) is built for adamax only, not {optimizer!r}")
    for pair in (("decay_start_epoch", "decay_per_epoch"), ("warmup_epochs", "learning_rate_min")):
        if len(set(pair) & set(recipe)) == 1:
            raise ValueError(f"preset {name!r}: recipe keys {pair[0]!r} and {pair[1]!r} go together")
    if "decay_start_epoch" in recipe and "warmup_epochs" in recipe:
        raise ValueError(f"preset {name!r}: a recipe has one schedule: per-epoch decay or warm-up + cosine, not both")


def learning_rate_schedule(recipe, learning_rate, steps_per_epoch, epochs):
    """The recipe's learning rate: a float, `EpochDecay`, or linear warm-up then cosine decay over `epochs`.

    Warm-up + cosine is NVlabs/NVAE's train.py: the rate rises linearly from 0 over `warmup_epochs`,
    then follows a cosine from `learning_rate` down to `learning_rate_min`, reached on the run's last
    step (the authors step their CosineAnnealingLR once per epoch; this decays every step).
    """
    if "decay_start_epoch" in recipe:
        return EpochDecay(learning_rate, steps_per_epoch, recipe["decay_start_epoch"], recipe["decay_per_epoch"])
    if "warmup_epochs" in recipe:
        warmup_steps = recipe["warmup_epochs"] * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, epochs * steps_per_epoch - 1 - warmup_steps),  # the last update: lr_min
            alpha=recipe["learning_rate_min"] / learning_rate, warmup_target=learning_rate, warmup_steps=warmup_steps,
        )
    return learning_rate


def build_optimizer(recipe, learning_rate, steps_per_epoch, epochs, skip_threshold=None):
    """The optimizer a `check_recipe`-ed `recipe` names (see `APPLIED_KEYS`), at `learning_rate`, for a run of
    `epochs` epochs of `steps_per_epoch` updates.

    `skip_threshold` (Adam only) skips updates with larger gradient norms (`ClippedAdam`).
    """
    schedule = learning_rate_schedule(recipe, learning_rate, steps_per_epoch, epochs)
    options = {key: recipe[key] for key in ("epsilon",) if key in recipe}
    if recipe.get("optimizer", "adam") == "adamax":
        if skip_threshold is not None:
            raise ValueError("skip_threshold is built for adam only, not 'adamax'")
        return L2Adamax(schedule, weight_decay_l2=recipe.get("weight_decay", 0.0), **options)
    clipping = {key: recipe[key] for key in ("max_global_norm", "max_value") if key in recipe}
    if skip_threshold is not None:
        clipping["skip_threshold"] = skip_threshold
    if clipping:
        return ClippedAdam(schedule, **options, **clipping)
    return keras.optimizers.Adam(schedule, **options)


@keras.saving.register_keras_serializable(package="zoo")
class EpochDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant learning rate, then multiplied by `decay_per_epoch` every epoch after `decay_start_epoch`.

        lr(step) = learning_rate * decay_per_epoch ** max(0, floor(step / steps_per_epoch) + 1 - decay_start_epoch)

    i.e. epochs 1..decay_start_epoch (1-based) run at `learning_rate` and each later one at
    `decay_per_epoch` times the rate of the epoch before, as thu-ml/MEM_DGM anneals after each epoch.

    Args:
        learning_rate: float, the initial rate.
        steps_per_epoch: int, optimizer steps per epoch.
        decay_start_epoch: int, epochs at the initial rate.
        decay_per_epoch: float, the factor per epoch after that.

    Example:

    >>> schedule = EpochDecay(1e-3, steps_per_epoch=500, decay_start_epoch=1000, decay_per_epoch=0.998)
    >>> model.compile(optimizer=keras.optimizers.Adam(schedule))

    References:
        Li, Zhu & Zhang 2016 (thu-ml/MEM_DGM: x 0.998 per epoch after epoch 1000).
    """

    def __init__(self, learning_rate, steps_per_epoch, decay_start_epoch, decay_per_epoch):
        self.learning_rate = float(learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.decay_start_epoch = int(decay_start_epoch)
        self.decay_per_epoch = float(decay_per_epoch)

    def __call__(self, step):
        epochs_done = tf.cast(step // self.steps_per_epoch, tf.float32)  # before the current one
        decayed_epochs = tf.maximum(0.0, epochs_done + 1.0 - self.decay_start_epoch)
        return self.learning_rate * self.decay_per_epoch ** decayed_epochs

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_start_epoch": self.decay_start_epoch,
            "decay_per_epoch": self.decay_per_epoch,
        }


@keras.saving.register_keras_serializable(package="zoo")
class ClippedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with the papers' gradient guards: rescale, clip, or skip an update.

        g <- g * min(1, max_global_norm / ||g||_2 over all variables);  g <- clip(g, -max_value, max_value)

    Keras accepts only one of `global_clipnorm` and `clipvalue`; the MemVAE authors apply both,
    in this order (`lasagne.updates.total_norm_constraint`, then `T.clip`).

    With `skip_threshold`, an update whose gradient norm (before clipping) exceeds it, or is
    not finite, is skipped (vdvae's guard against rare huge gradients), but never more than
    `max_consecutive_skips` in a row: the next one is applied with its gradient rescaled to
    norm `skip_threshold`, so a threshold set too low slows training instead of stalling it
    (openai/vdvae#25). A non-finite forced update stays non-finite, for the training loop's
    NaN guard to stop on. `skipped_updates` counts the skips.

    Under a `tf.distribute` strategy the guards see the gradient of the global batch: Keras sums
    the replicas' gradients only in its update step, after them, so this sums them first
    (one more all-reduce) and hands Keras each replica's equal share.

    Args:
        max_global_norm: float or None, the largest total gradient norm.
        max_value: float or None, the largest absolute gradient element.
        skip_threshold: float or None, skip updates whose gradient norm exceeds it.
        max_consecutive_skips: int >= 0, skips allowed in a row. Default `10`.
        *args, **kwargs: as `keras.optimizers.Adam`.

    Example:

    >>> model.compile(optimizer=ClippedAdam(1e-3, epsilon=1e-4, max_global_norm=5.0, max_value=1.0))
    >>> model.compile(optimizer=ClippedAdam(1e-3, skip_threshold=400.0))

    References:
        Li, Zhu & Zhang 2016; thu-ml/MEM_DGM mem_dgm_mlp.py (max_norm = 5, clip_grad = 1, Adam epsilon 1e-4).
        Child 2021, "Very Deep VAEs" (openai/vdvae: skip_threshold).
    """

    def __init__(self, *args, max_global_norm=None, max_value=None, skip_threshold=None, max_consecutive_skips=10,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.max_global_norm = max_global_norm
        self.max_value = max_value
        self.skip_threshold = skip_threshold
        self.max_consecutive_skips = int(max_consecutive_skips)

    def build(self, variables):
        super().build(variables)
        if self.skip_threshold is not None:
            counter = lambda name: self.add_variable((), initializer="zeros", dtype="int64", name=name)  # noqa: E731
            self.skipped_updates, self.consecutive_skips = counter("skipped_updates"), counter("consecutive_skips")

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            present = [i for i, g in enumerate(grads) if g is not None]
            summed = tf.distribute.get_replica_context().all_reduce("sum", [grads[i] for i in present])
            for i, g in zip(present, summed):
                grads[i] = g
        if self.skip_threshold is None:
            return self._apply_clipped(grads, trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        norm = tf.linalg.global_norm([g for g in grads if g is not None])
        skip = tf.logical_and(
            tf.logical_not(norm <= self.skip_threshold),  # NaN norms skip too
            self.consecutive_skips < self.max_consecutive_skips,
        )

        def skipped():
            self.skipped_updates.assign_add(1)
            self.consecutive_skips.assign_add(1)

        def applied():
            self.consecutive_skips.assign(0)
            scale = tf.minimum(1.0, self.skip_threshold / norm)
            self._apply_clipped([None if g is None else g * tf.cast(scale, g.dtype) for g in grads], trainable_variables)

        tf.cond(skip, skipped, applied)

    def _apply_clipped(self, grads, trainable_variables):
        if self.max_global_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.max_global_norm)
        if self.max_value is not None:
            grads = [None if g is None else tf.clip_by_value(g, -self.max_value, self.max_value) for g in grads]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # Keras sums these shares again
            grads = [None if g is None else g / replicas for g in grads]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "max_global_norm": self.max_global_norm,
            "max_value": self.max_value,
            "skip_threshold": self.skip_threshold,
            "max_consecutive_skips": self.max_consecutive_skips,
        }


@keras.saving.register_keras_serializable(package="zoo")
class L2Adamax(keras.optimizers.Adamax):
    """`keras.optimizers.Adamax` with an L2 penalty added to the gradient before the update.

        g <- g + weight_decay_l2 * w

    This is `torch.optim.Adamax`'s `weight_decay`, which NVAE trains with (3e-4). Keras's own
    `weight_decay` is decoupled (AdamW-style, w <- w - lr * wd * w): a different update.

    Args:
        weight_decay_l2: float >= 0, the L2 coefficient. Default `0`.
        *args, **kwargs: as `keras.optimizers.Adamax`.

    Example:

    >>> model.compile(optimizer=L2Adamax(1e-2, weight_decay_l2=3e-4, epsilon=1e-3))

    References:
        Vahdat & Kautz 2020; NVlabs/NVAE train.py (Adamax, eps 1e-3, --weight_decay 3e-4).
    """

    def __init__(self, *args, weight_decay_l2=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_decay_l2 = float(weight_decay_l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.weight_decay_l2:
            gradient = gradient + tf.cast(self.weight_decay_l2, gradient.dtype) * tf.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "weight_decay_l2": self.weight_decay_l2}
