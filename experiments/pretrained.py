"""The pretrained zoo: trains models with the project's CLI, evaluates them, and packages each into
`savedmodels/<name>/` with a model card; RESULTS.md's scoreboard is generated from the cards' metrics.

    # train (resumable; the MemVAE and its parameter-matched VAE in alternating rounds, so both have
    # the same number of epochs whenever the run stops), then evaluate (k = 5000, full test split)
    TFDS_DATA_DIR=../shared/tensorflow_datasets nohup nice -n 10 .venv/bin/python experiments/pretrained.py \\
        --runs=~/zoo-runs/pretrained --train --until=150 --only=vae_mnist_530_530_100,memvae_mnist_500_500_100 \\
        > ~/zoo-runs/pretrained.log 2>&1 &
    python experiments/pretrained.py --runs=~/zoo-runs/pretrained --evaluate --only=NAME
    python experiments/pretrained.py --runs=~/zoo-runs/pretrained --package --only=NAME
    python experiments/pretrained.py --scoreboard            # the table RESULTS.md opens with (experiments/results_md.py)

A packaged model, `savedmodels/<name>/`:

    <version>/          the SavedModel with the zoo's serving signatures (TF Serving's model base path is
                        savedmodels/<name>; a re-packaged model gets the next version number)
    config.json         the zoo.train configuration it was trained with (preset, overrides, optimisation)
    model.weights.h5    its Keras weights: `zoo.LatentVariableModel.from_preset("savedmodels/<name>")`
    metrics.json        what the card says, for programs
    MODEL_CARD.md       data, budget, machine, test NLL, commands, commit, intended use and limitations
    learning_curve.json the run's bound per epoch (zoo.train.learning_curve) and the test NLL at the packaged epoch
    learning_curve.png  its plot, shown on the card (models packaged before curves were kept: the card says so)

Each run directory also gets `provenance.json` (commit, CPU, training wall time of every round,
including the time of interrupted attempts: stop a training with Ctrl-C or by killing its zoo.train
process, and the next `--train` resumes it), written by `--train`; the hierarchies trained by experiments/hierarchies.py take theirs from
experiments/results/hierarchies.json.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import app, flags

from machine import commit, cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVEDMODELS = os.path.join(ROOT, "savedmodels")
HIERARCHIES = os.path.join(ROOT, "experiments", "results", "hierarchies.json")
FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "~/zoo-runs/pretrained", "Run directories (outside the repository).")
flags.DEFINE_list("only", [], "Only these models (default: all).")
flags.DEFINE_bool("train", False, "Train (resume) the models' runs.")
flags.DEFINE_integer("until", None, "With --train: stop after the round that reaches this many epochs.")
flags.DEFINE_bool("evaluate", False, "Evaluate finished runs that have no evaluation of the card's protocol yet.")
flags.DEFINE_bool("package", False, "Package evaluated runs into savedmodels/<name>/.")
flags.DEFINE_bool("scoreboard", False, "Print the scoreboard of savedmodels/*/metrics.json and exit.")
flags.DEFINE_bool("cards", False, "Rewrite every packaged model's card and the `paper` of its metrics.json from this "
                  "registry (text only: nothing is trained, evaluated or exported) and exit.")
flags.DEFINE_bool("check", False, "With --cards: write nothing, fail if a card or metrics.json differs from what "
                  "--cards would write.")

# Epoch totals of the alternating training rounds (each round resumes every model to the total).
ROUNDS = (25, 50, 75, 100, 150, 200, 250, 300, 400, 500)
FULL_TEST = dict(num_samples=5000, max_examples=None)
# The convolutional hierarchies and the PixelCNN decoders cost ~100x the MLPs per importance sample here: k = 5000
# on 10,000 images is days, so they are evaluated (as experiments/hierarchies.py does) at k = 100 on the first 1,000.
SUBSET_TEST = dict(num_samples=100, max_examples=1000)
BINARIZED_MNIST = ("binarized_mnist: the fixed binarization of Salakhutdinov & Murray (2008); trained on `train` "
                   "(50,000 images), the epoch with the best `validation` bound (10,000) kept, tested on `test` "
                   "(10,000)")
MNIST_LIMITATIONS = ("A density model of 28x28 binary digits for research, teaching and as a baseline; "
                     "not a classifier, not for other image sizes or grey levels. Trained for far fewer epochs "
                     "than the paper, on the fixed binarization (papers often report dynamically binarized "
                     "MNIST), so its NLL is not the paper's.")


def reported(nll, source, binarization=None, k=None, test_images=None, epochs=None, found=True):
    """What a paper reports for the model and on which protocol: its NLL in nats (None: no such number, or
    `found=False`: the paper has one but no stored copy of it was read), MNIST binarization ("dynamic" or
    "fixed"), importance samples k, test images and training epochs (None: not stated in what was read)."""
    return dict(nll=nll, found=found, binarization=binarization, k=k, test_images=test_images, epochs=epochs,
                source=source)


# Where each paper's protocol was read (the numbers themselves are the papers').
LI_REBUTTAL = "Li, Zhu & Zhang 2016, ICML rebuttal (icml.cc/2016/rebuttals/551.txt)"
BURDA = ("Burda et al. 2016, Table 1: IWAE, 2 stochastic layers, k = 5 training; protocol read in yburda/iwae "
         "datasets.py (MNIST resampled per minibatch) and experiments.py (k = 5000 on the test split, "
         "3^0 + ... + 3^7 epochs)")
SONDERBY = ("Sønderby et al. 2016, Table 1: the plain 5-layer LVAE (the model this preset builds): not found in a "
            "stored copy; their best MNIST result, 81.74, adds fine-tuning and importance-weighted training. "
            "Protocol read in casperkaae/LVAE run_models.py (`mnistresample`: resampled each epoch) and README.md "
            "(-num_epochs 2000)")
VAHDAT = ("Vahdat & Kautz 2020, Table 1: NVAE, a paper-scale model; protocol read in NVlabs/NVAE README.md "
          "(dynamically binarized MNIST, --epochs 400, evaluate.py --num_iw_samples=1000) and datasets.py (the "
          "MNIST test split)")

# Published NLLs on the fixed binarization of MNIST (Larochelle's binarized_mnist, our `binarized_mnist`), each
# read in a stored copy (`read_from`: repository, commit, path, table); `nll=None`: not found in any stored copy.
ANCHORS = [
    dict(model="convolutional Ladder-style VAE, 3 stochastic layers (spatial latents, skip connections, free bits)",
         nll=79.47, k=100, test_images=10000, epochs=None,
         read_from="addtt/ladder-vae-pytorch@03e86d2 README.md, \"Likelihood results\" (ELBO, 100 iws); "
                   "trained on train + validation (60,000; lib/datasets.py)"),
    dict(model="the same, 12 stochastic layers", nll=78.50, k=100, test_images=10000, epochs=None,
         read_from="addtt/ladder-vae-pytorch@03e86d2 README.md, \"Likelihood results\" (ELBO, 100 iws)"),
    dict(model="the same, 12 stochastic layers", nll=78.30, k=1000, test_images=10000, epochs=None,
         read_from="addtt/ladder-vae-pytorch@03e86d2 README.md, \"Likelihood results\" (ELBO, 1000 iws)"),
    dict(model="Tomczak & Welling 2018 (VampPrior): VAE with the standard prior, two-level HVAE, convHVAE, "
               "PixelHVAE on static MNIST", nll=None, k=None, test_images=None, epochs=None,
         read_from="not found: jmtomczak/vae_vampprior@bb6ff3e holds no table, and no stored copy of the paper's "
                   "tables was found"),
]

# name -> how the model is trained (zoo.train arguments and where its run lives under --runs, or the
# experiment that trained it), evaluated, and what its paper reports.
MODELS = {
    "vae_mnist_530_530_100": dict(
        train=["--preset=vae_mnist_530_530_100", "--dataset=binarized_mnist", "--seed=0"],
        rounds=True,
        evaluate=FULL_TEST,
        paper=reported(85.69, LI_REBUTTAL + ": VAE 530-530-100, k = 1 training", "dynamic", epochs=3000),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " The parameter-matched baseline of memvae_mnist_500_500_100.",
    ),
    "memvae_mnist_500_500_100": dict(
        train=["--preset=memvae_mnist_500_500_100", "--dataset=binarized_mnist", "--seed=0"],
        rounds=True,
        evaluate=FULL_TEST,
        paper=reported(84.41, LI_REBUTTAL + ": MEM-VAE 500-500-100, k = 1 training", "dynamic", epochs=3000),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " Same seed, data order and epochs as vae_mnist_530_530_100.",
    ),
    "memvae_frey_faces_200_10": dict(
        train=["--preset=memvae_frey_faces_200_10", "--dataset=frey_faces",
               "--data_path=../shared/datasets/frey_faces/frey_rawface.mat", "--seed=0"],
        epochs=1000,
        evaluate=dict(num_samples=5000, max_examples=None),
        paper=reported(None, "Li, Zhu & Zhang 2016, sec. 5.2: samples and imputations only, no likelihood"),
        data="frey_faces (Roweis): 1,965 grey-level 28x20 video frames scaled to [0, 1]; trained on the first "
             "1,765, tested on the last 200 (no validation split: the epoch with the best training bound kept)",
        limitations="A density model of these 28x20 face frames (Gaussian likelihood: its NLL is a continuous "
                    "density in nats, not comparable with the binary-image rows) for research and teaching. "
                    "Consecutive frames are near duplicates and the test frames come from the same video.",
    ),
    "vis_memvae_mnist_500_500_100": dict(
        train=["--preset=vis_memvae_mnist_500_500_100", "--dataset=binarized_mnist", "--seed=0"],
        epochs=100,
        evaluate=FULL_TEST,
        paper=reported(None, "Li, Zhu & Zhang 2016, sec. 5.5 and Figure 7: slot visualisations only, no likelihood"),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " Softmax attention and element-wise sum, so that each slot maps to an "
                    "image (`zoo.evaluation` slot images); same seed and data order as memvae_mnist_500_500_100.",
    ),
    "vma_mnist_mlp": dict(
        train=["--preset=vma_mnist_mlp", "--dataset=binarized_mnist", "--seed=0"],
        epochs=100,
        evaluate=FULL_TEST,
        paper=reported(None, "Bornschein et al. 2017, sec. 4: the MNIST MLP architecture; no likelihood of a learned "
                    "256-entry memory is quoted here"),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " VMA with a learned memory of 256 images (the memory size is our choice): "
                    "`model.memory` holds them; the served signatures take it (or any other memory) as an input.",
    ),
    "vma_omniglot_conv": dict(
        train=["--preset=vma_omniglot_conv", "--dataset=omniglot", "--data_path=../shared/datasets/omniglot",
               "--seed=0", "--steps_per_epoch=250"],
        epochs=50,
        # -log p(x | memory) of the targets of 32 fixed test episodes (k = 5000 of a conv model on every
        # target would take hours here), and few-shot classification on the held-out alphabets.
        evaluate=dict(num_samples=1000, max_examples=1024),
        few_shot=dict(episodes=300, seed=2, settings=[  # (ways, shots, the target %, the paper's %)
            (5, 1, 85, 91), (5, 5, 95, 97), (20, 1, 70, 77), (20, 5, 85, 90)]),
        paper=reported(None, "Bornschein et al. 2017, sec. 4.2: few-shot accuracy 91 / 97 / 77 / 90 % (5-way 1-shot, "
                    "5-way 5-shot, 20-way 1-shot, 20-way 5-shot) with the 45/5 alphabet split of its reference [18]: "
                    "144 test characters, so about 1,479 of the 1,623 to train on; it says nothing of training to "
                    "convergence"),
        data="omniglot (Lake et al. 2015), the two small background archives (8 alphabets, 242 characters x 20 "
             "drawers, 28x28, binarized); alphabet-disjoint split (zoo.data.omniglot): 6 alphabets to train, "
             "Japanese_(katakana) and Tagalog held out; episodes of 8 characters, 4 targets and 4 memory drawings each",
        limitations="A generative few-shot model of 28x28 binarized handwritten characters for research and "
                    "teaching: p(x | memory) and few-shot classification by q(a | x). Trained on 178 characters against "
                    "the paper's about 1,479 (12 %), and tested on other alphabets, so its accuracies are not the "
                    "paper's.",
    ),
    "iwae_mnist_2layer": dict(
        hierarchy="iwae_2layer_k5",
        evaluate=FULL_TEST,
        paper=reported(83.89, BURDA, "dynamic", k=5000, test_images=10000, epochs=3280),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " Trained with k = 5 importance samples.",
    ),
    "ladder_vae_mnist": dict(
        hierarchy="ladder_vae",
        evaluate=FULL_TEST,
        paper=reported(None, SONDERBY, "dynamic", test_images=10000, epochs=2000, found=False),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " KL warm-up over 10,000 steps. Trained with Keras's leaky ReLU (slope "
                    "0.2), before the preset took the authors' 0.01; its config.json pins `activation` to it.",
    ),
    "nvae_mnist_small": dict(
        hierarchy="nvae_small",
        evaluate=SUBSET_TEST,
        paper=reported(78.01, VAHDAT, "dynamic", k=1000, test_images=10000, epochs=400),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " A small NVAE trained for one epoch: a working example of the "
                    "architecture, far from the paper's model; its NLL is at k = 100 on 1,000 test images.",
    ),
    "pixelvae_mnist": dict(
        hierarchy="pixelvae",
        evaluate=SUBSET_TEST,
        paper=reported(None, "Gulrajani et al. 2017: PixelVAE with convolutional encoder and decoder (paper-scale; "
                    "this model's encoder and decoder are MLPs, so no paper number applies)"),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " Its PixelCNN decoder samples pixel by pixel (784 sequential passes), "
                    "so `sample` is slow; its NLL is at k = 100 on 1,000 test images.",
    ),
    "pixelvae_hierarchical_mnist": dict(
        hierarchy="pixel_hierarchy",
        evaluate=SUBSET_TEST,
        paper=reported(None, "Gulrajani et al. 2017, sec. 3.2: hierarchical PixelVAE (paper-scale; this one is "
                    "nvae_mnist_small's hierarchy with a small PixelCNN, so no paper number applies)"),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " Trained for one epoch: a working example of the architecture. Its "
                    "PixelCNN decoder reads the image and samples pixel by pixel (784 sequential passes), so "
                    "`sample` is slow; its NLL is at k = 100 on 1,000 test images.",
    ),
}


def _selected():
    unknown = sorted(set(FLAGS.only) - set(MODELS))
    if unknown:
        raise app.UsageError(f"--only: unknown models {unknown}; known: {sorted(MODELS)}")
    return [name for name in MODELS if not FLAGS.only or name in FLAGS.only]


def run_dir(name):
    spec = MODELS[name]
    if "hierarchy" in spec:
        return os.path.join(os.path.dirname(os.path.expanduser(FLAGS.runs)), "hierarchies", spec["hierarchy"])
    return os.path.join(os.path.expanduser(FLAGS.runs), name)


def _run(module, *args):
    command = [sys.executable, "-m", module, *args]
    print("$", shlex.join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def _read(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def _write(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def train(names):
    """Trains each model to its `epochs`; those that train in `ROUNDS` reach each round's epochs before any
    reaches the next (so they have equal budgets whenever training stops between rounds)."""
    for name in names:
        if "epochs" in MODELS[name]:
            _train_round(name, MODELS[name]["epochs"])
    for epochs in ROUNDS:
        if FLAGS.until and epochs > FLAGS.until:
            return
        for name in names:
            if MODELS[name].get("rounds"):
                _train_round(name, epochs)


def _train_round(name, epochs):
    """Resumes the run to `epochs` and adds the round's wall time to the run's provenance.json."""
    directory = run_dir(name)
    provenance_path = os.path.join(directory, "provenance.json")
    provenance = _read(provenance_path, {"commit": commit(), "machine": cpu_model(), "cores": os.cpu_count(),
                                         "rounds": []})
    os.makedirs(directory, exist_ok=True)
    if provenance["rounds"] and provenance["rounds"][-1]["epochs"] >= epochs:
        return
    start = time.perf_counter()
    try:
        _run("zoo.train", *MODELS[name]["train"], f"--epochs={epochs}", f"--model_dir={directory}", "--verbose=2")
    except BaseException:
        # An interrupted training resumes from its last checkpoint; the time it ran still counts.
        provenance["interrupted_seconds"] = provenance.get("interrupted_seconds", 0) + time.perf_counter() - start
        _write(provenance_path, provenance)
        raise
    seconds = time.perf_counter() - start + provenance.pop("interrupted_seconds", 0)
    provenance["rounds"].append({"epochs": epochs, "seconds": round(seconds, 1),
                                 "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    _write(provenance_path, provenance)


def training_record(name):
    """(train command, epochs, training wall seconds, commit, machine, cores) of a finished run."""
    spec, directory = MODELS[name], run_dir(name)
    config = _read(os.path.join(directory, "config.json"))
    if "hierarchy" in spec:
        measured = _read(HIERARCHIES)["configurations"][spec["hierarchy"]]
        command = measured["train_command"].replace(directory, f"~/zoo-runs/hierarchies/{spec['hierarchy']}")
        return command, measured["epochs"], measured["train_seconds"], measured["commit"], measured["machine"], \
            measured["cores"]
    provenance = _read(os.path.join(directory, "provenance.json"))
    epochs = provenance["rounds"][-1]["epochs"]
    assert epochs == config["epochs"], (name, epochs, config["epochs"])
    command = shlex.join(["python", "-m", "zoo.train", *spec["train"], f"--epochs={epochs}",
                          f"--model_dir=~/zoo-runs/pretrained/{name}"])
    seconds = sum(r["seconds"] for r in provenance["rounds"])
    return command, epochs, seconds, provenance["commit"], provenance["machine"], provenance["cores"]


def _evaluation(name):
    """The run's evaluation.json if it follows the model's protocol (k, test images), else None."""
    wanted = MODELS[name]["evaluate"]
    evaluation = _read(os.path.join(run_dir(name), "evaluation.json"))
    if evaluation is None or evaluation["num_samples"] != wanted["num_samples"] or evaluation["examples"] != (
        wanted["max_examples"] or evaluation["split_examples"]
    ):
        return None
    return evaluation


def _evaluate_args(name):
    wanted = MODELS[name]["evaluate"]
    args = [f"--model_dir={run_dir(name)}", "--split=test", f"--num_samples={wanted['num_samples']}"]
    return args + ([f"--max_examples={wanted['max_examples']}"] if wanted["max_examples"] else [])


def evaluate(name):
    if _evaluation(name) is None:
        _run("zoo.evaluate", *_evaluate_args(name))
    if "few_shot" in MODELS[name] and _few_shot(name) is None:
        sys.path.insert(0, ROOT)  # this checkout's zoo
        model, config = _trained(run_dir(name))
        protocol = MODELS[name]["few_shot"]
        results = []
        for ways, shots, target, paper in protocol["settings"]:
            result = _few_shot_accuracy(model, config, ways, shots, protocol["episodes"], protocol["seed"])
            results.append({**result, "target": target, "paper": paper})
            print(json.dumps(results[-1]), flush=True)
        _write(os.path.join(run_dir(name), "few_shot.json"),
               {"protocol": protocol, "epochs": config["epochs"], "results": results})


def _trained(directory):
    """The run's best-validation model and its configuration, a relative data path resolved as the CLI resolves it."""
    from zoo import train as zoo_train

    model, config = zoo_train.load_trained_model(directory, "best")
    if config.get("data_path"):
        config = {**config, "data_path": os.path.join(ROOT, os.path.expanduser(config["data_path"]))}
    return model, config


def _few_shot_accuracy(model, config, ways, shots, episodes, seed):
    """`zoo.evaluation.few_shot_accuracy` on the first `episodes` test episodes of N-way K-shot (one query per class)."""
    import zoo

    data = zoo.data.omniglot.few_shot_episodes("test", ways=ways, shots=shots, queries_per_class=1,
                                               num_episodes=episodes, seed=seed, path=config["data_path"],
                                               **(config.get("data_options") or {}))  # e.g. 26x26 images
    result = zoo.evaluation.few_shot_accuracy(model, data)
    return {key: result[key] for key in ("ways", "shots", "episodes", "queries", "accuracy", "stderr", "seconds")}


def _few_shot(name):
    """The run's few_shot.json if it follows the model's protocol and is of the run's last epoch, else None."""
    few_shot = _read(os.path.join(run_dir(name), "few_shot.json"))
    protocol = json.loads(json.dumps(MODELS[name]["few_shot"]))  # tuples as JSON lists
    epochs = _read(os.path.join(run_dir(name), "config.json"))["epochs"]
    fits = few_shot is not None and few_shot["protocol"] == protocol and few_shot["epochs"] == epochs
    return few_shot if fits else None


# Test images of the card's exact re-measurement (tests/test_pretrained.py repeats it): the first 100.
CHECK_EXAMPLES = 100
# Test episodes of an episode model's re-measurement: the first one (the served conv VMA's k = 1000 on
# one episode's 32 targets takes about 20 s in the tests).
CHECK_EPISODES = 1
# Few-shot episodes per setting that the served model re-classifies in the tests: the first 20.
FEW_SHOT_CHECK_EPISODES = 20


def package(name):
    """Exports the run's best weights into savedmodels/<name>/<next version>/ with card, metrics, config, weights.

    The package is assembled beside the old one and swapped in at the end, so a failure leaves the old one.
    """
    sys.path.insert(0, ROOT)  # this checkout's zoo
    import numpy as np

    from zoo import export as zoo_export
    from zoo import train as zoo_train

    evaluation = _evaluation(name)
    if evaluation is None:
        raise app.UsageError(f"{name}: no evaluation with k = {MODELS[name]['evaluate']} yet; run --evaluate first")
    if "few_shot" in MODELS[name] and _few_shot(name) is None:
        raise app.UsageError(f"{name}: no few-shot evaluation of the card's protocol yet; run --evaluate first")
    directory = run_dir(name)
    model, config = _trained(directory)
    final = os.path.join(SAVEDMODELS, name)
    staging = os.path.join(SAVEDMODELS, f".{name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    version = zoo_export.next_version(final)
    zoo_export.export(model, staging, version=version)
    model.save_weights(os.path.join(staging, "model.weights.h5"))
    _write(os.path.join(staging, "config.json"), {key: value for key, value in config.items() if key != "data_path"})

    # The exact re-measurement the test repeats: k of the card, evaluation seed 0, the first test images
    # (episode models: the targets of the first test episodes, each given its episode's memory). A small
    # test split (Frey faces: 200 images) is re-measured whole: the card's own number.
    k = evaluation["num_samples"]
    if config.get("episodes"):
        check = np.concatenate([-model.log_likelihood(episode, num_samples=k, seed=0).numpy()
                                for episode in zoo_train.load_episodes(config, "test", CHECK_EPISODES, seed=0)])
        examples, check_of = len(check), {"episodes": CHECK_EPISODES, "episode_seed": 0}
    else:
        examples = evaluation["split_examples"] if evaluation["split_examples"] <= 2 * CHECK_EXAMPLES else CHECK_EXAMPLES
        first = next(iter(zoo_train.load_split(config, "test", examples, shuffle=False)))
        check, check_of = -model.log_likelihood(first, num_samples=k, seed=0).numpy(), {}
    command, epochs, seconds, trained_at, machine, cores = training_record(name)
    spec = MODELS[name]
    metrics = {
        "name": name,
        "class": type(model).__name__,
        "preset": config["preset"],
        "overrides": {key: value for key, value in config["overrides"].items() if key != "seed"},
        "parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "dataset": config["dataset"],
        "train_split": config["train_split"],
        "validation_split": config["validation_split"],
        "epochs": epochs,
        "batch_size": config["batch_size"],
        "steps_per_epoch": config["steps_per_epoch"],
        "learning_rate": config["learning_rate"],
        "seed": config["seed"],
        "train_seconds": seconds,
        "test": {key: evaluation[key] for key in ("split", "num_samples", "examples", "split_examples", "nll_nats",
                                                   "nll_stderr", "bound_nats", "seconds")},
        "check": {"examples": examples, **check_of, "num_samples": k, "seed": 0,
                  "nll_nats": float(check.mean()), "nll_stderr": float(check.std(ddof=1) / np.sqrt(len(check)))},
        "paper": spec["paper"],
        "train_command": command,
        "evaluate_command": shlex.join(["python", "-m", "zoo.evaluate", *_evaluate_args(name)]).replace(
            directory, "~/zoo-runs/" + os.path.relpath(directory, os.path.dirname(os.path.expanduser(FLAGS.runs)))),
        "package_command": f"python experiments/pretrained.py --package --only={name}",
        "commit": trained_at,
        "machine": machine,
        "cores": cores,
        "version": version,
        "packaged": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "packaged_at_commit": commit(),
    }
    if "few_shot" in spec:
        metrics["few_shot"] = _few_shot(name)
        # The served `classify` must reproduce these exactly (tests/test_pretrained.py).
        metrics["few_shot_check"] = [
            _few_shot_accuracy(model, config, ways, shots, FEW_SHOT_CHECK_EPISODES, spec["few_shot"]["seed"])
            for ways, shots, _, _ in spec["few_shot"]["settings"]
        ]
    metrics["learning_curve"] = write_learning_curve(directory, staging, name, epochs, metrics["test"])
    _write(os.path.join(staging, "metrics.json"), metrics)
    signatures = "\n".join(
        f"- `{endpoint}`: " + ", ".join(f"`{s.name}` {s.dtype.name} {list(s.shape)}" for s in signature)
        for endpoint, (_, signature) in model.serving_endpoints().items()
    )
    with open(os.path.join(staging, "MODEL_CARD.md"), "w") as f:
        f.write(model_card(metrics, spec, signatures))
    if os.path.exists(final):
        os.replace(final, final + ".old")
    os.replace(staging, final)
    shutil.rmtree(final + ".old", ignore_errors=True)
    print(f"packaged {final}/{version}")


LEARNING_CURVE_JSON, LEARNING_CURVE_PNG = "learning_curve.json", "learning_curve.png"
# The card's trend: the change of the bound over the last epochs, at most this many.
TREND_EPOCHS = 5


def write_learning_curve(run_directory, directory, name, epochs, test):
    """Writes the run's learning curve (`zoo.train.learning_curve`) into `directory` as learning_curve.json and
    learning_curve.png, with `test` (metrics.json's) at the epoch of the packaged (best) weights, for a run of
    `epochs` epochs; returns what metrics.json keeps of it for the card."""
    sys.path.insert(0, ROOT)  # this checkout's zoo
    import zoo
    from zoo import train as zoo_train

    curve = zoo_train.learning_curve(run_directory)
    logged = {row["epoch"] for row in curve["epochs"]}
    # Trained but not in the logs: gaps, and epochs after the last one logged.
    curve["missing_epochs"] = [epoch for epoch in range(1, epochs + 1) if epoch not in logged]
    curve["test"] = {"epoch": curve["best_epoch"],
                     **{key: test[key] for key in ("split", "num_samples", "examples", "nll_nats", "nll_stderr")}}
    _write(os.path.join(directory, LEARNING_CURVE_JSON), curve)
    zoo.evaluation.plot_learning_curve(curve, os.path.join(directory, LEARNING_CURVE_PNG),
                                       title=f"{name}: bound per epoch", test=curve["test"])
    key, rows = curve["selected_by"], curve["epochs"]
    best = next(row for row in rows if row["epoch"] == curve["best_epoch"])
    earlier = rows[max(0, len(rows) - 1 - TREND_EPOCHS)]
    return {"json": LEARNING_CURVE_JSON, "png": LEARNING_CURVE_PNG, "epochs": epochs, "missing_epochs":
            curve["missing_epochs"], "selected_by": key, "best_epoch": best["epoch"], "best_bound": best[key],
            "earlier_epoch": earlier["epoch"], "earlier_bound": earlier[key], "last_epoch": rows[-1]["epoch"],
            "last_bound": rows[-1][key]}


def _epoch_list(epochs):
    return ", ".join(map(str, epochs[:10])) + (f" and {len(epochs) - 10} more" if len(epochs) > 10 else "")


def _learning_curve_section(metrics):
    """The card's learning curve: the plot and its JSON, or that the run's logs were not kept."""
    curve = metrics.get("learning_curve")
    if curve is None:
        return ("\n## Learning curve\n\n"
                "Not kept. This run logged its bound per epoch to TensorBoard only on the machine that trained it, "
                "and that machine and the run directory are gone. The curve will be regenerated when the model is "
                f"next retrained: packaging a run (`{metrics['package_command']}`) writes `{LEARNING_CURVE_JSON}` "
                f"and `{LEARNING_CURVE_PNG}` beside this card and links them here.\n")
    which = curve["selected_by"].split("_")[0]
    best, last, earlier = curve["best_epoch"], curve["last_epoch"], curve["earlier_epoch"]
    if last == earlier:
        trend = "one epoch is logged, so the curve shows no trend yet"
    else:
        change = -(curve["last_bound"] - curve["earlier_bound"])
        trend = (f"from epoch {earlier} to epoch {last} the {which} -bound went from {-curve['earlier_bound']:.2f} to "
                 f"{-curve['last_bound']:.2f} nats ({change:+.2f})")
        trend += ("; the best epoch is the last one logged, so the bound was still improving when training stopped"
                  if best == last else f"; none of the {last - best} epochs after the best one improved on it")
    several = len(curve["missing_epochs"]) > 1
    missing = (f" Epoch{'s' if several else ''} {_epoch_list(curve['missing_epochs'])} {'are' if several else 'is'} "
               "not in the logs (a training session stopped before TensorBoard wrote them)."
               if curve["missing_epochs"] else "")
    return "\n".join([
        "\n## Learning curve\n",
        f"![learning curve]({curve['png']})\n",
        f"The bound per epoch of this run (training{' and validation' if which == 'validation' else ''}, from its "
        "TensorBoard logs) is in "
        f"[{curve['json']}]({curve['json']}) and plotted in [{curve['png']}]({curve['png']}), with the test NLL at the "
        f"packaged weights' epoch. Those weights are epoch {best} of {curve['epochs']}, the best {which} bound "
        f"(-bound {-curve['best_bound']:.2f} nats); {trend}.{missing}",
        "",
    ])

def _examples(test):
    """What the NLL was measured on: test images, or the targets of fixed test episodes (memory per batch)."""
    if test["split_examples"] is None:
        return f"{test['examples']:,} targets of fixed test episodes, each given its episode's memory"
    return f"{test['examples']:,}" + (" (all)" if test["examples"] == test["split_examples"] else "") + " test images"


def _nll(test):
    return f"{test['nll_nats']:.2f} ± {test['nll_stderr']:.2f} nats (k = {test['num_samples']:,}, {_examples(test)})"


def _few_shot_table(metrics):
    """The few-shot accuracies against the issue's targets and the paper (models with `few_shot`), as table lines."""
    lines = ["| setting | accuracy | episodes | target | paper |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in metrics["few_shot"]["results"]:
        accuracy = 100 * row["accuracy"]
        verdict = "meets" if accuracy >= row["target"] else f"misses by {row['target'] - accuracy:.1f} points"
        lines.append(f"| {row['ways']}-way {row['shots']}-shot | {accuracy:.1f} % ± {100 * row['stderr']:.1f} | "
                     f"{row['episodes']} | {row['target']} % ({verdict}) | {row['paper']} % |")
    return lines


def _few_shot_section(metrics):
    if not metrics.get("few_shot"):
        return ""
    return "\n".join([
        "\n## Few-shot classification on the held-out alphabets\n",
        "`model.classify(queries, support_set, labels)`: p(c | x) = the posterior address mass q(a | x) on the "
        "class's entries, no retraining; one query per class and episode, accuracy ± standard error over episodes "
        f"(`python experiments/pretrained.py --evaluate --only={metrics['name']}`). tests/test_pretrained.py "
        f"re-classifies the first {metrics['few_shot_check'][0]['episodes']} episodes of each setting with the served model.\n",
        *_few_shot_table(metrics),
        "",
    ])


def _stated(value, unit):
    return f"{unit} not stated" if value is None else f"{value:,} {unit}"


def _protocol(paper):
    """The protocol of a paper's number: binarization, importance samples, test images, training epochs."""
    if paper["binarization"] is None:
        return "—"
    k = "k not stated" if paper["k"] is None else f"k = {paper['k']:,}"
    return (f"{paper['binarization']} binarization, {k}, {_stated(paper['test_images'], 'test images')}, "
            f"{_stated(paper['epochs'], 'epochs')}")


def _paper(paper):
    if paper["binarization"] is None:
        return paper["source"]
    if paper["nll"] is None:
        return f"{_protocol(paper)}: {paper['source']}"
    return f"{paper['nll']:.2f} nats ({_protocol(paper)}): {paper['source']}"


def _budget(metrics):
    epochs = f"{metrics['epochs']} epoch" + ("s" if metrics["epochs"] != 1 else "")
    if metrics["batch_size"] is None:  # episodes
        steps = metrics["steps_per_epoch"]
        return f"{epochs} of {steps} episodes ({metrics['epochs'] * steps:,} updates, one episode each)"
    return f"{epochs}, batch {metrics['batch_size']}"


def _check_of(check):
    if check.get("episodes"):
        return f"{check['episodes']} test episodes ({check['examples']} targets)"
    return f"{check['examples']} test images"


def model_card(metrics, spec, signatures):
    """The card's text; `signatures` lists the exported version's serving signatures, one line each."""
    test, name = metrics["test"], metrics["name"]
    overrides = ", ".join(f"`{k}={v!r}`" for k, v in metrics["overrides"].items()) or "none"
    return f"""# {name}

`zoo.{metrics['class']}`, preset `{metrics['preset']}` (overrides: {overrides}), {metrics['parameters']:,} trainable
parameters.

| | |
| --- | --- |
| data | {spec['data']} |
| training | {_budget(metrics)}, learning rate {metrics['learning_rate']:g}, seed {metrics['seed']} |
| training wall time | {metrics['train_seconds']:,.0f} s on {metrics['machine']} ({metrics['cores']} cores, no GPU; shared with other jobs, so an upper bound) |
| test NLL | {_nll(test)}; -ELBO {test['bound_nats']:.2f} nats; evaluation {test['seconds']:,.0f} s |
| paper | {_paper(spec['paper'])} |
| commit | `{metrics['commit']}` (training code), packaged at `{metrics['packaged_at_commit']}` |

The NLL is the importance-sampled estimate of -log p(x{' | memory' if metrics['check'].get('episodes') else ''}) (Burda et al. 2016) with evaluation seed 0;
on the first {_check_of(metrics['check'])} the same estimator gives {metrics['check']['nll_nats']:.2f} ±
{metrics['check']['nll_stderr']:.2f} nats (`metrics.json`: `check`; tests/test_pretrained.py re-measures it).
{_few_shot_section(metrics)}{_learning_curve_section(metrics)}
## Commands

    {metrics['train_command']}
    {metrics['evaluate_command']}
    {metrics['package_command']}

## Use

```python
import zoo
model = zoo.LatentVariableModel.from_preset("savedmodels/{name}")  # the trained Keras model, fine-tunable
```

Serving: `tensorflow_model_server --rest_api_port=8501 --model_name={name} --model_base_path=$PWD/savedmodels/{name}`
(see BUILD.md). Signatures of version {metrics['version']}:

{signatures}

## Intended use and limitations

{spec['limitations']}
"""


SIGNATURES_START, SIGNATURES_END = "Signatures of version {version}:\n\n", "\n\n## Intended use and limitations"


def write_cards(check=False):
    """Rewrites each packaged card and metrics.json's `paper` from this registry, keeping everything measured
    (metrics.json) and the exported signatures (as the card lists them) as they are. With `check`, writes
    nothing and returns the files that would change."""
    stale = []
    for name in sorted(MODELS):
        directory = os.path.join(SAVEDMODELS, name)
        metrics = _read(os.path.join(directory, "metrics.json"))
        if metrics is None:
            continue
        with open(os.path.join(directory, "MODEL_CARD.md")) as f:
            card = f.read()
        start = card.index(SIGNATURES_START.format(version=metrics["version"])) + len(
            SIGNATURES_START.format(version=metrics["version"]))
        signatures = card[start:card.index(SIGNATURES_END, start)]
        stale += [os.path.join(name, "metrics.json")] if metrics["paper"] != MODELS[name]["paper"] else []
        metrics["paper"] = MODELS[name]["paper"]
        text = model_card(metrics, MODELS[name], signatures)
        stale += [os.path.join(name, "MODEL_CARD.md")] if text != card else []
        if not check:
            _write(os.path.join(directory, "metrics.json"), metrics)
            with open(os.path.join(directory, "MODEL_CARD.md"), "w") as f:
                f.write(text)
    return stale


def _paper_nll(paper):
    if paper["nll"] is None:
        return "—" if paper["found"] else "not found"
    return f"{paper['nll']:.2f}"


def scoreboard():
    """The RESULTS.md table: one row per savedmodels/*/metrics.json (experiments/results_md.py writes it there)."""
    packaged = [_read(os.path.join(SAVEDMODELS, name, "metrics.json"))
                for name in (sorted(os.listdir(SAVEDMODELS)) if os.path.isdir(SAVEDMODELS) else [])]
    packaged = [metrics for metrics in packaged if metrics is not None]
    rows = []
    for metrics in packaged:
        name, test = metrics["name"], metrics["test"]
        paper = MODELS[name]["paper"]
        rows.append(
            f"| [{name}](savedmodels/{name}/MODEL_CARD.md) | {metrics['dataset']} | {test['nll_nats']:.2f} ± "
            f"{test['nll_stderr']:.2f} | {test['num_samples']:,} | {test['examples']:,}"
            f"{' targets' if test['split_examples'] is None else ''} | {metrics['epochs']} | "
            f"{_paper_nll(paper)} | {_protocol(paper)} | {metrics['train_seconds'] / 60:,.0f} min | "
            f"{metrics['machine']}, `{metrics['commit']}` |"
        )
    return "\n".join([
        "| model | dataset | test NLL (nats, ± s.e.) | k | test images | epochs | paper | the paper's protocol | "
        "training wall time | machine, commit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
        *rows,
        *_anchors(),
        *_comparisons(),
        *_few_shot_scoreboard(packaged),
    ])


def _anchors():
    """The published NLLs on the zoo's own protocol (the fixed binarization of MNIST), or "not found"."""
    lines = ["\nThe same protocol in the literature: published NLLs on the fixed binarization of MNIST (the "
             "`binarized_mnist` of the rows above), each read in the stored copy named (`ANCHORS` in "
             "experiments/pretrained.py).\n",
             "| model | test NLL (nats) | k | test images | epochs | read in |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for anchor in ANCHORS:
        found = anchor["nll"] is not None
        cells = [f"{anchor['nll']:.2f}" if found else "not found"] + [
            (f"{anchor[key]:,}" if anchor[key] is not None else "not stated") if found else "—"
            for key in ("k", "test_images", "epochs")]
        lines.append(f"| {anchor['model']} | " + " | ".join(cells) + f" | {anchor['read_from']} |")
    return lines


# (model, its baseline, the target margin in nats, where the claim comes from)
COMPARISONS = [
    ("memvae_mnist_500_500_100", "vae_mnist_530_530_100", 1.0,
     "the rebuttal's MEM-VAE 500-500-100 vs VAE 530-530-100 at k = 1: 85.69 - 84.41 = 1.28 nats"),
]


def _comparisons():
    lines = []
    for name, baseline, target, claim in COMPARISONS:
        model, base = (_read(os.path.join(SAVEDMODELS, n, "metrics.json")) for n in (name, baseline))
        if model is None or base is None:
            continue
        same = all(model[key] == base[key] for key in ("dataset", "epochs", "seed", "batch_size"))
        assert same and model["test"]["examples"] == base["test"]["examples"], (name, baseline)
        gap = base["test"]["nll_nats"] - model["test"]["nll_nats"]
        stderr = (model["test"]["nll_stderr"] ** 2 + base["test"]["nll_stderr"] ** 2) ** 0.5
        verdict = "meets" if gap >= target else f"misses by {target - gap:.2f} nats"
        lines.append(
            f"\n{name} is ahead of {baseline} by **{gap:.2f} nats** (± {stderr:.2f}, the two estimates' errors "
            f"taken as independent; same seed, data order and {model['epochs']} epochs): it {verdict} the target "
            f"of {target:.1f} nats ({claim})."
        )
    return lines


def _few_shot_scoreboard(packaged):
    """Few-shot accuracy against the targets, for every packaged model that has them."""
    lines = []
    for metrics in packaged:
        if metrics.get("few_shot"):
            lines += [f"\n{metrics['name']}: few-shot classification on the held-out alphabets "
                      f"({metrics['few_shot']['protocol']['episodes']} episodes per setting; the paper's on its 45/5 "
                      "alphabet split, about 1,479 training characters against these 178); its NLL row is "
                      "-log p(x | memory) of episode targets, not comparable with the other rows.\n",
                      *_few_shot_table(metrics)]
    return lines


def main(argv):
    del argv
    if FLAGS.cards:
        stale = write_cards(check=FLAGS.check)
        if FLAGS.check and stale:
            sys.exit(f"not what `python experiments/pretrained.py --cards` writes: {stale}")
        return
    if FLAGS.scoreboard:
        print(scoreboard())
        return
    names = _selected()
    if FLAGS.train:
        train(names)
    for name in names:
        if FLAGS.evaluate:
            evaluate(name)
        if FLAGS.package:
            package(name)


if __name__ == "__main__":
    app.run(main)
