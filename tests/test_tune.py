"""`python -m zoo.tune`: bad flags and directories refused in one line with exit status 2, before any work."""

import importlib.util
import json
import os

import pytest

from tests.testing import TINY_SEARCH, run_app
from zoo.runs import search as run_search


@pytest.mark.parametrize("args, reason", [
    (["--preset=nope"], "unknown preset 'nope'"),
    (["--max_trials=0"], "--max_trials must be an int >= 1, got 0"),
    (["--max_trials=1", "--tuner=hyperband"], "--max_trials does not apply to --tuner=hyperband"),
    (["--tuner=grid"], "--tuner=grid: value should be one of <random|bayesian|hyperband>"),
    (["--dataset=frey_faces"], "takes 28x28x1 inputs but dataset 'frey_faces' gives 28x20x1"),
    (["--objective_samples=0"], "--objective_samples must be an int >= 1"),
    (["--space=latent_dim"], "--space expects name=value"),
    (["--seed=-1"], "--seed must be an int in [0, 2**31), got -1"),
])
def test_bad_flags_exit_2_in_one_line(args, reason, tmp_path):
    base = [a for a in TINY_SEARCH if not any(a.startswith(b.split("=")[0] + "=") for b in args)]
    code, _, err = run_app("zoo.tune", *base, *args, f"--directory={tmp_path / 'search'}", timeout=60)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and reason in err, err
    assert not os.path.exists(tmp_path / "search")


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is not None, reason="scikit-learn is installed")
def test_bayesian_tuner_without_scikit_learn_is_refused_in_one_line(tmp_path):
    code, _, err = run_app("zoo.tune", *TINY_SEARCH, "--tuner=bayesian", f"--directory={tmp_path / 'search'}", timeout=60)
    assert code == 2 and err.strip() == 'tune.py: --tuner=bayesian needs scikit-learn: pip install "zoo[bayesian]" ' \
        "(or scikit-learn)", err


def test_missing_max_trials_and_bad_directories_exit_2(tmp_path):
    without = [a for a in TINY_SEARCH if not a.startswith("--max_trials=")]
    code, _, err = run_app("zoo.tune", *without, f"--directory={tmp_path / 'search'}", timeout=60)
    assert code == 2 and err.strip() == "tune.py: --max_trials is required for --tuner=random", err
    (tmp_path / "file").write_text("")
    code, _, err = run_app("zoo.tune", *TINY_SEARCH, f"--directory={tmp_path / 'file'}", timeout=60)
    assert code == 2 and "is a file, not a directory" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_app("zoo.tune", *TINY_SEARCH, f"--directory={tmp_path / 'file' / 'search'}", timeout=60)
    assert code == 2 and err.strip() == f"tune.py: --directory '{tmp_path / 'file' / 'search'}' cannot be made: " \
                                        f"{tmp_path / 'file'} is a file", err
    other = tmp_path / "other"
    other.mkdir()
    (other / run_search.SEARCH_FILE).write_text(json.dumps({"preset": "memvae_mnist_500_500_100"}))
    code, _, err = run_app("zoo.tune", *TINY_SEARCH, f"--directory={other}", timeout=60)
    assert code == 2 and "holds a search with different preset, dataset" in err, err
    (other / run_search.SEARCH_FILE).unlink()
    (other / "notes.txt").write_text("")
    code, _, err = run_app("zoo.tune", *TINY_SEARCH, f"--directory={other}", timeout=60)
    assert code == 2 and "holds no tune.json: not a zoo.tune search" in err, err
