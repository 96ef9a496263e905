"""What a run logged to TensorBoard, read back: its learning curve and its training wall time."""

import math
import os

from zoo.runs.errors import UsageError
from zoo.runs.files import LOG_DIR


def _sessions(model_dir, subdirectory):
    """The TensorBoard events in `<model_dir>/logs/<subdirectory>`, one list per event file (one per training session)."""
    import glob

    import tensorflow as tf

    sessions = []
    for path in sorted(glob.glob(os.path.join(model_dir, LOG_DIR, subdirectory, "events.out.tfevents.*"))):
        # File by file: a session killed mid-write leaves a torn last record, which costs that record, not the files after.
        records = tf.data.TFRecordDataset(path).ignore_errors()
        sessions.append([tf.compat.v1.Event.FromString(record.numpy()) for record in records])
    return sessions


def scalars(model_dir, subdirectory):
    """`{tag: {step: value}}` of the scalar summaries in `<model_dir>/logs/<subdirectory>`."""
    import tensorflow as tf

    scalars = {}
    # In the order written: an epoch logged twice (re-run after a lost checkpoint) keeps the value training went on from.
    events = [event for session in _sessions(model_dir, subdirectory) for event in session]
    for event in sorted(events, key=lambda event: event.wall_time):
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                number = value.simple_value
            elif kind == "tensor" and value.metadata.plugin_data.plugin_name == "scalars":
                number = float(tf.make_ndarray(value.tensor))
            else:
                continue
            scalars.setdefault(value.tag, {})[event.step] = number
    return scalars


def learning_curve(model_dir):
    """The per-epoch bounds a `zoo.train` run logged to TensorBoard (`logs/train`, `logs/validation`).

    Args:
        model_dir: str, a directory written by `zoo.train`.

    Returns:
        dict: `epochs`, one dict per epoch found in the logs, in order: `epoch` (from 1), `train_bound`
        and `validation_bound` (the mean bound per example in nats, a lower bound on log p(x) that
        Keras logged as `bound` and `val_bound`; None where not logged) and, when the run logged
        `val_log_likelihood` (`zoo.runs.hypermodel.ValidationLogLikelihood`), `validation_nll` (-log p(x),
        importance-sampled); `missing_epochs`, epochs before the last one found that have no
        training bound in the logs (a session killed before TensorBoard flushed them);
        `selected_by`, `"validation_bound"` or, for runs without a validation split,
        `"train_bound"`; `best_epoch`, the epoch whose weights `best.weights.h5` holds (the first
        with the highest finite `selected_by`, as training keeps them).

    Raises:
        UsageError: the directory holds no per-epoch training bound.
    """
    train_bounds = scalars(model_dir, "train").get("epoch_bound")
    if not train_bounds:
        raise UsageError(f"--model_dir {model_dir!r} holds no TensorBoard epoch logs ({LOG_DIR}/train): "
                         "no epoch has finished, or the logs were not kept")
    validation = scalars(model_dir, "validation")
    # Keras logs epoch e (from 0) at step e.
    epochs = []
    for step in sorted(train_bounds):
        row = {"epoch": step + 1, "train_bound": train_bounds[step],
               "validation_bound": validation.get("epoch_bound", {}).get(step)}
        if "epoch_log_likelihood" in validation:
            log_likelihood = validation["epoch_log_likelihood"].get(step)
            row["validation_nll"] = None if log_likelihood is None else -log_likelihood
        epochs.append(row)
    selected_by = "validation_bound" if validation.get("epoch_bound") else "train_bound"
    finite = [row for row in epochs if row[selected_by] is not None and math.isfinite(row[selected_by])]
    best = max(finite, key=lambda row: row[selected_by], default=None)  # max keeps the first of equal values
    logged = {row["epoch"] for row in epochs}
    return {"epochs": epochs, "missing_epochs": [e for e in range(1, max(logged) + 1) if e not in logged],
            "selected_by": selected_by, "best_epoch": None if best is None else best["epoch"]}


def training_seconds(model_dir):
    """Training wall time from the run's TensorBoard event times: the sum over its training sessions (one
    event file each) of the time from the session's start to its last logged epoch. Time between sessions
    is not counted, nor a killed session's unfinished epoch (a resumption trains it again)."""
    # The first event of a file is written when training opens it, the last after the session's last epoch.
    return sum(max(e.wall_time for e in session) - min(e.wall_time for e in session)
               for session in _sessions(model_dir, "train") if session)
