"""The one module that validates inputs, for the eager API and for compiled serving functions alike.

Every public entry point (constructors, model methods, `fit`/`evaluate`, the SavedModel
signatures built by `serving_endpoints`) calls these functions; nothing else re-implements them.
Each check runs where the value is known:

- Python values and eager tensors are checked now and a bad one raises `ValueError` saying what
  was expected and what came.
- Traced tensors (inside a `tf.function`: a serving signature, a `tf.data` map) get graph
  assertions whose message starts with `INVALID_INPUT` and names the problem, so a served
  request fails with the reason on the first line of its error; `reraise_invalid_input`
  turns those assertion errors back into `ValueError` for `fit` and `evaluate`.
"""

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

# Prefix of every graph assertion's message (see `reraise_invalid_input`).
INVALID_INPUT = "zoo invalid input: "


def _traced(value):
    return tf.is_tensor(value) and not tf.executing_eagerly()


def _asserted(value, condition, message, *data):
    """`value` once `condition` holds at run time; otherwise the run fails with `message` first."""
    check = tf.debugging.Assert(condition, [INVALID_INPUT + message, *data], summarize=8)
    with tf.control_dependencies([check]):
        return tf.nest.map_structure(tf.identity, value)


# Python configuration values ---------------------------------------------------------


def positive_int(name, value, minimum=1):
    """`value` as an int, if it is a Python or NumPy integer (not a bool, not a float) >= `minimum`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def positive_float(name, value):
    """`value` as a float, if it is a finite Python or NumPy number > 0 (not a bool)."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def non_negative_float(name, value):
    """`value` as a float, if it is a finite Python or NumPy number >= 0 (not a bool)."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def boolean(name, value):
    """`value` as a bool, if it is a Python or NumPy bool (not a string such as "False", which is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def positive_ints(name, values, minimum=1):
    """A non-empty sequence of ints >= `minimum`, as a tuple."""
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a non-empty sequence of ints >= {minimum}, got {values!r}") from None
    if not values or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < minimum
                         for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= {minimum}, got {values!r}")
    return tuple(int(v) for v in values)


def per_layer(name, values, depth, kind):
    """One non-negative number per hidden layer (`kind` int or float), as a tuple of `kind`."""
    expected = f"{name} must be {depth} non-negative numbers (one per hidden layer, from x upward), got {values!r}"
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(expected) from None
    if len(values) != depth or any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) or v < 0
        for v in values
    ):
        raise ValueError(expected)
    if kind is int and any(v != int(v) for v in values):
        raise ValueError(f"{name} must be ints, got {values!r}")
    return tuple(kind(v) for v in values)


LEVEL_KEYS = ("hidden_units", "latent_dim", "num_slots", "attention", "composition")
SCALE_KEYS = ("groups", "latent_channels")


def _list_of_dicts(name, values, required, optional, order):
    """A non-empty sequence of dicts with the `required` keys (and maybe `optional` ones), as a tuple."""
    expected = f"{name} must be a non-empty sequence of dicts with keys {required}"
    expected += f" (optional {optional})" if optional else ""
    expected += f", {order}"
    if isinstance(values, (str, bytes, dict)):
        raise ValueError(f"{expected}, got {values!r}")
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{expected}, got {values!r}") from None
    if not values or not all(isinstance(value, dict) for value in values):
        raise ValueError(f"{expected}, got {values!r}")
    for i, value in enumerate(values):
        unknown = sorted(set(value) - set(required) - set(optional))
        missing = [key for key in required if key not in value]
        if unknown or missing:
            raise ValueError(f"{expected}; entry {i} has unknown keys {unknown} and lacks {missing}: {value!r}")
    return values


def levels(values):
    """A level stack's `levels`: a non-empty sequence of dicts, from x upward, as a tuple of dicts.

    Each level: `hidden_units` (ints >= 1, its deterministic layers from x upward) and
    `latent_dim` (int >= 1); optionally a memory in its generative layers: `num_slots` (one
    int >= 0 per hidden layer), `attention` and `composition` (see `zoo.layers.MemoryBlock`).
    """
    checked = []
    for i, level in enumerate(_list_of_dicts("levels", values, LEVEL_KEYS[:2], LEVEL_KEYS[2:], "from x upward")):
        hidden_units = positive_ints(f"levels[{i}]['hidden_units']", level["hidden_units"])
        entry = {"hidden_units": hidden_units, "latent_dim": positive_int(f"levels[{i}]['latent_dim']", level["latent_dim"])}
        if level.get("num_slots") is not None:
            entry["num_slots"] = per_layer(f"levels[{i}]['num_slots']", level["num_slots"], len(hidden_units), int)
            entry["attention"] = level.get("attention", "sigmoid")
            entry["composition"] = level.get("composition", "ladder")
        checked.append(entry)
    return tuple(checked)


def scales(values):
    """NVAE's `scales`: a non-empty sequence of dicts `{"groups": int >= 1, "latent_channels": int >= 1}`, as a list."""
    return [
        {key: positive_int(f"scales[{i}][{key!r}]", scale[key]) for key in SCALE_KEYS}
        for i, scale in enumerate(_list_of_dicts("scales", values, SCALE_KEYS, (), "from the top (coarsest) scale down"))
    ]


def constructor_seed(seed):
    """A model's or layer's `seed` argument: None or an int (not a bool)."""
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be None or an int, got {seed!r}")
    return None if seed is None else int(seed)


def derived_seed(seed, index):
    """The seed of a model's `index`-th sub-layer (None stays None): distinct, reproducible streams."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed) % 2**32, index]).generate_state(1)[0] % 2**31)


# Counts and seeds at call time --------------------------------------------------------


def num_samples(value, name="num_samples"):
    """A count of samples >= 1: a Python or NumPy int, an integer scalar tensor.

    Returns an int, or, traced, the int32 tensor guarded by an assertion.
    """
    if tf.is_tensor(value) or isinstance(value, np.ndarray):
        value = tf.convert_to_tensor(value)
        if not value.dtype.is_integer or value.shape.rank not in (0, None):
            raise ValueError(
                f"{name} must be an int >= 1 (an integer scalar), got dtype {value.dtype.name} and shape "
                f"{value.shape}"
            )
        if _traced(value):
            value = tf.cast(value, tf.int32)
            return _asserted(value, value >= 1, f"{name} must be an int >= 1, got", value)
        value = value.numpy().item()
    return positive_int(name, value)


def temperature(value):
    """A sampling temperature: a finite Python or NumPy number >= 0, as a float."""
    return non_negative_float("temperature", value)


def seed(value):
    """A call's `seed`: None, an int, a `keras.random.SeedGenerator` or integers of shape [2] (stateless)."""
    if value is None or isinstance(value, keras.random.SeedGenerator):
        return value
    expected = "seed must be None, an int32 or 2 of them (a stateless seed)"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if not -2**31 <= value < 2**31:  # the samplers take int32 seeds: a larger one would wrap around
            raise ValueError(f"{expected}, each in [-2**31, 2**31), got {value!r}")
        return int(value)
    if isinstance(value, (str, bytes, float, bool, np.bool_)) or value is Ellipsis:
        raise ValueError(f"{expected}, got {value!r}")
    try:
        tensor = tf.convert_to_tensor(value)
    except (TypeError, ValueError):
        raise ValueError(f"{expected}, got {value!r}") from None
    if not tensor.dtype.is_integer or tensor.shape.rank not in (0, 1, None) or (
        tensor.shape.rank == 1 and tensor.shape[0] not in (2, None)
    ):
        raise ValueError(f"{expected}, got dtype {tensor.dtype.name} and shape {tensor.shape}")
    if tensor.dtype.max > 2**31 - 1:  # int64, uint32, uint64: a value beyond int32 would wrap around in the samplers
        in_range = tf.reduce_all(tensor < 2**31) if tensor.dtype.is_unsigned else tf.reduce_all(
            (tensor >= -2**31) & (tensor < 2**31))
        if not _traced(tensor) and not in_range:
            raise ValueError(f"{expected}, each in [-2**31, 2**31), got {tensor.numpy().tolist()!r}")
        if _traced(tensor):
            tensor = _asserted(tensor, in_range, "seed values must be in [-2**31, 2**31), got", tensor)
    if _traced(tensor) and tensor.shape.rank != 0:
        return _asserted(tensor, tf.equal(tf.size(tensor), 2), "seed must hold 2 integers, got", tf.shape(tensor))
    return tensor


# Tensors ----------------------------------------------------------------------------------


def _shape_text(leading, event_shape):
    return "[" + ", ".join([leading, *map(str, event_shape)]) + "]"


def check_spec(x, event_shape, name="x", leading="batch"):
    """Static checks that hold for eager, traced and symbolic tensors and `tf.TensorSpec`s: float dtype, shape."""
    dtype = tf.as_dtype(x.dtype)
    if not dtype.is_floating:
        raise ValueError(
            f"{name} must be float (float16/32/64), got dtype {dtype.name}; cast it, e.g. tf.cast({name}, tf.float32)"
        )
    shape = tf.TensorShape(x.shape)
    expected = (None,) + tuple(event_shape)
    if shape.rank is not None and (
        shape.rank != len(expected)
        or any(s is not None and e is not None and s != e for s, e in zip(shape.as_list(), expected))
    ):
        raise ValueError(f"{name} must have shape {_shape_text(leading, event_shape)}, got shape {shape.as_list()}")


def examples(x, event_shape, likelihood=None, name="x", leading="batch"):
    """A batch of examples `[N, *event_shape]`: float, finite and, for a likelihood, in its support.

    `likelihood="bernoulli"` requires values in {0, 1}; `"logistic_mixture"` 8-bit values k / 255
    (k = 0..255, to within `EIGHT_BIT_TOLERANCE` of a step); `"gaussian"` or None any finite value.
    Returns a float32 tensor (traced: guarded by assertions that run before anything reads it).
    """
    if not tf.is_tensor(x):
        x = np.asarray(x)
        if x.dtype == object or x.dtype.kind in "USV":
            raise ValueError(f"{name} must be a float array of shape {_shape_text(leading, event_shape)}, got {x.dtype}")
    x = tf.convert_to_tensor(x)
    check_spec(x, event_shape, name, leading)
    if _traced(x):
        return _asserted_examples(x, event_shape, likelihood, name, leading)
    values = x.numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or Inf values; expected finite values")
    if likelihood == "bernoulli" and not np.all((values == 0) | (values == 1)):
        raise ValueError(
            f"the Bernoulli likelihood expects {name} binary, with values in {{0, 1}}; got values in "
            f"[{values.min():g}, {values.max():g}] (binarize the data, or use likelihood='gaussian')"
        )
    if likelihood == "logistic_mixture":
        off = ~_eight_bit(values.astype(np.float64))
        if off.any():
            raise ValueError(
                f"the logistic_mixture likelihood expects {name} 8-bit, with values k/255 for k = 0..255 in [0, 1]; "
                f"got {int(off.sum())} other values, e.g. {values[off].flat[0]:g} (scale uint8 images by 1/255)"
            )
    return tf.cast(x, tf.float32)


def non_empty(x, name):
    """`x` (a tensor) if its first axis holds at least one entry (traced: guarded by an assertion)."""
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one entry, got shape {x.shape.as_list()}")
    if _traced(x):
        return _asserted(x, tf.shape(x)[0] > 0, f"{name} must hold at least one entry, got shape", tf.shape(x))
    return x


# How far (in units of one 8-bit step, 1/255) a value may lie from k/255: float32 rounding of k/255.
EIGHT_BIT_TOLERANCE = 1e-3


def _eight_bit(values):
    """Element-wise: is each value k / 255 for an integer k in [0, 255] (to within the tolerance)? NumPy or TF."""
    module = tf if tf.is_tensor(values) else np
    steps = values * 255.0
    return (module.abs(steps - module.round(steps)) <= EIGHT_BIT_TOLERANCE) & (values >= 0) & (values <= 1)


def _asserted_examples(x, event_shape, likelihood, name, leading):
    # The shape is checked first and at run time: a server may pass a tensor that does not match
    # the signature's static shape. The size test catches extra axes that a folded rank would hide.
    shape = tf.shape(x)
    rank = len(event_shape) + 1
    dims = tf.concat([shape, tf.zeros([rank], tf.int32)], axis=0)[1:rank]
    shape_ok = tf.reduce_all(tf.equal(dims, event_shape)) & tf.equal(
        tf.size(x, out_type=tf.int64), tf.cast(shape[0], tf.int64) * math.prod(event_shape)
    )
    x = _asserted(x, shape_ok, f"{name} must have shape {_shape_text(leading, event_shape)}, got shape", shape)
    x = _asserted(x, tf.reduce_all(tf.math.is_finite(x)), f"{name} contains NaN or Inf values; expected finite values")
    if likelihood == "bernoulli":
        x = _asserted(
            x, tf.reduce_all(tf.equal(x, 0) | tf.equal(x, 1)),
            f"the Bernoulli likelihood expects {name} binary, with values in {{0, 1}}",
        )
    if likelihood == "logistic_mixture":
        x = _asserted(
            x, tf.reduce_all(_eight_bit(tf.cast(x, tf.float32))),
            f"the logistic_mixture likelihood expects {name} 8-bit, with values k/255 for k = 0..255 in [0, 1]",
        )
    return tf.cast(x, tf.float32)


def latents(z, latent_dim, name="z"):
    """Latents `[N, latent_dim]`: float and finite. Returns float32 (traced: guarded by assertions)."""
    z = tf.convert_to_tensor(z)
    if not z.dtype.is_floating or z.shape.rank not in (2, None) or z.shape[-1] not in (latent_dim, None):
        raise ValueError(
            f"{name} must be float latents of shape [N, {latent_dim}], got shape {z.shape} and dtype {z.dtype.name}"
        )
    if _traced(z):
        shape = tf.shape(z)
        ok = tf.equal(tf.size(shape), 2) & tf.equal(shape[-1], latent_dim)
        z = _asserted(z, ok, f"{name} must have shape [N, {latent_dim}], got shape", shape)
        z = _asserted(z, tf.reduce_all(tf.math.is_finite(z)), f"{name} contains NaN or Inf values; expected finite latents")
        return tf.cast(z, tf.float32)
    bad = ~np.isfinite(z.numpy())
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or Inf values; expected finite latents")
    return tf.cast(z, tf.float32)


def indices(values, upper, name, length=None, upper_name=None):
    """Integers `[length]` in `[0, upper)` (e.g. memory addresses, class labels); returns int32.

    `upper` and `length` may be tensors (traced: the checks become assertions).
    """
    values = tf.convert_to_tensor(values)
    shape_text = f"[{length}]" if isinstance(length, int) else "[N]"
    if not values.dtype.is_integer or values.shape.rank not in (1, None) or (
        isinstance(length, int) and values.shape.rank == 1 and values.shape[0] not in (None, length)
    ):
        raise ValueError(
            f"{name} must be integers of shape {shape_text}, got dtype {values.dtype.name} and shape {values.shape}"
        )
    values = tf.cast(values, tf.int32)
    bound = f"{upper_name}={upper}" if upper_name and not tf.is_tensor(upper) else upper_name or str(upper)
    if _traced(values) or _traced(upper) or _traced(length):
        checks = [
            tf.debugging.Assert(tf.reduce_all(values >= 0), [INVALID_INPUT + f"{name} must be >= 0"]),
            tf.debugging.Assert(tf.reduce_all(values < upper), [INVALID_INPUT + f"{name} must be < {bound}"]),
        ]
        if length is not None:
            checks.append(tf.debugging.Assert(
                tf.equal(tf.size(values), length), [INVALID_INPUT + f"{name} must hold {shape_text} values, got",
                                                    tf.size(values)],
            ))
        with tf.control_dependencies(checks):
            return tf.identity(values)
    array = values.numpy()
    if length is not None and array.size != int(length):
        raise ValueError(f"{name} must be integers of shape [{int(length)}], got shape {list(array.shape)}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be >= 0, got minimum {array.min()}")
    if array.size and array.max() >= int(upper):
        raise ValueError(f"{name} must be < {bound}, got {array.max()}")
    return values


def class_labels(labels, num_entries, num_classes=None, name="memory_labels"):
    """One integer label per memory entry, in `[0, num_classes)`; returns `(int32 labels, num_classes)`.

    `num_classes=None` (eager only) is `max(labels) + 1`.
    """
    if num_classes is None:
        values = indices(labels, 2**31 - 1, name, num_entries).numpy()
        num_classes = int(values.max()) + 1 if values.size else 1
    num_classes = num_samples(num_classes, "num_classes")
    return indices(labels, num_classes, name, num_entries, upper_name="num_classes"), num_classes


# Training data ----------------------------------------------------------------------------


def training_data(data, check_spec_fn, check_batch_fn, check_element_fn):
    """Checks what `fit`/`evaluate` get: arrays now, datasets and generators batch by batch as they are read.

    `check_spec_fn(element_spec)` checks a dataset's element spec, `check_batch_fn(batch)` an
    in-memory batch (eager) and `check_element_fn(element)` a traced dataset element.
    """
    if isinstance(data, tf.data.Dataset):
        check_spec_fn(data.element_spec)
        return data.map(check_element_fn)
    if isinstance(data, (np.ndarray, tf.Tensor, dict, tuple, list)):
        check_batch_fn(data)
        return data
    if isinstance(data, keras.utils.PyDataset) or not hasattr(data, "__next__"):
        raise ValueError(
            "fit/evaluate take arrays or tensors, a tf.data.Dataset or a generator of batches, "
            f"got {type(data).__name__}"
        )

    def checked():
        for batch in data:
            check_batch_fn(batch[0] if isinstance(batch, tuple) else batch)  # Keras reads (inputs, targets, ...)
            yield batch

    return checked()


@contextlib.contextmanager
def reraise_invalid_input():
    """Turns a failed graph assertion of this module (e.g. in a `tf.data` map) into a `ValueError`."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        if INVALID_INPUT not in error.message:
            raise
        reason = error.message.split(INVALID_INPUT, 1)[1].split("\n", 1)[0]
        raise ValueError(reason.rstrip(" .'\"]")) from None


# Activations the papers use that Keras names differently: Lasagne's leaky_rectify has slope 0.01 below zero
# (Keras's leaky_relu: 0.2); the Ladder VAE's authors use it (casperkaae/LVAE run_models.py, -nonlin_enc/_dec).
EXTRA_ACTIVATIONS = {"leaky_relu_0.01": lambda x: keras.activations.leaky_relu(x, negative_slope=0.01)}


def activation(name):
    """The activation function `name` names: one of `EXTRA_ACTIVATIONS` or a Keras activation."""
    if isinstance(name, str) and name in EXTRA_ACTIVATIONS:
        return EXTRA_ACTIVATIONS[name]
    try:
        return keras.activations.get(name)
    except ValueError:
        raise ValueError(f"activation must be a Keras activation name or one of {sorted(EXTRA_ACTIVATIONS)}, "
                         f"got {name!r}") from None
