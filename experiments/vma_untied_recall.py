"""Untied VMA addressing (h^q = h^m + c r) on MNIST "train to recall": one JSON summary over seeds.

Each run is `experiments/vma_recall.py --noshared_embedding --seed=S ...`, writing
`<model_dir>/recall.json`; this script gathers those files into
`experiments/results/vma_untied_recall.json`, whose table experiments/results_md.py writes into RESULTS.md:

    for s in 6 7 8 9 10; do       # c = 0.1, the default; --residual_scale=1.0 for h^q = h^m + r
        PYTHONPATH=. TFDS_DATA_DIR=/work/shared/tensorflow_datasets python experiments/vma_recall.py \\
            --noshared_embedding --seed=$s --epochs=12 --steps_per_epoch=250 --model_dir=~/zoo-runs/vma_untied_c01_s$s
    done
    python experiments/vma_untied_recall.py --model_dirs=~/zoo-runs/vma_untied_c01_s6,...   # -> the JSON
    python experiments/results_md.py --write                                                # the table

A run succeeds when its test recall (argmax_a q(a|x) is the stored copy) is >= `SUCCESS_RECALL`.
"""

import csv
import json
import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's zoo

from zoo.cli import run_app  # noqa: E402
from zoo.runs.files import write_json  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("model_dirs", [], "Run directories holding recall.json.")
flags.DEFINE_string("output", os.path.join(os.path.dirname(__file__), "results", "vma_untied_recall.json"), "Summary.")

SUCCESS_RECALL = 0.95
# The plateau of a run that has not found the copies yet: training address KL (an epoch's running
# mean) below this, of log |M| = 5.55 at a lookup.
ESCAPE_ADDRESS_KL = 5.0
DEFAULT_RESIDUAL_SCALE = 0.1  # zoo.layers.stochastic_address.RESIDUAL_SCALE, read without importing TensorFlow
# Commits before `residual_scale` existed: their untied h^q was h^m + r, i.e. c = 1.
BEFORE_RESIDUAL_SCALE = {"3d551aa"}


def address_kl_by_epoch(model_dir, result):
    """The training address KL of each epoch: recall.json's, or the history.csv of a run made by
    benchmarks/vma_recall.py before the run library."""
    if "train_by_epoch" in result:
        return result["train_by_epoch"]["address_kl"]
    with open(os.path.join(model_dir, "history.csv")) as f:
        return [float(row["address_kl"]) for row in csv.DictReader(f)]


def gather(model_dirs):
    runs = []
    for model_dir in model_dirs:
        with open(os.path.join(os.path.expanduser(model_dir), "recall.json")) as f:
            result = json.load(f)
        history = address_kl_by_epoch(os.path.expanduser(model_dir), result)
        escape = next((epoch for epoch, kl in enumerate(history, 1) if kl > ESCAPE_ADDRESS_KL), None)
        default = 1.0 if result["commit"] in BEFORE_RESIDUAL_SCALE else DEFAULT_RESIDUAL_SCALE
        scale = result["overrides"].get("residual_scale", default)
        runs.append({
            "model_dir": model_dir,
            "seed": result["seed"],
            "residual_scale": scale,
            "commit": result["commit"],
            "command": result["command"],
            "cpu": result["cpu"],
            "wall_seconds": result["wall_seconds"],
            # Runs of benchmarks/vma_recall.py (before the run library) timed their last invocation's training.
            "train_seconds": result.get("train_seconds", result.get("train_seconds_this_invocation")),
            "evaluation_seconds": result["evaluation_seconds"],
            "train_bound_last_epoch": result["final_epoch_train"]["bound"],
            "train_address_kl_last_epoch": result["final_epoch_train"]["address_kl"],
            "train_address_kl_by_epoch": history,
            "first_epoch_address_kl_above_5": escape,  # epochs of 250 updates; None: never
            "test_recall": result["test_recall_accuracy"],
            "test_address_kl": result["test_address_kl"],
            "test_nll_nats": result["test_nll_nats"],
            "test_nll_stderr": result["test_nll_stderr"],
            "success": result["test_recall_accuracy"] >= SUCCESS_RECALL,
            **({"note": result["metadata_added_after_run"]} if "metadata_added_after_run" in result else {}),
        })
    by_scale = {}
    for run in runs:
        by_scale.setdefault(run["residual_scale"], []).append(run["success"])
    return {
        "experiment": "untied VMA (shared_embedding=False), MNIST train to recall, |M| = 256, 12 x 250 updates",
        "success_criterion": f"test recall >= {SUCCESS_RECALL}",
        "escape_criterion": f"first epoch whose running-mean training address KL exceeds {ESCAPE_ADDRESS_KL}",
        "log_memory_size": 5.545177444479562,
        "success_by_residual_scale": {str(k): f"{sum(v)} of {len(v)}" for k, v in sorted(by_scale.items())},
        "runs": runs,
    }


def main(argv):
    del argv
    summary = gather(FLAGS.model_dirs)
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    write_json(FLAGS.output, summary, indent=1)
    print(json.dumps(summary["success_by_residual_scale"]))


if __name__ == "__main__":
    run_app(main)
