"""SavedModel export for TF Serving, with named tensor-only signatures.

    python -m zoo.export --model_dir=runs/vae --export_dir=savedmodels/vae [--version=N] [--weights=best]

or from Python:

    path = zoo.export.export(model, "savedmodels/vae")       # savedmodels/vae/1

The model says what it serves: `model.serving_endpoints()` returns `{name: (fn,
input_signature)}` (defaults in `LatentVariableModel` for the VAE family: `serving_default`
= reconstruction, `encode`, `decode`, `sample`, `log_likelihood`; models with a memory
input override it). Each becomes a SavedModel signature of the same name taking and
returning named tensors only: no `tfp` object crosses a signature. When a model's
endpoints have no `serving_default`, the first endpoint is served under that name too
(TF Serving's `predict` without a signature name needs it).

The export is versioned the way TF Serving expects: `EXPORT_DIR/<version>/`, by default
one more than the highest version already there, so re-exporting into a served
directory rolls out a new version.
"""

import os

from absl import flags

from zoo.cli import UsageError, quiet_libraries, run_app
from zoo.train import load_trained_model


def next_version(export_dir):
    """1 + the highest integer version directory in `export_dir` (1 when there is none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def export(model, export_dir, version=None):
    """Writes `model` as a SavedModel to `export_dir/<version>/` and returns that path.

    Args:
        model: a built `zoo` model (anything with `serving_endpoints()`).
        export_dir: str, the model base path TF Serving watches.
        version: int >= 1 or None (next free version). An existing version is never overwritten.
    """
    import keras

    from zoo import validation

    if not hasattr(model, "serving_endpoints"):
        raise ValueError(f"{type(model).__name__} has no serving_endpoints(); expected a zoo model")
    if version is None:
        version = next_version(export_dir)
    version = validation.positive_int("version", version)
    path = os.path.join(export_dir, str(version))
    if os.path.exists(path):
        raise ValueError(f"{path} already exists; export a new version (version=None picks the next one)")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, input_signature) in model.serving_endpoints().items():
        # Traced as a lambda: TF's Python client then raises the runtime's message as is, with a failed
        # input check's reason on the first line (for a named function it prepends "Graph execution error").
        archive.add_endpoint(name, _as_lambda(fn), input_signature=input_signature)
    archive.write_out(path, verbose=False)
    return path


def _as_lambda(fn):
    return lambda *args: fn(*args)


def define_flags():
    flags.DEFINE_string("model_dir", None, "A zoo.train run directory.", required=True)
    flags.DEFINE_string("export_dir", None, "Model base path for TF Serving; the export goes in <export_dir>/<version>.",
                        required=True)
    flags.DEFINE_integer("version", None, "Version number (default: next free one).")
    flags.DEFINE_enum("weights", "best", ["best", "last"], "Best-validation or last-epoch weights.")


def main(argv):
    f = flags.FLAGS
    if not os.path.isdir(f.model_dir):
        raise UsageError(f"--model_dir {f.model_dir!r} is not a directory; train into it with python -m zoo.train first")
    if f.version is not None and f.version < 1:
        raise UsageError(f"--version must be an int >= 1, got {f.version}")
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
