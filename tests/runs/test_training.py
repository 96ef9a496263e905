"""zoo.runs.training: every preset on every dataset it fits trains and evaluates (one per model class by
default); which process of a cluster writes the run; runs made by earlier code resume, or are refused when their
recipe differs; a full disk. Exports are tested per class on the goldens (tests/runs/test_export.py) and per
packaged model (tests/test_pretrained.py)."""

import gzip
import json
import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from tests.conftest import FREY_FACES_FILE, MNIST_DIR, OMNIGLOT_DIR, has_binarized_mnist, needs_mnist
from tests.testing import RUN_BEFORE_RECIPES, checkpointed_epoch, fits, md5, preset_dataset_pairs, saved_state
from zoo.runs import (
    config as run_config, errors as run_errors, evaluation as run_evaluation, files as run_files,
    training as run_training,
)


# One run per model class by default (the CLI's code is the same for every preset of a class), chosen so that
# every dataset loader and both kinds of episode run once: the rest of the grid is `large` (among it VMA's learned
# memory: the VMA golden and the packaged vma_mnist_mlp run its paths). Not here by default:
# LadderVAE (whole CLI runs: the NaN guard in tests/runs/test_callbacks.py, gradient skipping in
# tests/test_train.py), NVAE (goldens, export and served models in test_goldens, runs/test_export, test_nvae and
# test_pretrained) and the 26x26 VMA (tests/models/test_vma_omniglot_paper.py's CLI run).
_DEFAULT_PAIRS = {
    ("vae_mnist_256_128_32", "mnist"),  # VAE; LeCun's archives
    ("iwae_mnist_2layer", "binarized_mnist"),  # HierarchicalVAE; TFDS
    ("memvae_frey_faces_200_10", "frey_faces"),  # MemVAE; a .mat file, no validation split
    ("vae_omniglot_conv", "omniglot"),  # ConvVAE; Lake's archives
    ("soft_attention_mnist_recall", "binarized_mnist"),  # SoftAttentionVAE; recall episodes
    ("vma_omniglot_conv", "omniglot"),  # VMA with a memory per batch; character episodes
}


def test_the_default_grid_runs_every_class_and_loader_once():
    from zoo.presets import PRESETS

    assert all(fits(p, d) for p, d in _DEFAULT_PAIRS)
    classes = {PRESETS[p]["class"] for p, _ in _DEFAULT_PAIRS}
    assert classes | {"NVAE", "LadderVAE"} == {entry["class"] for entry in PRESETS.values()}
    assert {d for _, d in _DEFAULT_PAIRS} == set(run_config.DATASETS)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Data paths for the grid: the shared copies, or small files written here."""
    import scipy.io

    root = tmp_path_factory.mktemp("data")
    frey = FREY_FACES_FILE
    if not frey.exists():
        frey = root / "frey_rawface.mat"
        scipy.io.savemat(frey, {"ff": np.random.default_rng(0).integers(0, 256, (560, 300), dtype=np.uint8)})
    mnist = MNIST_DIR
    if not (mnist / "t10k-images-idx3-ubyte.gz").exists():
        mnist = root / "mnist"
        mnist.mkdir()
        with gzip.open(mnist / "t10k-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes(16) + np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(mnist / "t10k-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes(8) + (np.arange(64) % 10).astype(np.uint8).tobytes())
    return {"frey_faces": str(frey), "mnist": str(mnist),
            "omniglot": str(OMNIGLOT_DIR) if (OMNIGLOT_DIR / "images_background_small1.zip").exists() else None}


# A few steps on small data: the pair trains, evaluates and exports; the numbers are checked, not learned.
_DATA_FLAGS = {
    "binarized_mnist": {"train_split": "train[:64]", "validation_split": "validation[:16]"},
    "mnist": {"train_split": "test", "validation_split": ""},  # LeCun's test archive is what is offline
    "frey_faces": {},
    "omniglot": {},
}


_EPISODE_FLAGS = {
    "omniglot": {"episode_classes": 2, "episode_targets": 2, "episode_memory": 1},
    "binarized_mnist": {"episode_memory": 8, "episode_targets": 4},
    "mnist": {"episode_memory": 8, "episode_targets": 4},
}


@pytest.mark.parametrize("preset, dataset", [
    pytest.param(p, d, marks=() if (p, d) in _DEFAULT_PAIRS else pytest.mark.large)
    for p, d in preset_dataset_pairs() if fits(p, d)
])
def test_every_accepted_preset_dataset_pair_trains_and_evaluates(preset, dataset, small_data, tmp_path):
    if dataset == "binarized_mnist" and not has_binarized_mnist():
        pytest.skip("needs binarized_mnist in TFDS_DATA_DIR")
    if dataset == "omniglot" and small_data["omniglot"] is None:
        pytest.skip("needs Omniglot archives in ../shared/datasets/omniglot")
    per_batch = run_config.memory_per_batch(preset)
    kwargs = {**_DATA_FLAGS[dataset], **(_EPISODE_FLAGS[dataset] if per_batch else {"batch_size": 8})}
    model_dir = str(tmp_path / "run")
    config = run_config.resolve_config(preset, dataset, epochs=1, steps_per_epoch=2,
                                      data_path=small_data.get(dataset), **kwargs)
    assert (config["episodes"] is not None) == per_batch
    history = run_training.train(config, model_dir, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    result = run_evaluation.evaluate(model_dir, num_samples=2, max_examples=4, progress=False)
    assert result["examples"] == 4 and result["num_samples"] == 2
    assert np.isfinite(result["nll_nats"]) and result["nll_nats"] <= result["bound_nats"] + 1e-3


@pytest.mark.parametrize("cluster, task_type, task_id, chief", [
    (None, None, None, True),  # one process: it writes
    ({"worker": ["a:1", "b:2"]}, "worker", 0, True),  # no chief task: worker 0 is the chief
    ({"worker": ["a:1", "b:2"]}, "worker", 1, False),
    ({"chief": ["c:0"], "worker": ["a:1"]}, "chief", 0, True),
    ({"chief": ["c:0"], "worker": ["a:1"]}, "worker", 0, False),
])
def test_only_the_chief_of_a_cluster_writes_the_run(cluster, task_type, task_id, chief):
    import tensorflow as tf

    resolver = None if cluster is None else tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
    strategy = type("Strategy", (), {"cluster_resolver": resolver})()
    assert run_training.is_chief(strategy) is chief


def _before_recipes_config(epochs=2):
    """The flags `RUN_BEFORE_RECIPES` was made with (one epoch done)."""
    return run_config.resolve_config(
        "vae_mnist_500_500_100", "binarized_mnist", epochs, batch_size=10, steps_per_epoch=2, keep_checkpoints=1,
        overrides={"hidden_units": (2,), "latent_dim": 2})


@needs_mnist
def test_a_run_made_before_recipes_were_recorded_resumes(tmp_path, capsys):
    model_dir = str(shutil.copytree(RUN_BEFORE_RECIPES, tmp_path / "run"))
    before = saved_state(model_dir)
    run_training.train(_before_recipes_config(), model_dir, verbose=0)
    assert f"Resuming {model_dir} after epoch 1 of 2" in capsys.readouterr().out
    after = saved_state(model_dir)
    assert checkpointed_epoch(model_dir) == 2
    iterations = "optimizer/0/.ATTRIBUTES/VARIABLE_VALUE"  # Keras's first optimizer variable: its update count
    assert (before[iterations], after[iterations]) == (2, 4)  # the old run's two updates, then two more
    assert run_files.read_config(model_dir)["recipe"] == {"optimizer": "adam", "epsilon": 1e-4, "max_global_norm": 5.0,
                                                          "max_value": 1.0, "decay_start_epoch": 1000,
                                                          "decay_per_epoch": 0.998}


@needs_mnist
def test_an_epoch_takes_its_steps_when_they_are_not_a_multiple_of_the_default_call(tmp_path):
    # 26 steps an epoch run as 2 calls of 13: at 25 a call Keras would run 50 steps an epoch (whole calls), and the
    # stream of 2 x 26 batches would run out in the second.
    config = run_config.resolve_config(
        "vae_mnist_500_500_100", "binarized_mnist", 2, batch_size=10, steps_per_epoch=26, keep_checkpoints=2,
        overrides={"hidden_units": (2,), "latent_dim": 2}, train_split="train[:100]", validation_split="validation[:20]")
    model_dir = str(tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_training.train(config, model_dir, verbose=0)
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    iterations = "optimizer/0/.ATTRIBUTES/VARIABLE_VALUE"  # Keras's first optimizer variable: its update count
    assert [saved_state(os.path.join(model_dir, run_files.CHECKPOINT_DIR, f"epoch-{epoch}"))[iterations]
            for epoch in (1, 2)] == [26, 52]


def test_a_run_of_another_recipe_is_refused_not_resumed(tmp_path):
    # The checkpoint holds the state of the recipe's optimizer: another optimizer or schedule cannot continue it.
    model_dir = str(shutil.copytree(RUN_BEFORE_RECIPES, tmp_path / "run"))
    path = os.path.join(model_dir, run_files.CONFIG_FILE)
    with open(path) as f:
        config = json.load(f)
    config["decay_per_epoch"] = 0.5
    with open(path, "w") as f:
        json.dump(config, f)
    with pytest.raises(run_errors.UsageError) as refused:
        run_training.train(_before_recipes_config(), model_dir, verbose=0)
    assert str(refused.value) == (f"--model_dir {model_dir!r} holds a run with different recipe; resume it with the "
                                  "same flags or pick a new directory")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root, as in this project's CI), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def _open_files_under(directory):
    """The files under `directory` this process holds open."""
    paths = (os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd"))
    return sorted(path for path in paths if path.startswith(str(directory) + os.sep))


@needs_mnist
def test_a_full_disk_is_a_usage_error_naming_the_file_and_the_run_resumes(small_disk, capsys):
    model_dir = str(shutil.copytree(RUN_BEFORE_RECIPES, small_disk / "run"))  # one epoch done
    saved = {path: md5(os.path.join(model_dir, path)) for path in (run_files.BEST_WEIGHTS, "checkpoints/epoch-1.index")}
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler = small_disk / "filler"
    filler.write_bytes(bytes(free - 24 * 1024))  # room for config.json, not for the next epoch's weights
    with pytest.raises(run_errors.UsageError) as full:
        run_training.train(_before_recipes_config(), model_dir, verbose=0)
    message = str(full.value)
    assert "\n" not in message and message.startswith(
        f"no space left on device for {model_dir}/{run_files.BEST_WEIGHTS} (about "), message
    assert message.endswith("free some space and run the same command again: it resumes after the last saved epoch")
    assert {path: md5(os.path.join(model_dir, path)) for path in saved} == saved  # the earlier results are intact
    assert not os.path.exists(os.path.join(model_dir, run_files.LOCK_FILE))
    assert _open_files_under(model_dir) == []  # the event files too, while the failure's traceback lives
    filler.unlink()
    capsys.readouterr()
    run_training.train(_before_recipes_config(), model_dir, verbose=0)
    assert f"Resuming {model_dir} after epoch 1 of 2" in capsys.readouterr().out
    assert checkpointed_epoch(model_dir) == 2


@needs_mnist
def test_a_ladder_vae_trains_with_gradient_skipping(tmp_path):
    # The Ladder VAE's run (the hierarchy the grid leaves to the large suite), with the recipe's guard that skips
    # updates whose gradient norm exceeds the threshold (here nearly all: never more than 10 in a row).
    levels = ({"hidden_units": (16,), "latent_dim": 4}, {"hidden_units": (8,), "latent_dim": 2})
    config = run_config.resolve_config("ladder_vae_mnist", "binarized_mnist", 1, batch_size=20, skip_gradient_norm=1e-6,
                                       overrides={"levels": levels}, train_split="train[:200]",
                                       validation_split="validation[:50]", steps_per_execution=1)
    model_dir = str(tmp_path / "ladder")
    history = run_training.train(config, model_dir, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    assert run_files.read_config(model_dir)["skip_gradient_norm"] == 1e-6
