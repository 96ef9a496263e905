"""Importance-sampled log-likelihood of a trained run, from the command line.

    python -m zoo.evaluate --model_dir=runs/vae [--split=test --num_samples=5000 --max_examples=M \
        --result_file=evaluation.json --dataset=omniglot --data_path=...]

Loads the best weights of a `zoo.train` run (`--weights`: the last or a kept epoch's), estimates log p(x) with
`num_samples` importance samples per example (Burda et al. 2016) on the first `max_examples` examples of
the split (default: all), printing progress with an estimate of the time left, then a summary
and, as the last line, the JSON object `zoo.runs.evaluation.evaluate` also writes to
`<model_dir>/evaluation.json` (`--result_file`: another name, so that evaluations with other protocols do not
replace the one packaging reads). Stopped part-way, the same command resumes after the batches already done.
`--dataset` evaluates on another dataset the model takes (e.g. an MNIST model on Omniglot, out of distribution).
"""

import json
import os

from absl import flags

from zoo.cli import quiet_libraries, run_app
from zoo.runs.errors import UsageError
from zoo.runs.evaluation import check_options, data_source, evaluate
from zoo.runs.files import read_config
from zoo.runs.state import check_weights


def define_flags():
    flags.DEFINE_string("model_dir", None, "A zoo.train run directory.", required=True)
    flags.DEFINE_string("dataset", None, "Dataset to evaluate on (default: the training dataset).")
    flags.DEFINE_string("data_path", None, "Where --dataset is read from, as zoo.train's --data_path (default: the run's "
                        "for its own dataset).")
    flags.DEFINE_string("split", "test", "Split to evaluate (TFDS slicing allowed).")
    flags.DEFINE_integer("num_samples", 5000, "Importance samples per example.")
    flags.DEFINE_integer("max_examples", None, "Evaluate only the first M examples (default: the whole split; "
                         "episodes: 1000 targets).")
    flags.DEFINE_integer("batch_size", 100, "Examples per importance-sampling batch.")
    flags.DEFINE_integer("seed", 0, "Seed of the importance samples.")
    flags.DEFINE_string("weights", "best", "best (validation-selected), last (the newest epoch checkpoint) or epoch-N "
                        "(that epoch's checkpoint, if the run kept it).")
    flags.DEFINE_string("result_file", "evaluation.json", "File in --model_dir the result is written to.")


def main(argv):
    f = flags.FLAGS
    if not os.path.isdir(f.model_dir):
        raise UsageError(f"--model_dir {f.model_dir!r} is not a directory; train into it with python -m zoo.train first")
    if not f.result_file or os.path.basename(f.result_file) != f.result_file:
        raise UsageError(f"--result_file must be a file name (written in --model_dir), got {f.result_file!r}")
    check_weights(f.weights)
    check_options(f.dataset, f.num_samples, f.max_examples, f.batch_size, f.seed)
    data_source(read_config(f.model_dir), f.dataset, f.data_path)
    quiet_libraries()
    result = evaluate(f.model_dir, f.dataset, f.split, f.num_samples, f.max_examples, f.batch_size, f.seed,
                      f.weights, result_file=f.result_file, data_path=f.data_path)
    of = (f"the first {result['examples']} of its {result['split_examples']} examples"
          if result["split_examples"] and result["examples"] < result["split_examples"]
          else f"all {result['examples']} examples" if result["split_examples"]
          else f"{result['examples']} targets of fixed episodes")
    print(
        f"{f.model_dir} ({f.weights} weights) on {result['dataset']} {result['split']}, {of}, "
        f"k = {result['num_samples']} importance samples\n"
        f"  NLL   {result['nll_nats']:.2f} +- {result['nll_stderr']:.2f} nats (-log p(x), standard error)\n"
        f"  bound {result['bound_nats']:.2f} nats (-ELBO)\n"
        f"  {result['seconds']:.1f} s"
    )
    print(json.dumps(result), flush=True)


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
