"""`python -m zoo.export`: a servable, versioned SavedModel of a run's best, last or a kept epoch's weights."""

import os
import subprocess
import sys

import numpy as np

from tests.conftest import needs_mnist
from tests.testing import finish_app, run_app, saved_state, start_app
from zoo.runs import state as run_state


@needs_mnist
def test_export_cli_writes_a_servable_versioned_savedmodel(tiny_runs, tmp_path):
    export_dir = str(tmp_path / "served")
    code, out, err = finish_app(start_app("zoo.export", f"--model_dir={tiny_runs['reference']}", f"--export_dir={export_dir}",
                                          "--weights=epoch-2"))
    assert code == 0, err
    assert os.listdir(export_dir) == ["1"] and "(epoch-2 weights)" in out
    for name in ("serving_default", "encode", "decode", "sample", "log_likelihood"):
        assert f"  {name}(" in out
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", os.path.join(export_dir, "1"), "--all"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for expected in (
        "signature_def['serving_default']", "signature_def['encode']", "signature_def['decode']",
        "signature_def['sample']", "signature_def['log_likelihood']",
        "inputs['x'] tensor_info:", "shape: (-1, 28, 28, 1)", "inputs['num_samples'] tensor_info:",
        "inputs['seed'] tensor_info:", "outputs['reconstruction'] tensor_info:", "outputs['log_likelihood'] tensor_info:",
        "inputs['z'] tensor_info:", "shape: (-1, 4)",
    ):
        assert expected in shown.stdout, expected


@needs_mnist
def test_last_weights_load_and_malformed_weights_are_refused(tiny_runs, tmp_path):
    # --weights=last crashed with "'VAE' object has no attribute 'optimizer'".
    model, _ = run_state.load_trained_model(tiny_runs["reference"], weights="last")
    saved = saved_state(tiny_runs["reference"])
    kernel = model.trainable_variables[0]
    matches = [key for key, value in saved.items() if value.shape == tuple(kernel.shape)
               and np.array_equal(value, kernel.numpy())]
    assert matches, "the last checkpoint's weights were not loaded"
    code, _, err = run_app("zoo.export", f"--model_dir={tiny_runs['reference']}", f"--export_dir={tmp_path / 'served'}",
                           "--weights=latest")
    assert code == 2 and err.strip() == (
        'export.py: --weights must be "best", "last" or "epoch-N" (a kept checkpoint), got \'latest\''), err
    # An export_dir that is a file, or under one, is refused before TensorFlow loads (it failed after, with a traceback).
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for export_dir, reason in ((a_file, "is a file, not a directory"), (a_file / "served", f"{a_file} is a file")):
        code, _, err = run_app("zoo.export", f"--model_dir={tiny_runs['reference']}", f"--export_dir={export_dir}")
        assert code == 2 and len(err.strip().splitlines()) == 1 and reason in err, err
