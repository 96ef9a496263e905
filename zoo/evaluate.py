"""Importance-sampled log-likelihood of a trained run, from the command line.

    python -m zoo.evaluate --model_dir=runs/vae --dataset=binarized_mnist --split=test \\
        --num_samples=5000 [--max_examples=M]

Loads the best weights of a `zoo.train` run, estimates log p(x) with `num_samples`
importance samples per example (Burda et al. 2016), prints a summary and, as the last
line, one JSON object:

    {"dataset", "split", "num_samples", "examples", "nll_nats", "nll_stderr", "bound_nats", "seconds"}

which is also written to `<model_dir>/evaluation.json`.
"""

import json
import os

from absl import flags

from zoo.train import UsageError, load_split, load_trained_model, run_app

RESULT_FILE = "evaluation.json"
RESULT_KEYS = ("dataset", "split", "num_samples", "examples", "nll_nats", "nll_stderr", "bound_nats", "seconds")


def evaluate(model_dir, dataset=None, split="test", num_samples=5000, max_examples=None, batch_size=100,
             seed=0, weights="best"):
    """Evaluates a `zoo.train` run; returns the result dict (also written to model_dir).

    Args:
        model_dir: str, a directory written by `zoo.train`.
        dataset: str or None, a `zoo.data` dataset; None: the one the run trained on.
        split: str, the split to evaluate (TFDS slicing allowed).
        num_samples: int, importance samples per example.
        max_examples: int or None, evaluate only the first examples of the split.
        batch_size: int, examples per importance-sampling batch.
        seed: int, makes the estimate reproducible.
        weights: "best" (validation-selected) or "last".
    """
    import zoo

    if not isinstance(num_samples, int) or num_samples < 1:
        raise UsageError(f"--num_samples must be an int >= 1, got {num_samples!r}")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise UsageError(f"--max_examples must be an int >= 1, got {max_examples!r}")
    model, config = load_trained_model(model_dir, weights)
    dataset = dataset or config["dataset"]
    if dataset not in zoo.data.LOADERS:
        raise UsageError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(zoo.data.LOADERS))}")
    data = load_split(dataset, split, batch_size, shuffle=False)
    result = zoo.evaluation.dataset_log_likelihood(
        model, data, num_samples=num_samples, max_examples=max_examples, seed=seed
    )
    result = {"dataset": dataset, "split": split, **result}
    result = {key: result[key] for key in RESULT_KEYS}
    with open(os.path.join(model_dir, RESULT_FILE), "w") as f:
        json.dump(result, f)
    return result


def define_flags():
    flags.DEFINE_string("model_dir", None, "A zoo.train run directory.", required=True)
    flags.DEFINE_string("dataset", None, "Dataset to evaluate on (default: the training dataset).")
    flags.DEFINE_string("split", "test", "Split to evaluate (TFDS slicing allowed).")
    flags.DEFINE_integer("num_samples", 5000, "Importance samples per example.")
    flags.DEFINE_integer("max_examples", None, "Evaluate only the first M examples.")
    flags.DEFINE_integer("batch_size", 100, "Examples per importance-sampling batch.")
    flags.DEFINE_integer("seed", 0, "Seed of the importance samples.")
    flags.DEFINE_enum("weights", "best", ["best", "last"], "Best-validation or last-epoch weights.")


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    result = evaluate(f.model_dir, f.dataset, f.split, f.num_samples, f.max_examples, f.batch_size, f.seed,
                      f.weights)
    print(
        f"{f.model_dir} ({f.weights} weights) on {result['dataset']} {result['split']}: "
        f"{result['examples']} examples, k = {result['num_samples']} importance samples\n"
        f"  NLL   {result['nll_nats']:.2f} +- {result['nll_stderr']:.2f} nats (-log p(x), standard error)\n"
        f"  bound {result['bound_nats']:.2f} nats (-ELBO)\n"
        f"  {result['seconds']:.1f} s"
    )
    print(json.dumps(result), flush=True)


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
