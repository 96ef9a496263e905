"""Deep latent hierarchies on binarized MNIST: test NLL (k = 5000, full test split) and KL per group.

    TFDS_DATA_DIR=../shared/tensorflow_datasets nohup nice -n 10 .venv/bin/python experiments/hierarchies.py \
        --runs=~/zoo-runs/hierarchies > ~/zoo-runs/hierarchies.log 2>&1 &
    python experiments/hierarchies.py --table          # the RESULTS.md table from the JSON

Each configuration is trained with the project's CLI (`python -m zoo.train`, resumable: a
restart continues after the last finished epoch) into `<runs>/<name>`, evaluated with
`python -m zoo.evaluate` (best-validation weights, k importance samples, every test image),
then its posterior's KL per group and active units are measured on the test split
(`zoo.evaluation.latent_activity`) and drawn to `experiments/results/kl_<name>.png`. Each
finished configuration is written to --out at once (with the commands, commit, machine
and wall times), so an interrupted experiment keeps what it measured; a restart skips
training and evaluation already done.
"""

import json
import os
import platform
import shlex
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "~/zoo-runs/hierarchies", "Run directories (outside the repository).")
flags.DEFINE_string("out", os.path.join(ROOT, "experiments/results/hierarchies.json"), "JSON results.")
flags.DEFINE_list("only", [], "Run only these configurations (default: all).")
flags.DEFINE_integer("num_samples", 5000, "Importance samples per test example.")
flags.DEFINE_integer("max_examples", None, "Evaluate the first N test examples only (default: all 10,000).")
flags.DEFINE_bool("table", False, "Print the RESULTS.md table of --out and exit.")

# name -> (zoo.train arguments, what the paper reports for the model: nats and where).
CONFIGURATIONS = {
    "iwae_2layer_k5": (
        ["--preset=iwae_mnist_2layer", "--num_importance_samples=5", "--batch_size=100", "--epochs=100"],
        "Burda et al. 2016, Table 1: IWAE, 2 stochastic layers, k = 5: 83.89 (dynamic binarization, 3,280 epochs)",
    ),
    "iwae_2layer_k50": (
        ["--preset=iwae_mnist_2layer", "--num_importance_samples=50", "--batch_size=100", "--epochs=25"],
        "Burda et al. 2016, Table 1: IWAE, 2 stochastic layers, k = 50: 82.90 (dynamic binarization, 3,280 epochs)",
    ),
    "ladder_vae": (
        ["--preset=ladder_vae_mnist", "--batch_size=100", "--learning_rate=1e-3", "--epochs=60",
         "--override=kl_warmup_steps=10000"],
        "Sonderby et al. 2016: 81.74, their best MNIST result (dynamic binarization, 2,000 epochs)",
    ),
}


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def commit():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def run(module, *args):
    command = [sys.executable, "-m", module, *args]
    print("$", " ".join(shlex.quote(a) for a in command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return "python -m " + " ".join([module, *map(shlex.quote, args)]), time.perf_counter() - start


def measure(name, train_args, runs):
    model_dir = os.path.join(runs, name)
    train_command, _ = run("zoo.train", "--dataset=binarized_mnist", *train_args, f"--model_dir={model_dir}")
    evaluate_args = [f"--model_dir={model_dir}", "--split=test", f"--num_samples={FLAGS.num_samples}"]
    if FLAGS.max_examples:
        evaluate_args.append(f"--max_examples={FLAGS.max_examples}")
    evaluate_command = "python -m " + " ".join(["zoo.evaluate", *evaluate_args])
    evaluation = _finished_evaluation(model_dir)
    if evaluation is None:  # evaluate (again) unless an earlier invocation finished this same evaluation
        evaluate_command, _ = run("zoo.evaluate", *evaluate_args)
        evaluation = _finished_evaluation(model_dir)

    import zoo
    from zoo import train as zoo_train

    model = zoo_train.load_trained_model(model_dir)
    test = zoo.data.load("binarized_mnist", split="test", batch_size=500, shuffle=False)
    activity = zoo.evaluation.latent_activity(model, test)
    png = os.path.join(ROOT, "experiments", "results", f"kl_{name}.png")
    zoo.evaluation.plot_kl_per_group(activity["kl_per_group"], png, title=f"{name}: KL per group (test)")
    with open(os.path.join(model_dir, zoo_train.CONFIG_FILE)) as f:
        epochs = json.load(f)["epochs"]  # zoo.train returned: every epoch of the run is done
    return {
        "train_command": train_command,
        "evaluate_command": evaluate_command,
        "train_seconds": round(training_seconds(model_dir, epochs), 1),
        "evaluate_seconds": round(evaluation["seconds"], 1),
        "epochs": epochs,
        "evaluation": evaluation,
        "kl_per_group": activity["kl_per_group"],
        "active_units": activity["active_units"],
        "latent_units": len(activity["kl_per_unit"]),
        "active_groups": activity["active_groups"],
        "kl_png": os.path.relpath(png, ROOT),
        "parameters": int(sum(w.numpy().size for w in model.trainable_weights)),
    }


def training_seconds(model_dir, epochs):
    """Training wall time from the run's TensorBoard event times (one event per finished epoch).

    The span from the first epoch's end to the last one's, times epochs / (epochs - 1) for the
    first epoch; it includes any time the run was stopped between resumptions.
    """
    import glob

    import tensorflow as tf

    times = [
        event.wall_time
        for path in glob.glob(os.path.join(model_dir, "logs", "train", "events.out.tfevents.*"))
        for event in tf.compat.v1.train.summary_iterator(path)
        if event.summary.value
    ]
    return (max(times) - min(times)) * epochs / max(epochs - 1, 1)


def _finished_evaluation(model_dir):
    """The run's evaluation.json if it is this experiment's (same k, same number of test images), else None."""
    path = os.path.join(model_dir, "evaluation.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        evaluation = json.load(f)
    wanted = FLAGS.max_examples or 10_000
    if evaluation.get("num_samples") != FLAGS.num_samples or evaluation.get("examples") != wanted:
        return None
    return evaluation


def table(results):
    lines = [
        "| configuration | epochs | test NLL (nats, k, ± s.e.) | -ELBO | KL per group (x upward) | active units | "
        "train wall time | paper |",
        "| --- | ---: | --- | ---: | --- | --- | ---: | --- |",
    ]
    for name, r in results["configurations"].items():
        e = r["evaluation"]
        kl = ", ".join(f"{v:.1f}" for v in r["kl_per_group"])
        lines.append(
            f"| {name} | {r['epochs']} | {e['nll_nats']:.2f} ± {e['nll_stderr']:.2f} (k={e['num_samples']}, "
            f"{e['examples']} images) | {e['bound_nats']:.2f} | {kl} | {r['active_units']} of {r['latent_units']} | "
            f"{r['train_seconds'] / 60:.0f} min | {CONFIGURATIONS[name][1]} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    results = {"configurations": {}}
    if os.path.exists(FLAGS.out):
        with open(FLAGS.out) as f:
            results = json.load(f)
    if FLAGS.table:
        print(table(results))
        return
    runs = os.path.expanduser(FLAGS.runs)
    for name, (train_args, _) in CONFIGURATIONS.items():
        if FLAGS.only and name not in FLAGS.only:
            continue
        measured = measure(name, train_args, runs)
        results["configurations"][name] = {
            **measured, "commit": commit(), "machine": cpu_model(), "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        with open(FLAGS.out + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(FLAGS.out + ".tmp", FLAGS.out)
        print(json.dumps({name: results["configurations"][name]["evaluation"]}), flush=True)


if __name__ == "__main__":
    app.run(main)
