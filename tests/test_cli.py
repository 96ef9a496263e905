"""zoo.cli, what the apps share: `key=value` options, quiet libraries unless asked."""

import re
import shutil

import pytest

from tests.conftest import needs_mnist
from tests.testing import run_app
from zoo import cli as zoo_cli
from zoo.runs import errors as run_errors


def test_parse_overrides():
    assert zoo_cli.parse_overrides(["latent_dim=50", "hidden_units=(200, 200)", "activation=tanh"]) == {
        "latent_dim": 50, "hidden_units": (200, 200), "activation": "tanh"
    }
    with pytest.raises(run_errors.UsageError, match="key=value"):
        zoo_cli.parse_overrides(["latent_dim"])


@needs_mnist
def test_library_logs_are_shown_with_verbosity(tiny_runs, tmp_path):
    # Quiet by default is asserted on zoo.train's and zoo.evaluate's output (tests/test_train.py,
    # tests/test_evaluate.py): every app silences the libraries with zoo.cli.quiet_libraries, unless --verbosity.
    model_dir = tmp_path / "run"
    shutil.copytree(tiny_runs["reference"], model_dir)  # evaluate writes evaluation.json: the shared runs stay
    code, _, err = run_app("zoo.evaluate", f"--model_dir={model_dir}", "--split=test", "--num_samples=5",
                           "--max_examples=10", "--verbosity=0")
    assert code == 0, err
    # absl-formatted library lines (TFDS, TensorFlow): "I1130 01:02:03.456 ... file.py:12] ..."
    assert any(re.match(r"[IWE]\d{4} ", line) for line in err.splitlines()), err
