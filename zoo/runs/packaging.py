"""A trained run packaged as a model of the zoo: SavedModel, weights, metrics, learning curve and model card.

    from zoo.runs import packaging
    packaging.package("runs/vae", "savedmodels/vae")   # or: python -m zoo.package --model_dir=... --export_dir=...

A package, `<export_dir>/`:

    <version>/          the SavedModel with the zoo's serving signatures; TF Serving's model base path is
                        export_dir, and a re-packaged model gets the next version (the package keeps only it)
    config.json         the run's configuration (preset, overrides, optimisation), without its data path
    model.weights.h5    the best weights: `zoo.LatentVariableModel.from_preset(export_dir)` rebuilds the model
    metrics.json        what the card says, for programs
    MODEL_CARD.md       data, budget, machine, test NLL, commands, commit, intended use and limitations
    learning_curve.json the run's bound per epoch (zoo.runs.logs) and the test NLL at the packaged epoch
    learning_curve.png  its plot, shown on the card

The package is assembled beside the old one and swapped in at the end, so a failure leaves the old one
as it was. What a card says that a run cannot tell (its data in words, a paper's number, limitations,
where and by what command it was trained) is an optional input; without it the card says what the run
directory shows and "not recorded" for the rest.
"""

import json
import os
import shlex
import shutil
import time

from zoo.runs import evaluation as run_evaluation
from zoo.runs import logs, provenance
from zoo.runs.config import check_counts
from zoo.runs.errors import UsageError
from zoo.runs.files import BEST_WEIGHTS, CHECKPOINT_DIR, CONFIG_FILE, check_directory_path, read_config, read_json

WEIGHTS_FILE, METRICS_FILE, CARD_FILE = "model.weights.h5", "metrics.json", "MODEL_CARD.md"
LEARNING_CURVE_JSON, LEARNING_CURVE_PNG = "learning_curve.json", "learning_curve.png"
PACKAGE_FILES = {CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, CARD_FILE, LEARNING_CURVE_JSON, LEARNING_CURVE_PNG}
# The card's exact re-measurement, which the served `log_likelihood` must reproduce: the first 100 test
# images; for a model whose memory comes with each batch, the targets of the first test episode.
CHECK_EXAMPLES = 100
CHECK_EPISODES = 1
# The card's trend: the change of the bound over the last epochs, at most this many.
TREND_EPOCHS = 5
# metrics.json entries a caller may give because the run directory does not hold them.
GIVEN_METRICS = ("epochs", "train_seconds", "train_command", "evaluate_command", "package_command", "commit",
                 "machine", "cores", "paper", "few_shot", "few_shot_check", "full_split_test")
# What a package's metrics.json keeps of an evaluation (zoo.runs.evaluation's result).
TEST_KEYS = ("split", "num_samples", "examples", "split_examples", "nll_nats", "nll_stderr", "bound_nats", "seconds")
NOT_RECORDED = "not recorded"
NOT_STATED = ("Not stated when it was packaged. Its numbers hold for the data above; nothing here says how it "
              "behaves on other data.")
LOGGED_WALL_TIME = "from its TensorBoard event times, pauses between resumptions included"


def check(model_dir, export_dir, num_samples=5000, max_examples=None):
    """The checks of `package` that need no TensorFlow: a run to package, a destination it may replace.

    Raises `UsageError` naming the option: `model_dir` holds no `zoo.train` run; `export_dir` is a
    file, holds files that are not a package's (it would be replaced), cannot be written, or its
    device has no room for the package.
    """
    check_counts(num_samples=num_samples, max_examples=max_examples)
    read_config(model_dir)
    check_directory_path(export_dir, "--export_dir")
    if os.path.exists(export_dir):
        foreign = sorted(name for name in os.listdir(export_dir) if name not in PACKAGE_FILES and not name.isdigit())
        if foreign:
            raise UsageError(f"--export_dir {export_dir!r} holds files that are not a zoo package's "
                             f"({', '.join(foreign[:5])}), and packaging replaces it; pick a new directory")
    target = os.path.abspath(export_dir)
    # Assembled in export_dir's parent and renamed into place: both must be writable (renaming a directory
    # writes its `..` entry).
    writes = [target, os.path.dirname(target)] if os.path.exists(target) else [os.path.dirname(target)]
    while not os.path.exists(writes[-1]):
        writes[-1] = os.path.dirname(writes[-1])
    for directory in writes:
        if not os.access(directory, os.W_OK):
            raise UsageError(f"--export_dir {export_dir!r}: {directory} is not writable")
    # Checked before writing, as HDF5 can crash the process on a full disk: room for the weights twice
    # (SavedModel variables, model.weights.h5), the graph and the plot.
    weights = os.path.join(model_dir, BEST_WEIGHTS)
    needed = 2 * os.path.getsize(weights) + 2**23 if os.path.isfile(weights) else 0
    stat = os.statvfs(writes[-1])
    if stat.f_bavail * stat.f_frsize < needed:
        raise UsageError(f"--export_dir {export_dir!r}: no space left on device for the package (about "
                         f"{needed / 2**20:.1f} MiB needed, {stat.f_bavail * stat.f_frsize / 2**20:.1f} MiB free); "
                         "free some space and run the same command again")


def matching_evaluation(model_dir, num_samples=5000, max_examples=None):
    """The run's evaluation.json (`zoo.runs.evaluation`) if it is of the best weights as they are now, on the
    run's dataset's test split with `num_samples` importance samples on the first `max_examples` (None:
    all) examples; else None."""
    path = os.path.join(model_dir, run_evaluation.RESULT_FILE)
    if not os.path.isfile(path):
        return None
    result, config = read_json(path), read_config(model_dir)
    weights = os.path.join(model_dir, BEST_WEIGHTS)
    split_examples = result.get("split_examples")
    examples = max_examples or split_examples or 1000  # episodes: zoo.runs.evaluation's default, 1000 targets
    fits = (os.path.isfile(weights) and os.path.getmtime(path) >= os.path.getmtime(weights)
            and result.get("dataset") == config["dataset"] and result.get("split") == "test"
            and result.get("weights", "best") == "best"  # recorded since evaluations could be of the last weights
            and result.get("num_samples") == num_samples
            and result.get("examples") == (min(examples, split_examples) if split_examples else examples))
    return result if fits else None


def package(model_dir, export_dir, num_samples=5000, max_examples=None, name=None, metrics=None, card=None,
            progress=True):
    """Packages the best weights of a `zoo.train` run into `export_dir` (see the module's docstring).

    The test NLL is the run's evaluation.json when it follows the protocol (`matching_evaluation`),
    else the run is evaluated now (written to its evaluation.json, as `zoo.evaluate` does).

    Args:
        model_dir: str, a directory written by `zoo.train`.
        export_dir: str, the package (TF Serving's model base path): new, or a package to replace.
        num_samples: int, importance samples per example of the test NLL.
        max_examples: int or None, the first test examples it is measured on (None: all; episodes: 1000 targets).
        name: str, the model's name on the card; default: export_dir's last component.
        metrics: dict of metrics.json entries the run directory does not hold (`GIVEN_METRICS`), e.g.
            `train_command`, `commit`, `machine`, `cores` of the training, `paper` (a paper's NLL and
            protocol: `nll`, `found`, `binarization`, `k`, `test_images`, `epochs`, `source`), `few_shot`
            and `few_shot_check` (few-shot results and the ones the served `classify` reproduces),
            `full_split_test` (a second test evaluation on every test example, at a smaller k, when the
            packaged one is on the first `max_examples`: `zoo.evaluate`'s result with its `command`). Defaults:
            `epochs` the run's checkpoints (else its logs) say, `train_seconds` from its TensorBoard event
            times (`zoo.runs.logs.training_seconds`), the zoo.evaluate and zoo.package commands that do
            what was done, and None ("not recorded" on the card) for the rest.
        card: dict of the card's text arguments of `model_card` (`data`, `limitations`, `wall_time_note`,
            `checked_by`, `few_shot_command`); `wall_time_note` defaults to where the wall time was read
            when `metrics` gives none.
        progress: bool, report an evaluation's progress on stderr.

    Returns:
        str, the path of the new SavedModel version.
    """
    check(model_dir, export_dir, num_samples, max_examples)
    given = dict(metrics or {})
    unknown = sorted(set(given) - set(GIVEN_METRICS))
    if unknown:
        raise ValueError(f"metrics: unknown entries {unknown}; known: {', '.join(GIVEN_METRICS)}")
    full = given.get("full_split_test")
    if full is not None:
        missing = sorted((set(TEST_KEYS) | {"command", "weights"}) - set(full))
        if missing:
            raise ValueError(f"metrics: full_split_test must be a zoo.evaluate result with its command, "
                             f"missing {missing}")
        if (full["split"], full["weights"], full["examples"]) != ("test", "best", full["split_examples"]):
            raise ValueError(f"metrics: full_split_test must cover the test split ({full['split_examples']} examples) "
                             f"with the best weights, got {full['examples']} examples of {full['split']!r} with "
                             f"{full['weights']!r}")
    export_dir = os.path.normpath(export_dir)
    base = os.path.basename(os.path.abspath(export_dir))
    name = name or base
    staging, old = (os.path.join(os.path.dirname(os.path.abspath(export_dir)), f".{base}.{suffix}")
                    for suffix in ("staging", "old"))
    if not os.path.exists(export_dir) and os.path.isdir(old):  # killed between the two renames of a swap
        os.replace(old, export_dir)
    elif os.path.exists(old):  # killed while removing the package a finished swap replaced
        shutil.rmtree(old)
    curve = logs.learning_curve(model_dir)  # no logs: a one-line error before anything is measured
    if curve["best_epoch"] is None:
        raise UsageError(f"--model_dir {model_dir!r} logged no finite {curve['selected_by'].replace('_', ' ')}: "
                         "no epoch's weights were kept as the best")
    result = matching_evaluation(model_dir, num_samples, max_examples) or run_evaluation.evaluate(
        model_dir, split="test", num_samples=num_samples, max_examples=max_examples, progress=progress)

    import numpy as np

    from zoo.runs import export as run_export
    from zoo.runs.state import load_trained_model

    model, config = load_trained_model(model_dir, "best")
    epochs = given.get("epochs") or _trained_epochs(model_dir, curve)
    evaluate_args = [f"--model_dir={model_dir}", "--split=test", f"--num_samples={num_samples}"]
    evaluate_args += [f"--max_examples={max_examples}"] if max_examples else []
    package_args = [f"--model_dir={model_dir}", f"--export_dir={export_dir}", *evaluate_args[2:]]
    version = run_export.next_version(export_dir)
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
        "train_seconds": given.get("train_seconds") or round(logs.training_seconds(model_dir), 1),
        "test": {key: result[key] for key in TEST_KEYS},
        "check": _check(model, config, num_samples),
        "paper": given.get("paper"),
        "train_command": given.get("train_command"),
        "evaluate_command": given.get("evaluate_command") or shlex.join(["python", "-m", "zoo.evaluate",
                                                                          *evaluate_args]),
        "package_command": given.get("package_command") or shlex.join(["python", "-m", "zoo.package",
                                                                        *package_args]),
        "commit": given.get("commit"),
        "machine": given.get("machine"),
        "cores": given.get("cores"),
        "version": version,
        "packaged": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "packaged_at_commit": provenance.commit(),
    }
    if given.get("few_shot") is not None:
        metrics.update(few_shot=given["few_shot"], few_shot_check=given.get("few_shot_check"))
    if full is not None:
        metrics["full_split_test"] = {key: full[key] for key in (*TEST_KEYS, "command")}
    card = {"wall_time_note": None if "train_seconds" in given else LOGGED_WALL_TIME, **(card or {})}
    shown = os.path.relpath(export_dir)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        run_export.export(model, staging, version=version)
        model.save_weights(os.path.join(staging, WEIGHTS_FILE))
        _write_json(os.path.join(staging, CONFIG_FILE), {key: value for key, value in config.items()
                                                         if key != "data_path"})
        metrics["learning_curve"] = write_learning_curve(model_dir, staging, name, epochs, metrics["test"], curve)
        _write_json(os.path.join(staging, METRICS_FILE), metrics)
        with open(os.path.join(staging, CARD_FILE), "w") as f:
            f.write(model_card(metrics, signature_lines(model),
                               path=os.path.abspath(export_dir) if shown.startswith("..") else shown, **card))
        if os.path.exists(export_dir):
            os.replace(export_dir, old)
        os.replace(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return os.path.join(export_dir, str(version))


def _write_json(path, value):
    """JSON as the zoo's packages hold it (indented, a final newline); into the staging directory, so not atomic."""
    with open(path, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")


def _trained_epochs(model_dir, curve):
    """The epochs the run finished: its newest checkpoint's number, else the last epoch its logs hold."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))
    return int(latest.rsplit("-", 1)[1]) if latest else curve["epochs"][-1]["epoch"]


def _check(model, config, num_samples):
    """The exact re-measurement the served model must reproduce: k = `num_samples`, seed 0, the first test
    images (episode models: the targets of the first test episodes, each given its episode's memory). A
    small test split (Frey faces: 200 images) is re-measured whole: the card's own number."""
    import numpy as np

    from zoo.runs.data import count_examples, load_episodes, load_split

    if config.get("episodes"):
        nll = np.concatenate([-model.log_likelihood(episode, num_samples=num_samples, seed=0).numpy()
                              for episode in load_episodes(config, "test", CHECK_EPISODES, seed=0)])
        of = {"examples": len(nll), "episodes": CHECK_EPISODES, "episode_seed": 0}
    else:
        split_examples = count_examples(config, "test")
        examples = split_examples if split_examples <= 2 * CHECK_EXAMPLES else CHECK_EXAMPLES
        first = next(iter(load_split(config, "test", examples, shuffle=False)))
        nll, of = -model.log_likelihood(first, num_samples=num_samples, seed=0).numpy(), {"examples": examples}
    return {**of, "num_samples": num_samples, "seed": 0, "nll_nats": float(nll.mean()),
            "nll_stderr": float(nll.std(ddof=1) / np.sqrt(len(nll)))}


def signature_lines(model):
    """The card's list of the model's serving signatures, one line each: name, then each input's name, dtype, shape."""
    return "\n".join(
        f"- `{endpoint}`: " + ", ".join(f"`{s.name}` {s.dtype.name} {list(s.shape)}" for s in signature)
        for endpoint, (_, signature) in model.serving_endpoints().items()
    )


def write_learning_curve(model_dir, directory, name, epochs, test, curve=None):
    """Writes the run's learning curve (`zoo.runs.logs.learning_curve`, or `curve` read from it) into `directory`
    as learning_curve.json and learning_curve.png, with `test` (metrics.json's) at the epoch of the packaged
    (best) weights, for a run of `epochs` epochs; returns what metrics.json keeps of it for the card."""
    from zoo import analysis

    curve = dict(curve or logs.learning_curve(model_dir))
    logged = {row["epoch"] for row in curve["epochs"]}
    # Trained but not in the logs: gaps, and epochs after the last one logged.
    curve["missing_epochs"] = [epoch for epoch in range(1, epochs + 1) if epoch not in logged]
    curve["test"] = {"epoch": curve["best_epoch"],
                     **{key: test[key] for key in ("split", "num_samples", "examples", "nll_nats", "nll_stderr")}}
    _write_json(os.path.join(directory, LEARNING_CURVE_JSON), curve)
    analysis.plot_learning_curve(curve, os.path.join(directory, LEARNING_CURVE_PNG),
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
    """The card's learning curve: the plot and its JSON, or, for packages made before curves were kept, that
    the run's logs were not kept."""
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
                  if best == last else "; the epoch after the best one did not improve on it" if last - best == 1
                  else f"; none of the {last - best} epochs after the best one improved on it")
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


def few_shot_table(*packages):
    """The few-shot accuracies of packages (one column each, one protocol) against the targets and the paper's,
    as Markdown table lines."""
    protocols = {metrics["name"]: json.dumps(metrics["few_shot"]["protocol"], sort_keys=True) for metrics in packages}
    if len(set(protocols.values())) != 1:
        raise ValueError(f"few-shot results of one protocol expected, got {protocols}")
    heads = [metrics["name"] for metrics in packages] if len(packages) > 1 else ["accuracy"]
    lines = ["| setting | " + " | ".join(heads) + " | target | paper |", "| --- |" + " ---: |" * (len(heads) + 2)]
    for i, first in enumerate(packages[0]["few_shot"]["results"]):
        cells = []
        for metrics in packages:
            row = metrics["few_shot"]["results"][i]
            accuracy = 100 * row["accuracy"]
            verdict = "meets" if accuracy >= row["target"] else f"misses by {row['target'] - accuracy:.1f} points"
            cells.append(f"{accuracy:.1f} % ± {100 * row['stderr']:.1f} ({verdict})")
        lines.append(f"| {first['ways']}-way {first['shots']}-shot | " + " | ".join(cells)
                     + f" | {first['target']} % | {first['paper']} % |")
    return lines


def _few_shot_section(metrics, command, checked_by):
    if not metrics.get("few_shot"):
        return ""
    episodes = metrics["few_shot_check"][0]["episodes"]
    checked = (f"{checked_by} re-classifies the first {episodes} episodes of each setting with the served model."
               if checked_by else f"The served `classify` gives `few_shot_check` (metrics.json) on the first "
               f"{episodes} episodes of each setting.")
    return "\n".join([
        "\n## Few-shot classification on the held-out alphabets\n",
        "`model.classify(queries, support_set, labels)`: p(c | x) = the posterior address mass q(a | x) on the "
        "class's entries, no retraining; one query per class and episode, accuracy ± standard error over the "
        f"{metrics['few_shot']['protocol']['episodes']} episodes of each setting"
        f"{f' (`{command}`)' if command else ''}. {checked}\n",
        *few_shot_table(metrics),
        "",
    ])


def _stated(value, unit):
    return f"{unit} not stated" if value is None else f"{value:,} {unit}"


def protocol(paper):
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
        return f"{protocol(paper)}: {paper['source']}"
    return f"{paper['nll']:.2f} nats ({protocol(paper)}): {paper['source']}"


def _budget(metrics):
    epochs = f"{metrics['epochs']} epoch" + ("s" if metrics["epochs"] != 1 else "")
    if metrics["batch_size"] is None:  # episodes
        steps = metrics["steps_per_epoch"]
        return f"{epochs} of {steps} episodes ({metrics['epochs'] * steps:,} updates, one episode each)"
    return f"{epochs}, batch {metrics['batch_size']}"


def _check_of(check):
    if check.get("episodes") == 1:
        return f"test episode ({check['examples']} targets)"
    if check.get("episodes"):
        return f"{check['episodes']} test episodes ({check['examples']} targets)"
    return f"{check['examples']} test images"


def _data(metrics):
    """What a run's configuration says of its data."""
    kept = (f"the epoch with the best `{metrics['validation_split']}` bound kept" if metrics["validation_split"]
            else "no validation split: the epoch with the best training bound kept")
    episodes = " in episodes" if metrics["batch_size"] is None else ""
    return f"{metrics['dataset']} (zoo.data): trained on `{metrics['train_split']}`{episodes}, {kept}, tested on `test`"


def _wall_time(metrics, note):
    details = ([f"{metrics['cores']} cores"] if metrics["cores"] else []) + ([note] if note else [])
    return (f"{metrics['train_seconds']:,.0f} s on {metrics['machine'] or 'a machine ' + NOT_RECORDED}"
            + (f" ({', '.join(details)})" if details else ""))


def model_card(metrics, signatures, path=None, data=None, limitations=None, wall_time_note=None, checked_by=None,
               few_shot_command=None):
    """The MODEL_CARD.md of a package's metrics.json.

    Args:
        metrics: dict, the package's metrics.json.
        signatures: str, the exported version's serving signatures, one line each (`signature_lines`).
        path: str, the package's directory as the card shows it; default `savedmodels/<name>`.
        data: str, the data row; default: the dataset and splits of the run's configuration.
        limitations: str, intended use and limitations; default: not stated.
        wall_time_note: str, what qualifies the training wall time (hardware, a shared machine, where it was
            read).
        checked_by: str, what re-measures the card's check (e.g. a test file); default: the served model.
        few_shot_command: str, the command that measured the few-shot results, if any.
    """
    test, name = metrics["test"], metrics["name"]
    path = path or f"savedmodels/{name}"
    overrides = ", ".join(f"`{k}={v!r}`" for k, v in metrics["overrides"].items()) or "none"
    paper = f"\n| paper | {_paper(metrics['paper'])} |" if metrics.get("paper") else ""
    full = metrics.get("full_split_test")
    full_split = (f"\n| test NLL, every test image | {_nll(full)}; -ELBO {full['bound_nats']:.2f} nats; evaluation "
                  f"{full['seconds']:,.0f} s |" if full else "")
    commit = f"`{metrics['commit']}`" if metrics["commit"] else NOT_RECORDED
    checked = (f"{checked_by} re-measures it" if checked_by
               else "the served `log_likelihood` signature gives it with `seed` [0, 0]")
    train_command = metrics["train_command"] or "# training command not recorded: config.json holds the configuration"
    commands = "\n    ".join([train_command, metrics["evaluate_command"], *([full["command"]] if full else []),
                                metrics["package_command"]])
    base_path = path if os.path.isabs(path) else f"$PWD/{path}"
    return f"""# {name}

`zoo.{metrics['class']}`, preset `{metrics['preset']}` (overrides: {overrides}), {metrics['parameters']:,} trainable
parameters.

| | |
| --- | --- |
| data | {data or _data(metrics)} |
| training | {_budget(metrics)}, learning rate {metrics['learning_rate']:g}, seed {metrics['seed']} |
| training wall time | {_wall_time(metrics, wall_time_note)} |
| test NLL | {_nll(test)}; -ELBO {test['bound_nats']:.2f} nats; evaluation {test['seconds']:,.0f} s |{full_split}{paper}
| commit | {commit} (training code), packaged at `{metrics['packaged_at_commit']}` |

The NLL is the importance-sampled estimate of -log p(x{' | memory' if metrics['check'].get('episodes') else ''}) (Burda et al. 2016) with evaluation seed 0;
on the first {_check_of(metrics['check'])} the same estimator gives {metrics['check']['nll_nats']:.2f} ±
{metrics['check']['nll_stderr']:.2f} nats (`metrics.json`: `check`; {checked}).
{_few_shot_section(metrics, few_shot_command, checked_by)}{_learning_curve_section(metrics)}
## Commands

    {commands}

## Use

```python
import zoo
model = zoo.LatentVariableModel.from_preset("{path}")  # the trained Keras model, fine-tunable
```

Serving: `tensorflow_model_server --rest_api_port=8501 --model_name={name} --model_base_path={base_path}`
(see BUILD.md). Signatures of version {metrics['version']}:

{signatures}

## Intended use and limitations

{limitations or NOT_STATED}
"""

