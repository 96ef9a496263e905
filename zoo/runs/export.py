"""SavedModel export for TF Serving, with named tensor-only signatures.

    path = zoo.runs.export.export(model, "savedmodels/vae")       # savedmodels/vae/1

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
import shutil
import tempfile


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
    # Written beside the versions and renamed into place: TF Serving, which watches export_dir, never sees a
    # half-written version (it loads numbered directories only).
    os.makedirs(export_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.", suffix=".staging", dir=export_dir)  # its own: exports may race
    try:
        archive.write_out(staging, verbose=False)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _as_lambda(fn):
    return lambda *args: fn(*args)
