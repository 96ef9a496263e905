"""Importance-sampled log-likelihood of a trained run, with progress and the time left; the result as JSON.

`evaluate(model_dir, ...)` estimates log p(x) with `num_samples` importance samples per example
(Burda et al. 2016) on the first `max_examples` examples of a split and writes
`<model_dir>/evaluation.json`:

    {"dataset", "split", "weights", "seed", "num_samples", "examples", "split_examples", "nll_nats", "nll_stderr",
     "bound_nats", "seconds"}

(`weights`: "best", "last" or "epoch-N"; `seed`: the estimate's, which with the rest makes it reproducible.)

A long evaluation (k = 1000 on thousands of images takes hours on a CPU) keeps its per-example estimates in
`<result_file>.partial` as it goes; run again with the same protocol on the same weights, it resumes after the
batches already done and gives the estimate an uninterrupted run gives (batch i is seeded `(seed, i)`). Run with
another protocol, it sets the unfinished estimates aside (`<result_file>.partial.<digest>`) for when that protocol
runs again.
Finished, they stay in `<result_file>.examples` (`per_example`), so two models evaluated on the same images
are compared image by image (`paired_difference`).

For a model whose memory comes with each batch, examples are the targets of fixed episodes of
the split (see `zoo.runs.data`).
"""

import hashlib
import itertools
import json
import math
import os
import sys
import time

import numpy as np

from zoo.runs.config import DATASETS, check_counts, check_data, check_seed, data_options
from zoo.runs.data import load_episodes, load_split, targets_per_episode
from zoo.runs.errors import UsageError
from zoo.runs.files import read_config, read_json, write_json
from zoo.runs.state import load_trained_model

RESULT_FILE = "evaluation.json"
EXAMPLES_SUFFIX = ".examples"  # beside the result file: its per-example estimates
RESULT_KEYS = ("dataset", "split", "weights", "seed", "num_samples", "examples", "split_examples", "nll_nats",
               "nll_stderr", "bound_nats", "seconds")
SAVE_INTERVAL = 60.0  # seconds between saves of a partial evaluation


class Progress:
    """Reports examples done out of a total, with the time left, as absl-style lines or a live line on a terminal.

    A line is written at most every `interval` seconds (and at the end), so long evaluations
    show they are alive without flooding a log file.
    """

    def __init__(self, total, label, stream=None, interval=10.0, done=0):
        self.total, self.label, self.interval = total, label, interval
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.start = self.last = time.perf_counter()
        self.done = self.first = done  # `done` examples were evaluated by an earlier process

    def update(self, done):
        self.done = done
        now = time.perf_counter()
        if now - self.last < self.interval and done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        rate = (done - self.first) / elapsed if elapsed > 0 and done > self.first else math.nan
        left = (self.total - done) / rate if done < self.total else 0.0
        line = (f"{self.label}: {done}/{self.total} examples ({100 * done / self.total:.0f}%), "
                f"{_duration(elapsed)} elapsed, about {_duration(left)} left")
        end = "" if self.live and done < self.total else "\n"
        print(("\r" if self.live else "") + line, end=end, file=self.stream, flush=True)


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def check_options(dataset, num_samples, max_examples, batch_size, seed=0):
    """The checks of `evaluate`'s options that need no TensorFlow (an app runs them before loading it)."""
    check_counts(num_samples=num_samples, max_examples=max_examples, batch_size=batch_size)
    check_seed(seed, signed=True)
    if dataset is not None and dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(DATASETS))}")


def data_source(config, dataset=None, data_path=None):
    """What an evaluation of the run `config` reads: `{"dataset", "data_path", "data_options"}`, the run's own
    (its data path unless `data_path` is given) or another `dataset` its model takes (`UsageError` if it
    takes no such inputs, or the data path is not what the dataset is read from). Needs no TensorFlow."""
    dataset = dataset or config["dataset"]
    if config.get("episodes") and dataset != config["dataset"]:
        raise UsageError(f"the run trained on {config['dataset']} episodes; it evaluates on those, not {dataset}")
    input_shape = config["model"]["config"]["input_shape"]
    if dataset == config["dataset"]:
        source = {"dataset": dataset, "data_path": data_path or config.get("data_path"),
                  "data_options": config.get("data_options")}
    else:
        source = {"dataset": dataset, "data_path": data_path, "data_options": data_options(dataset, input_shape)}
    check_data(dataset, input_shape, source["data_path"], "the run's model")
    return source


def evaluate(model_dir, dataset=None, split="test", num_samples=5000, max_examples=None, batch_size=100,
             seed=0, weights="best", progress=True, result_file=RESULT_FILE, data_path=None):
    """Evaluates a `zoo.train` run; returns the result dict (also written to `<model_dir>/<result_file>`).

    Args:
        model_dir: str, a directory written by `zoo.train`.
        dataset: str or None, a `zoo.data` dataset; None: the one the run trained on. Another one must come in the
            shape the model takes (e.g. Omniglot for an MNIST model).
        split: str, the split to evaluate (TFDS slicing allowed).
        num_samples: int, importance samples per example.
        max_examples: int or None, evaluate only the first examples of the split.
        batch_size: int, examples per importance-sampling batch.
        seed: int, makes the estimate reproducible.
        weights: "best" (validation-selected), "last" or "epoch-N" (see `zoo.runs.state.load_trained_model`).
        progress: bool, report progress and the time left on stderr.
        result_file: str, the file in `model_dir` the result is written to. Default `evaluation.json`, the one
            packaging reads (`zoo.runs.packaging.matching_evaluation`).
        data_path: str or None, where the data is read from (see `zoo.train --data_path`); None: the run's for its
            own dataset.
    """
    from zoo import analysis

    check_options(dataset, num_samples, max_examples, batch_size, seed)
    source = data_source(read_config(model_dir), dataset, data_path)
    dataset = source["dataset"]
    model, config = load_trained_model(model_dir, weights)
    if config.get("episodes"):
        per_episode = targets_per_episode(config)
        split_examples = None  # episodes are drawn, not read: the split has no fixed number of them
        wanted = max_examples or 1000
        data = load_episodes(config, split, math.ceil(wanted / per_episode), seed)
        total = wanted
    else:
        data = load_split({**config, **source}, split, batch_size, shuffle=False)
        split_examples = int(load_split({**config, **source}, split, 1, shuffle=False).cardinality())
        if split_examples < 0:
            split_examples = sum(int(batch.shape[0]) for batch in data)
        total = min(max_examples or split_examples, split_examples)
    protocol = {"dataset": dataset, "split": split, "weights": weights, "seed": seed, "num_samples": num_samples,
                "examples": total, "batch_size": batch_size, "weights_sha256": _weights_digest(model)}
    partial = _Partial(os.path.join(model_dir, result_file + ".partial"), protocol)
    reporter = Progress(total, f"{dataset} {split}, k={num_samples}", done=partial.examples) if progress else None
    estimates = analysis.batch_log_likelihoods(model, itertools.islice(data, partial.batches, None), num_samples,
                                               total - partial.examples, seed, first_batch=partial.batches)
    try:
        for log_px, elbo in estimates:
            partial.add(log_px, elbo)
            if reporter:
                reporter.update(partial.examples)
    finally:
        partial.save()
    result = analysis.log_likelihood_summary(model, partial.log_px, partial.elbo, num_samples, partial.seconds())
    result = {"dataset": dataset, "split": split, "weights": weights, "seed": seed, "split_examples": split_examples,
              **result}
    result = {key: result[key] for key in RESULT_KEYS}
    write_json(os.path.join(model_dir, result_file), result)
    os.replace(partial.path, os.path.join(model_dir, result_file + EXAMPLES_SUFFIX))
    return result


def per_example(model_dir, result_file=RESULT_FILE):
    """A finished evaluation's estimates per example: {"protocol", "log_likelihood", "elbo", ...} (log p(x) and
    the ELBO of each example, in the split's order)."""
    path = os.path.join(model_dir, result_file + EXAMPLES_SUFFIX)
    if not os.path.exists(path):
        raise UsageError(f"{path} does not exist: evaluate the run with --result_file={result_file} first")
    return read_json(path)


def paired_difference(first, second):
    """The NLL of `first` minus that of `second` (two `per_example` results on the same examples with the same k),
    image by image: {"gap_nats", "stderr", "examples"}, the mean difference and its standard error.

    The mean difference is the difference of the two NLLs; its standard error is usually much smaller than either
    NLL's, because how hard an image is cancels between two models evaluated on it.
    """
    same = ("dataset", "split", "examples", "num_samples")
    protocols = [{key: result["protocol"][key] for key in same} for result in (first, second)]
    if protocols[0] != protocols[1]:
        raise ValueError(f"a paired difference needs two evaluations of the same examples with the same k; got "
                         f"{protocols[0]} and {protocols[1]}")
    difference = np.asarray(second["log_likelihood"]) - np.asarray(first["log_likelihood"])
    return {"gap_nats": float(difference.mean()), "stderr": float(difference.std(ddof=1) / math.sqrt(len(difference))),
            "examples": len(difference)}


def _weights_digest(model):
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def _protocol_digest(protocol):
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:12]


class _Partial:
    """The per-example estimates of an evaluation in progress, saved every `SAVE_INTERVAL` seconds and when the
    evaluation stops; those of an earlier process are taken up when its protocol and weights are the same.

    Another protocol's unfinished estimates are never overwritten: they are set aside as `<path>.<its digest>`
    and taken up again when that protocol runs again.
    """

    def __init__(self, path, protocol):
        self.path, self.protocol = path, protocol
        self.log_px, self.elbo, self.batches, self.earlier_seconds = [], [], 0, 0.0
        saved = self._read(path)
        if saved.get("protocol") not in (None, protocol):
            os.replace(path, f"{path}.{_protocol_digest(saved['protocol'])}")
            saved = {}
        parked = f"{path}.{_protocol_digest(protocol)}"
        if not saved and os.path.exists(parked):
            saved = self._read(parked)
            os.replace(parked, path)
        if saved.get("protocol") == protocol:
            self.log_px, self.elbo = saved["log_likelihood"], saved["elbo"]
            self.batches, self.earlier_seconds = saved["batches"], saved["seconds"]
        self.start = self.last_save = time.perf_counter()

    @staticmethod
    def _read(path):
        try:
            return read_json(path)
        except (OSError, UsageError):  # none, or unreadable: start afresh
            return {}

    @property
    def examples(self):
        return len(self.log_px)

    def seconds(self):
        return self.earlier_seconds + time.perf_counter() - self.start

    def add(self, log_px, elbo):
        self.log_px += [float(value) for value in log_px]
        self.elbo += [float(value) for value in elbo]
        self.batches += 1
        if time.perf_counter() - self.last_save >= SAVE_INTERVAL:
            self.save()

    def save(self):
        write_json(self.path, {"protocol": self.protocol, "batches": self.batches, "seconds": self.seconds(),
                               "log_likelihood": self.log_px, "elbo": self.elbo})
        self.last_save = time.perf_counter()
