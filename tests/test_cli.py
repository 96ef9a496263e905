"""zoo.cli, what the apps share: `key=value` options, quiet libraries unless asked."""

import re

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
def test_library_logs_are_quiet_by_default_and_shown_with_verbosity(tiny_runs):
    args = [f"--model_dir={tiny_runs['reference']}", "--split=test", "--num_samples=5", "--max_examples=10"]
    logs = {}
    for extra in ([], ["--verbosity=0"]):
        code, _, err = run_app("zoo.evaluate", *args, *extra)
        assert code == 0, err
        logs[bool(extra)] = [line for line in err.splitlines() if not line.startswith("binarized_mnist test, k=5: ")]
    assert logs[False] == []
    # absl-formatted library lines (TFDS, TensorFlow): "I1130 01:02:03.456 ... file.py:12] ..."
    assert any(re.match(r"[IWE]\d{4} ", line) for line in logs[True]), logs[True]
