"""Evaluation through the models' public methods: log-likelihoods over datasets, and the papers' analyses."""

import math
import time

import numpy as np

from zoo import objectives


def dataset_log_likelihood(model, dataset, num_samples=5000, max_examples=None, seed=0):
    """Importance-sampled test log-likelihood of a model over a dataset (Burda et al. 2016, sec. 5).

    Args:
        model: a `zoo.models.LatentVariableModel`.
        dataset: iterable of batches `x` or `(x, ...)` (e.g. `zoo.data.load(..., split="test")`).
        num_samples: int, importance samples per example (5000 in the papers).
        max_examples: int or None, stop after this many examples.
        seed: int, batch i uses the stateless seed `(seed, i)`, so a run is reproducible.

    Returns:
        dict: `examples`; `nll_nats` = -mean log p(x) and `nll_stderr` its standard error
        over examples; `bound_nats` = -mean ELBO (same samples); `bits_per_dim`; `seconds`.
    """
    start = time.perf_counter()
    log_px, elbo = [], []
    seen = 0
    for i, batch in enumerate(dataset):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if max_examples is not None:
            x = x[: max_examples - seen]
        estimates = model.importance_sampling(x, num_samples=num_samples, seed=[seed, i])
        log_px.append(estimates["log_likelihood"].numpy())
        elbo.append(estimates["elbo"].numpy())
        seen += len(log_px[-1])
        if max_examples is not None and seen >= max_examples:
            break
    if not seen:
        raise ValueError("the dataset gave no examples to evaluate")
    log_px, elbo = np.concatenate(log_px), np.concatenate(elbo)
    nll = float(-log_px.mean())
    return {
        "examples": int(seen),
        "num_samples": int(num_samples),
        "nll_nats": nll,
        "nll_stderr": float(log_px.std(ddof=1) / math.sqrt(seen)) if seen > 1 else float("nan"),
        "bound_nats": float(-elbo.mean()),
        "bits_per_dim": float(objectives.bits_per_dim(nll, math.prod(model.input_shape))),
        "seconds": time.perf_counter() - start,
    }
