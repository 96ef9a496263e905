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

A packaged model, `savedmodels/<name>/`, is what `zoo.runs.packaging` (`python -m zoo.package`) makes of
any run: the SavedModel `<version>/`, config.json, model.weights.h5, metrics.json, MODEL_CARD.md and the
learning curve (models packaged before curves were kept: the card says so). This registry adds what a run
cannot tell: the data in words, the paper's number and protocol, limitations, few-shot results and the
training record (command, epochs, wall time, commit, machine).

Each run directory also gets `provenance.json` (commit, CPU and the finished rounds), written by `--train`;
a stopped training (Ctrl-C, or its zoo.train process killed) resumes with the next `--train`. The training
wall time is read from the run's TensorBoard logs (every session's, not the time between them); the
hierarchies trained by experiments/hierarchies.py take theirs from experiments/results/hierarchies.json.
"""

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's zoo
from zoo.cli import run_app  # noqa: E402
from zoo.runs import logs, packaging, provenance  # noqa: E402
from zoo.runs.errors import UsageError  # noqa: E402

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
# Issue 25's long runs, as experiments/hierarchies.py evaluates them: k = 1000 on the first 2,000 (the card's NLL);
# their k = 100 on all 10,000 comes from hierarchies.json as the package's `full_split_test`.
LONG_TEST = dict(num_samples=1000, max_examples=2000)
BINARIZED_MNIST = ("binarized_mnist: the fixed binarization of Salakhutdinov & Murray (2008); trained on `train` "
                   "(50,000 images), the epoch with the best `validation` bound (10,000) kept, tested on `test` "
                   "(10,000)")
MNIST_LIMITATIONS = ("A density model of 28x28 binary digits for research, teaching and as a baseline; "
                     "not a classifier, not for other image sizes or grey levels. Trained for far fewer epochs "
                     "than papers train such models, on the fixed binarization (papers often report dynamically "
                     "binarized MNIST), so its NLL is not comparable one to one with published ones.")


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

# The VMA's few-shot Omniglot (Bornschein et al. 2017, sec. 4.2): both configurations train on the same episodes
# (8 characters x 4 targets + 4 memory drawings each, seed 0) for 50 x 250 updates.
VMA_OMNIGLOT_TRAIN = ["--dataset=omniglot", "--data_path=../shared/datasets/omniglot", "--seed=0",
                      "--steps_per_epoch=250"]
# -log p(x | memory) of the targets of 32 fixed test episodes (k = 5000 of a conv model on every target would take
# hours here), and few-shot classification on the held-out alphabets.
VMA_OMNIGLOT_TEST = dict(num_samples=1000, max_examples=1024)
VMA_FEW_SHOT = dict(episodes=300, seed=2, settings=[  # (ways, shots, the target %, the paper's %)
    (5, 1, 85, 91), (5, 5, 95, 97), (20, 1, 70, 77), (20, 5, 85, 90)])
VMA_PAPER = reported(None, "Bornschein et al. 2017, sec. 4.2: few-shot accuracy 91 / 97 / 77 / 90 % (5-way 1-shot, "
                     "5-way 5-shot, 20-way 1-shot, 20-way 5-shot) with the 45/5 alphabet split of its reference [18]: "
                     "144 test characters, so about 1,479 of the 1,623 to train on; it says nothing of training to "
                     "convergence")
OMNIGLOT = ("omniglot (Lake et al. 2015), the two small background archives (8 alphabets, 242 characters x 20 "
            "drawers, binarized), at {size}; alphabet-disjoint split (zoo.data.omniglot): 6 alphabets (178 "
            "characters) to train, Japanese_(katakana) and Tagalog held out; episodes of 8 characters, 4 targets and "
            "4 memory drawings each")
OMNIGLOT_LIMITATIONS = ("A generative few-shot model of {size} binarized handwritten characters for research and "
                        "teaching: p(x | memory) and few-shot classification by q(a | x). Trained on 178 characters "
                        "against the paper's about 1,479 (12 %), and tested on other alphabets, so its accuracies are "
                        "not the paper's.")

def vma_omniglot(preset, size, data_size, networks):
    """The registry entry of a few-shot Omniglot VMA: trained, evaluated and compared alike, at `size`."""
    return dict(train=[f"--preset={preset}", *VMA_OMNIGLOT_TRAIN], epochs=50, evaluate=VMA_OMNIGLOT_TEST,
                few_shot=VMA_FEW_SHOT, paper=VMA_PAPER, data=OMNIGLOT.format(size=data_size),
                limitations=OMNIGLOT_LIMITATIONS.format(size=size) + networks)


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
                    "image (`zoo.analysis` slot images); same seed and data order as memvae_mnist_500_500_100.",
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
    "vma_omniglot_conv": vma_omniglot(
        "vma_omniglot_conv", "28x28", "28x28", " Its networks are the zoo's (tied h^q = h^m, p(a) from the same "
        "embeddings); vma_omniglot_paper, the paper's configuration, trains on the same episodes and budget."),
    "vma_omniglot_paper": vma_omniglot(
        "vma_omniglot_paper", "26x26", "26x26 (the 104x104 crop of the 105x105 originals max-pooled 4x4, as the paper's)",
        " The paper's networks (sec. 4.2): untied embedding networks for p(a) and q(a|x), q(z|m,x) on x and m "
        "stacked, the leave-one-out VIMCO baseline; same training episodes, updates and seed as vma_omniglot_conv."),
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
        hierarchy="nvae_small_long",
        evaluate=LONG_TEST,
        paper=reported(78.01, VAHDAT, "dynamic", k=1000, test_images=10000, epochs=400),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " A small NVAE (4 latent groups of 8 channels at 7x7 and 14x14, 16 "
                    "channels) trained for 20 epochs with KL warm-up over the first 30 %: far from the paper's model "
                    "and budget. Its NLL is at k = 1000 on the first 2,000 test images (the card also gives k = 100 "
                    "on all 10,000). It took 31,461 updates, not 20 x 1,562 = 31,240: Keras ran whole calls of 25 "
                    "steps, so each epoch took 1,575 and the last one ran out of data after 1,536 (epochs are whole "
                    "calls since).",
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
        hierarchy="pixel_hierarchy_long",
        evaluate=LONG_TEST,
        paper=reported(None, "Gulrajani et al. 2017, sec. 3.2: hierarchical PixelVAE (paper-scale; this one is "
                    "nvae_mnist_small's hierarchy with a small PixelCNN, so no paper number applies)"),
        data=BINARIZED_MNIST,
        limitations=MNIST_LIMITATIONS + " nvae_mnist_small's hierarchy with a gated PixelCNN (4 blocks x 32 "
                    "filters) that reads the image, trained for 20 epochs (31,240 updates of 32) with KL warm-up "
                    "over the first 30 %; these are the weights of its best validation epoch, 18 (28,116 updates). "
                    "Only the top latent group carries information (the three below it hold under 0.01 nats "
                    "each): the PixelCNN models what they would. Its NLL is at k = 1000 on the first 2,000 test "
                    "images (the card also gives k = 100 on all 10,000). Its PixelCNN decoder samples pixel by "
                    "pixel (784 sequential passes), so `sample` is slow.",
    ),
}


def _selected():
    unknown = sorted(set(FLAGS.only) - set(MODELS))
    if unknown:
        raise UsageError(f"--only: unknown models {unknown}; known: {sorted(MODELS)}")
    return [name for name in MODELS if not FLAGS.only or name in FLAGS.only]


def run_dir(name):
    spec = MODELS[name]
    if "hierarchy" in spec:
        return os.path.join(os.path.dirname(os.path.abspath(os.path.expanduser(FLAGS.runs))), "hierarchies",
                            spec["hierarchy"])
    return os.path.join(os.path.abspath(os.path.expanduser(FLAGS.runs)), name)


def _run(module, *args):
    command = [sys.executable, "-m", module, *args]
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


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
    """Resumes the run to `epochs` and records the finished round in the run's provenance.json."""
    directory = run_dir(name)
    provenance_path = os.path.join(directory, "provenance.json")
    record = _read(provenance_path)
    if record is None:
        record = {"commit": provenance.commit(), "machine": provenance.machine()["cpu"], "cores": os.cpu_count(),
                  "rounds": []}
    os.makedirs(directory, exist_ok=True)
    if record["rounds"] and record["rounds"][-1]["epochs"] >= epochs:
        return
    _run("zoo.train", *MODELS[name]["train"], f"--epochs={epochs}", f"--model_dir={directory}", "--verbose=2")
    record["rounds"].append({"epochs": epochs, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    _write(provenance_path, record)


def training_record(name):
    """(train command, epochs, training wall seconds, commit, machine, cores) of a finished run."""
    spec, directory = MODELS[name], run_dir(name)
    config = _read(os.path.join(directory, "config.json"))
    if "hierarchy" in spec:
        measured = _read(HIERARCHIES)["configurations"][spec["hierarchy"]]
        command = _shown(measured["train_command"], name)
        return command, measured["epochs"], measured["train_seconds"], measured["commit"], measured["machine"], \
            measured["cores"]
    record = _read(os.path.join(directory, "provenance.json"))
    epochs = record["rounds"][-1]["epochs"]
    assert epochs == config["epochs"], (name, epochs, config["epochs"])
    command = shlex.join(["python", "-m", "zoo.train", *spec["train"], f"--epochs={epochs}",
                          f"--model_dir=~/zoo-runs/pretrained/{name}"])
    # From the TensorBoard logs: every session's time, an interrupted one's too, and not the time between them.
    seconds = round(logs.training_seconds(directory), 1)
    return command, epochs, seconds, record["commit"], record["machine"], record["cores"]


def _shown(command, name):
    """A hierarchy experiment's command with its run directory as the cards show it."""
    return command.replace(run_dir(name), f"~/zoo-runs/hierarchies/{MODELS[name]['hierarchy']}")


def _evaluation(name):
    """The run's evaluation.json if it follows the model's protocol (k, test images), else None."""
    return packaging.matching_evaluation(run_dir(name), **MODELS[name]["evaluate"])


def _evaluate_args(name):
    wanted = MODELS[name]["evaluate"]
    args = [f"--model_dir={run_dir(name)}", "--split=test", f"--num_samples={wanted['num_samples']}"]
    return args + ([f"--max_examples={wanted['max_examples']}"] if wanted["max_examples"] else [])


def evaluate(name):
    if _evaluation(name) is None:
        _run("zoo.evaluate", *_evaluate_args(name))
    if "few_shot" in MODELS[name] and _few_shot(name) is None:
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
    from zoo.runs import state as run_state

    model, config = run_state.load_trained_model(directory, "best")
    if config.get("data_path"):
        config = {**config, "data_path": os.path.join(ROOT, os.path.expanduser(config["data_path"]))}
    return model, config


def _few_shot_accuracy(model, config, ways, shots, episodes, seed):
    """`zoo.analysis.few_shot_accuracy` on the first `episodes` test episodes of N-way K-shot (one query per class)."""
    import zoo

    data = zoo.data.omniglot.few_shot_episodes("test", ways=ways, shots=shots, queries_per_class=1,
                                               num_episodes=episodes, seed=seed, path=config["data_path"],
                                               **(config.get("data_options") or {}))  # e.g. 26x26 images
    result = zoo.analysis.few_shot_accuracy(model, data)
    return {key: result[key] for key in ("ways", "shots", "episodes", "queries", "accuracy", "stderr", "seconds")}


def _few_shot(name):
    """The run's few_shot.json if it follows the model's protocol and is of the run's last epoch, else None."""
    few_shot = _read(os.path.join(run_dir(name), "few_shot.json"))
    protocol = json.loads(json.dumps(MODELS[name]["few_shot"]))  # tuples as JSON lists
    epochs = _read(os.path.join(run_dir(name), "config.json"))["epochs"]
    fits = few_shot is not None and few_shot["protocol"] == protocol and few_shot["epochs"] == epochs
    return few_shot if fits else None


# Few-shot episodes per setting that the served model re-classifies in the tests: the first 20.
FEW_SHOT_CHECK_EPISODES = 20
# The registry's runs train on this machine's CPU, shared with other jobs.
WALL_TIME_NOTE = "no GPU; shared with other jobs, so an upper bound"


def card_text(name):
    """What the registry's card of `name` says that its run cannot tell (`zoo.runs.packaging.model_card`'s text)."""
    spec = MODELS[name]
    return dict(data=spec["data"], limitations=spec["limitations"], wall_time_note=WALL_TIME_NOTE,
                checked_by="tests/test_pretrained.py",
                few_shot_command=f"python experiments/pretrained.py --evaluate --only={name}")


def package(name):
    """Packages the run into savedmodels/<name>/ (`zoo.runs.packaging`) with the registry's records and card text."""
    if _evaluation(name) is None:
        raise UsageError(f"{name}: no evaluation with k = {MODELS[name]['evaluate']} yet; run --evaluate first")
    if "few_shot" in MODELS[name] and _few_shot(name) is None:
        raise UsageError(f"{name}: no few-shot evaluation of the card's protocol yet; run --evaluate first")
    spec, directory = MODELS[name], run_dir(name)
    command, epochs, seconds, trained_at, machine, cores = training_record(name)
    recorded = {
        "epochs": epochs,
        "train_seconds": seconds,
        "paper": spec["paper"],
        "train_command": command,
        "evaluate_command": shlex.join(["python", "-m", "zoo.evaluate", *_evaluate_args(name)]).replace(
            directory, "~/zoo-runs/" + os.path.relpath(directory, os.path.dirname(os.path.expanduser(FLAGS.runs)))),
        "package_command": f"python experiments/pretrained.py --package --only={name}",
        "commit": trained_at,
        "machine": machine,
        "cores": cores,
    }
    if "hierarchy" in spec:
        measured = _read(HIERARCHIES)["configurations"][spec["hierarchy"]]
        if "also_evaluation" in measured:
            recorded["full_split_test"] = {**measured["also_evaluation"],
                                           "command": _shown(measured["also_evaluate_command"], name)}
    if "few_shot" in spec:
        model, config = _trained(directory)
        recorded["few_shot"] = _few_shot(name)
        # The served `classify` must reproduce these exactly (tests/test_pretrained.py).
        recorded["few_shot_check"] = [
            _few_shot_accuracy(model, config, ways, shots, FEW_SHOT_CHECK_EPISODES, spec["few_shot"]["seed"])
            for ways, shots, _, _ in spec["few_shot"]["settings"]
        ]
    with contextlib.chdir(ROOT):  # the runs' relative data paths, as zoo.train read them (and the card's path)
        path = packaging.package(directory, os.path.join(SAVEDMODELS, name), **spec["evaluate"], name=name,
                                 metrics=recorded, card=card_text(name))
    print(f"packaged {path}")


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
        text = packaging.model_card(metrics, signatures, **card_text(name))
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
        # A model evaluated on the first test images at a large k also shows its k = 100 on every test image.
        for test, shown in ((test, ""), (metrics.get("full_split_test"), " (every test image)")):
            if test is None:
                continue
            rows.append(
                f"| [{name}](savedmodels/{name}/MODEL_CARD.md){shown} | {metrics['dataset']} | {test['nll_nats']:.2f} "
                f"± {test['nll_stderr']:.2f} | {test['num_samples']:,} | {test['examples']:,}"
                f"{' targets' if test['split_examples'] is None else ''} | {metrics['epochs']} | "
                f"{_paper_nll(paper)} | {packaging.protocol(paper)} | {metrics['train_seconds'] / 60:,.0f} min | "
                f"{metrics['machine']}, `{metrics['commit']}` |"
            )
    return "\n".join([
        "| model | dataset | test NLL (nats, ± s.e.) | k | test images | epochs | paper | the paper's protocol | "
        "training wall time | machine, commit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
        *rows,
        *_anchors(),
        *_comparisons(),
        *_targets(packaged),
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


# Issue 25's targets for the flagship hierarchies: (model, NLL target in nats, the models it should be below;
# "*": every other binarized_mnist model).
TARGETS = [
    ("nvae_mnist_small", 84.0, ["ladder_vae_mnist", "vae_mnist_530_530_100"]),
    ("pixelvae_hierarchical_mnist", 82.0, "*"),
]


def _targets(packaged):
    """Each target model's NLL against its target and against the models it should be below, each model on every
    test image where it was measured there (else on its card's test images). An ordering is claimed only beyond two
    standard errors of the difference (the estimates' errors taken as independent); a smaller k can only raise an
    estimate (in expectation), so being below a larger-k row is conservative."""
    by_name = {metrics["name"]: metrics for metrics in packaged}
    lines = []
    for name, target, below in TARGETS:
        if name not in by_name:
            continue
        metrics = by_name[name]
        test = _widest_test(metrics)
        others = [n for n in by_name if n != name and by_name[n]["dataset"] == metrics["dataset"]] if below == "*" \
            else [n for n in below if n in by_name]
        nll = test["nll_nats"]
        verdict = (f"meets the target of {target:g} nats" if nll <= target
                   else f"misses the target of {target:g} nats by {nll - target:.2f}")
        groups = {"Below": [], "Within two standard errors of": [], "Above": []}
        for other in others:
            theirs = _widest_test(by_name[other])
            gap = theirs["nll_nats"] - nll
            stderr = (theirs["nll_stderr"] ** 2 + test["nll_stderr"] ** 2) ** 0.5
            relation = ("Below" if gap > 2 * stderr else "Above" if gap < -2 * stderr
                        else "Within two standard errors of")
            groups[relation].append(f"{other} ({theirs['nll_nats']:.2f}, k = {theirs['num_samples']:,}, "
                                    f"{theirs['examples']:,} test images; {gap:+.2f} ± {stderr:.2f})")
        lines.append(
            f"\n{name} after {metrics['epochs']} epoch{'s' if metrics['epochs'] != 1 else ''}: {nll:.2f} ± "
            f"{test['nll_stderr']:.2f} nats (k = {test['num_samples']:,}, {test['examples']:,} test images) {verdict}."
            + "".join(f" {relation} {', '.join(rows)}." for relation, rows in groups.items() if rows)
        )
    return lines


def _widest_test(metrics):
    """A package's evaluation on every test image if it has one, else its card's."""
    return metrics.get("full_split_test") or metrics["test"]


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
    """Few-shot accuracy of the packaged models that have it, side by side, against the targets."""
    models = [metrics for metrics in packaged if metrics.get("few_shot")]
    if not models:
        return []
    names = " and ".join(metrics["name"] for metrics in models)
    # The same seed, budget and training code (which draws the episodes): the same training episodes.
    budgets = {(metrics["seed"], metrics["epochs"], metrics["steps_per_epoch"], metrics["commit"])
               for metrics in models}
    budget = (f"; trained on the same episodes (seed {models[0]['seed']}, code of `{models[0]['commit']}`) for "
              f"{models[0]['epochs']} x {models[0]['steps_per_epoch']} updates each"
              if len(models) > 1 and len(budgets) == 1 else "")
    sizes = {metrics["name"]: _read(os.path.join(SAVEDMODELS, metrics["name"], "config.json"))["model"]["config"][
        "input_shape"][:2] for metrics in models}
    if len({tuple(size) for size in sizes.values()}) > 1:  # nats per image of different pixel counts
        comparable = ("not comparable with the other rows nor with each other (images of "
                      + ", ".join(f"{h}x{w} pixels ({name})" for name, (h, w) in sizes.items()) + ")")
    else:
        comparable = "not comparable with the other rows"
    return [f"\nFew-shot classification on the held-out alphabets by {names} "
            f"({models[0]['few_shot']['protocol']['episodes']} episodes per setting{budget}; the paper's on its 45/5 "
            f"alphabet split, about 1,479 training characters against these 178); "
            f"{'their NLL rows are' if len(models) > 1 else 'its NLL row is'} -log p(x | memory) of episode targets, "
            f"{comparable}.\n",
            *packaging.few_shot_table(*models)]


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
    run_app(main)
