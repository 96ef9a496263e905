"""SavedModel export of a trained run for TF Serving, from the command line.

    python -m zoo.export --model_dir=runs/vae --export_dir=savedmodels/vae [--version=N] [--weights=best]

writes `<export_dir>/<version>/` (default: the next version; see `zoo.runs.export`) and lists
the signatures it serves.
"""

import os

from absl import flags

from zoo.cli import quiet_libraries, run_app
from zoo.runs.config import check_counts
from zoo.runs.errors import UsageError
from zoo.runs.export import export
from zoo.runs.files import check_directory_path
from zoo.runs.state import check_weights, load_trained_model


def define_flags():
    flags.DEFINE_string("model_dir", None, "A zoo.train run directory.", required=True)
    flags.DEFINE_string("export_dir", None, "Model base path for TF Serving; the export goes in <export_dir>/<version>.",
                        required=True)
    flags.DEFINE_integer("version", None, "Version number (default: next free one).")
    flags.DEFINE_string("weights", "best", "best (validation-selected), last (the newest epoch checkpoint) or epoch-N "
                        "(that epoch's checkpoint, if the run kept it).")


def main(argv):
    f = flags.FLAGS
    if not os.path.isdir(f.model_dir):
        raise UsageError(f"--model_dir {f.model_dir!r} is not a directory; train into it with python -m zoo.train first")
    check_counts(version=f.version)
    check_weights(f.weights)
    check_directory_path(f.export_dir, "--export_dir")
    quiet_libraries()
    import tensorflow as tf

    model, _ = load_trained_model(f.model_dir, f.weights)
    try:
        path = export(model, f.export_dir, f.version)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"Exported {f.model_dir} ({f.weights} weights) to {path}")
    for name, fn in sorted(tf.saved_model.load(path).signatures.items()):
        inputs = ", ".join(f"{k}: {v.dtype.name}{v.shape}" for k, v in sorted(fn.structured_input_signature[1].items()))
        outputs = ", ".join(sorted(fn.structured_outputs))
        print(f"  {name}({inputs}) -> {outputs}")


def run():
    run_app(main, define_flags)


if __name__ == "__main__":
    run()
