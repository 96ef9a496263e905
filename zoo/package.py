"""A trained run packaged as a model of the zoo, from the command line.

    python -m zoo.package --model_dir=runs/vae --export_dir=savedmodels/vae [--num_samples=5000 --max_examples=M]

writes the run's best weights as the next SavedModel version `<export_dir>/<version>/` with
config.json, model.weights.h5, metrics.json, learning_curve.json and .png and MODEL_CARD.md
beside it (`zoo.runs.packaging`). The test NLL on the card is the run's evaluation.json when
it has this k on these examples, else the run is evaluated first (as `zoo.evaluate` does). The
new package replaces the old one only once it is complete.
"""

import os

from absl import flags

from zoo.cli import quiet_libraries, run_app
from zoo.runs import packaging
from zoo.runs.files import read_json


def define_flags():
    flags.DEFINE_string("model_dir", None, "A zoo.train run directory.", required=True)
    flags.DEFINE_string("export_dir", None, "The package: a new directory, or a package to replace; TF Serving's "
                        "model base path (the SavedModel goes in <export_dir>/<version>).", required=True)
    flags.DEFINE_integer("num_samples", 5000, "Importance samples per example of the card's test NLL.")
    flags.DEFINE_integer("max_examples", None, "Measure the test NLL on the first M test examples (default: all; "
                         "episodes: 1000 targets).")
    flags.DEFINE_string("data_description", None, "The card's data row (default: the dataset and splits of the run).")
    flags.DEFINE_string("limitations", None, "The card's intended use and limitations (default: not stated).")


def main(argv):
    f = flags.FLAGS
    packaging.check(f.model_dir, f.export_dir, f.num_samples, f.max_examples)
    quiet_libraries()
    path = packaging.package(f.model_dir, f.export_dir, f.num_samples, f.max_examples,
                             card={"data": f.data_description, "limitations": f.limitations})
    test = read_json(os.path.join(f.export_dir, packaging.METRICS_FILE))["test"]
    print(f"Packaged {f.model_dir} (best weights) as {path}: test NLL {test['nll_nats']:.2f} +- "
          f"{test['nll_stderr']:.2f} nats (k = {test['num_samples']}, {test['examples']} examples); "
          f"card: {os.path.join(f.export_dir, packaging.CARD_FILE)}")


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
