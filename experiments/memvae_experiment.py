"""MemVAE vs the parameter-matched VAE on binarized MNIST: same seed, data order, recipe and epochs.

Trains each preset for `--epochs` through the zoo's run library (`zoo.runs.training.train`: the
run directory `<out>/<preset>` of `python -m zoo.train`, with the preset's recipe; the same
command resumes an interrupted run), then estimates the test log-likelihood of its best weights
(by validation bound) with k importance samples on the test split (`zoo.runs.evaluation`).
Writes `<out>/<preset>/result.json` (with the command, commit, machine and wall times) and
prints one JSON line per model.

    TFDS_DATA_DIR=../shared/tensorflow_datasets nohup nice -n 10 .venv/bin/python experiments/memvae_experiment.py \\
        --epochs=20 --out=~/zoo-runs/memvae_experiment > ~/zoo-runs/memvae_experiment.log 2>&1 &
"""

import argparse
import json
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's zoo, whose commit is recorded

from zoo.runs import provenance  # noqa: E402
from zoo.runs.files import write_json  # noqa: E402

RESULT_FILE = "result.json"


def measure(preset, args):
    """Trains (or resumes) `preset`'s run and evaluates it; returns its result."""
    from zoo.runs import config, evaluation, logs, state, training

    model_dir = os.path.join(args.out, preset)
    run = config.resolve_config(preset, "binarized_mnist", args.epochs, seed=args.seed,
                                steps_per_epoch=args.steps_per_epoch)
    training.train(run, model_dir, verbose=2)
    result = evaluation.evaluate(model_dir, num_samples=args.num_samples, max_examples=args.max_examples,
                                 seed=args.seed, progress=False)
    model, _ = state.load_trained_model(model_dir)
    curve = logs.learning_curve(model_dir)
    machine = provenance.machine()
    result.update(
        preset=preset,
        parameters=sum(int(w.numpy().size) for w in model.trainable_weights),
        epochs=run["epochs"],
        batch_size=run["batch_size"],
        seed=args.seed,
        training={"train_seconds": logs.training_seconds(model_dir), "last_epoch": curve["epochs"][-1],
                  "best_epoch": curve["best_epoch"]},
        command=shlex.join(["python", *sys.argv]),
        commit=provenance.commit(),
        cpu=machine["cpu"],
        cores=machine["cores"],
    )
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="vae_mnist_530_530_100,memvae_mnist_500_500_100")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps_per_epoch", type=int, default=None, help="default: one pass over the training split")
    parser.add_argument("--num_samples", type=int, default=5000)
    parser.add_argument("--max_examples", type=int, default=None, help="evaluate on the first N test examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="~/zoo-runs/memvae_experiment", help="run directories, one per preset")
    args = parser.parse_args(argv)
    args.out = os.path.expanduser(args.out)
    for preset in args.presets.split(","):
        result = measure(preset, args)
        write_json(os.path.join(args.out, preset, RESULT_FILE), result, indent=1)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
