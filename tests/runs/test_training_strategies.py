"""zoo.runs.training beyond one device: MirroredStrategy on two logical CPUs, two MultiWorkerMirroredStrategy workers
through `zoo.train`, mixed precision in every model family, and the flags' refusals.

Sampling noise would make a replicated run differ from a one-device run for a reason distribution must not
remove: each replica draws its own noise (`zoo.distributions.seed_pair` folds in the replica id), so the
examples of a global batch see other noise than on one device. The weight comparisons therefore collapse the
posterior first (log-variance head: kernel 0, bias -30, so z = mean + 3e-7 eps): training becomes
deterministic, and what is left to compare is exactly what distribution must preserve (the split of each
global batch, the all-reduced gradient and its scale, the clipping of ClippedAdam, the optimizer step).
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import needs_mnist
from tests.goldens import MODEL_GOLDENS
from tests.testing import ROOT, checkpointed_run
from zoo.runs import (
    config as run_config, errors as run_errors, files as run_files, state as run_state, training as run_training,
)

COLLAPSED_LOG_VARIANCE = -30.0


def collapse_posterior(model):
    """Makes q(z|x) a point mass for practical purposes: every log-variance -30, whatever the input."""
    head = model.posterior.log_variance_head
    head.kernel.assign(np.zeros(head.kernel.shape, np.float32))
    head.bias.assign(np.full(head.bias.shape, COLLAPSED_LOG_VARIANCE, np.float32))


def _python(code, env=None, timeout=300):
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                             cwd=ROOT, env={**os.environ, **(env or {})})
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


def mirrored_versus_one_device():
    """Run in a fresh process: splits the CPU into two logical devices, prints the comparisons as JSON."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    import zoo
    from tests.goldens import binary_images
    from zoo import distributions, optimizers

    x = binary_images((64, 8, 8, 1))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def run(strategy, optimizer):
        with strategy.scope():
            model = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, batch_norm=False, seed=1)
            collapse_posterior(model)
            model.compile(optimizer=optimizer(), steps_per_execution=1)
        batches = tf.data.Dataset.from_tensor_slices(x).batch(16, drop_remainder=True)  # global batch 16
        history = model.fit(batches, epochs=1, verbose=0).history
        return [w.numpy() for w in model.trainable_weights], history

    start = zoo.VAE(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, batch_norm=False, seed=1)
    collapse_posterior(start)
    initial = [w.numpy() for w in start.trainable_weights]
    report = {"replicas": mirrored.num_replicas_in_sync}
    for name, optimizer in {
        # SGD moves each weight in proportion to the gradient: a gradient counted twice (the replicas'
        # sum of unscaled losses) would show.
        "sgd": lambda: keras.optimizers.SGD(0.05),
        # The recipe's guards, both active here (the gradient norm is well above 1): they must see the
        # gradient of the global batch, not each replica's.
        "clipped_adam": lambda: optimizers.ClippedAdam(1e-2, max_global_norm=1.0, max_value=0.05),
    }.items():
        one, one_history = run(tf.distribute.get_strategy(), optimizer)
        two, two_history = run(mirrored, optimizer)
        report[name] = {
            "max_abs_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two)),
            "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(initial, one)),
            "loss": [one_history["loss"][-1], two_history["loss"][-1]],
        }
    generator = keras.random.SeedGenerator(7)
    seeds = mirrored.run(tf.function(lambda: distributions.seed_pair(generator)))
    report["replica_seeds"] = [s.numpy().tolist() for s in mirrored.experimental_local_results(seeds)]
    print(json.dumps(report))


def test_mirrored_strategy_on_two_devices_matches_one_device():
    report = json.loads(_python(
        "from tests.runs.test_training_strategies import mirrored_versus_one_device; mirrored_versus_one_device()"
    ).strip().splitlines()[-1])
    assert report["replicas"] == 2
    for name in ("sgd", "clipped_adam"):
        # Float32 sums over 8 + 8 examples instead of 16 differ by ~1e-7 relative; 4 steps move weights by > 1e-2.
        assert report[name]["moved"] > 1e-2, (name, report)
        assert report[name]["max_abs_difference"] < 2e-5, (name, report)
        np.testing.assert_allclose(*report[name]["loss"], rtol=1e-5, err_msg=name)
    first, second = report["replica_seeds"]
    assert first != second, report  # each replica its own noise


# A tiny VAE without batch norm (whose statistics are per replica) on real data; global batch 20.
TINY = [
    "--preset=vae_mnist_500_500_100", "--dataset=binarized_mnist", "--override=hidden_units=(32,)",
    "--override=latent_dim=4", "--override=batch_norm=False", "--train_split=train[:400]",
    "--validation_split=validation[:40]", "--batch_size=20", "--steps_per_epoch=4", "--verbose=0",
]


def _tiny_config():
    """`TINY`'s configuration, 2 epochs, for runs in this process."""
    return run_config.resolve_config(
        "vae_mnist_500_500_100", "binarized_mnist", 2, batch_size=20,
        overrides={"hidden_units": (32,), "latent_dim": 4, "batch_norm": False}, train_split="train[:400]",
        validation_split="validation[:40]", steps_per_epoch=4,
    )


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_train(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "zoo.train", *TINY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **(env or {})})


def _finish(process):
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-3000:]
    return out


def _collapse_checkpoint(model_dir):
    """Rewrites the run's latest checkpoint with a collapsed posterior (optimizer state kept)."""
    model, state = checkpointed_run(model_dir)
    assert state.restore()
    collapse_posterior(model)
    state.save(int(state.epoch.numpy()))


def _weights(model_dir):
    config = run_files.read_config(model_dir)
    model, _ = run_state.load_trained_model(model_dir, weights="last")
    return config, [w.numpy() for w in model.trainable_weights]


@needs_mnist
@pytest.mark.large  # three training processes; which process writes is tested in-process (tests/runs/test_training.py)
def test_two_workers_match_one_device_only_the_chief_writes_and_the_run_resumes(tmp_path):
    # Epoch 1 on one device, then the posterior collapsed in its checkpoint (see the module docstring).
    start = str(tmp_path / "start")
    config = _tiny_config()
    run_training.train({**config, "epochs": 1}, start, verbose=0)
    _collapse_checkpoint(start)
    one, two = str(tmp_path / "one_device"), str(tmp_path / "two_workers")
    shutil.copytree(start, one)
    shutil.copytree(start, two)
    # Epoch 2 resumed on one device, and on two workers, each with one replica.
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    workers = [
        _start_train("--epochs=2", f"--model_dir={two}", "--strategy=multi_worker",
                     env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                          "TMPDIR": str(scratch)})
        for i in range(2)
    ]
    run_training.train(config, one, verbose=0)
    outputs = [_finish(p) for p in workers]
    assert f"Resuming {two} after epoch 1 of 2" in outputs[0] and f"Resuming {two} after epoch 1 of 2" in outputs[1]
    one_config, one_weights = _weights(one)
    two_config, two_weights = _weights(two)
    assert two_config["strategy"] == "multi_worker" and one_config["strategy"] == "default"
    assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == sorted(os.listdir(os.path.join(one, "checkpoints")))
    differences = [float(np.max(np.abs(a - b))) for a, b in zip(one_weights, two_weights)]
    _, start_weights = _weights(start)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(start_weights, one_weights))
    # 4 Adam steps of the recipe (learning rate 1e-3) move weights by ~4e-3; the workers' sums of 10 + 10
    # examples differ from one device's sum of 20 by float32 rounding only.
    assert moved > 1e-3 and max(differences) < 1e-5, (moved, differences)
    # Only the chief (worker 0) wrote: every event file carries its pid, the worker's scratch is gone.
    # TensorBoard's event files are named events.out.tfevents.<time>.<host>.<pid>.<uid>.v2.
    event_pids = {name.split(".")[-3] for _, _, files in os.walk(os.path.join(two, "logs")) for name in files
                  if name.startswith("events.out.tfevents")}
    # (Epoch 1's files came from this process, with the copied start directory.)
    assert event_pids == {str(os.getpid()), str(workers[0].pid)}, (event_pids, workers[0].pid, workers[1].pid)
    assert not os.listdir(scratch), os.listdir(scratch)
    assert not os.path.exists(os.path.join(two, "lock"))


# Mixed precision: a few steps of every model golden, in each policy against float32 from the same
# initial weights and data.
MIXED_STEPS = 4


def _few_mixed_precision_steps(golden, policy):
    """The last training loss, the step the weights took and the dtypes of a golden model after `MIXED_STEPS` eager
    steps under `policy`."""
    import keras

    x = np.concatenate([golden["input_data"]()] * 2)  # 8 examples, batch 4: 2 steps per epoch
    with run_config._dtype_policy(None if policy == "float32" else policy):  # restored after the layers are made
        model = golden["cls"](**golden["init_kwargs"])
    optimizer = keras.optimizers.Adam(1e-3)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # Eager steps: tracing every model three times would take minutes on a small machine.
    model.compile(optimizer=optimizer, run_eagerly=True)
    before = []  # the weights once fit has built the model, before its first step
    snapshot = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: before.extend(w.numpy().copy() for w in model.trainable_weights))
    history = model.fit(x, batch_size=4, epochs=MIXED_STEPS // 2, shuffle=False, verbose=0,
                        callbacks=[snapshot]).history
    outputs = model(x[:4], training=False)
    return {
        "loss": history["loss"][-1],
        "step": np.concatenate([(w.numpy() - b).ravel() for w, b in zip(model.trainable_weights, before)]),
        "compute_dtype": model.compute_dtype,
        "output_dtypes": {key: value.dtype.name for key, value in outputs.items()},
        "variable_dtypes": sorted({v.dtype for v in model.trainable_weights}),
    }


# One golden per family: MLP VAE and IWAE, MemVAE, VMA, soft attention, hierarchical, Ladder, NVAE, convolutional.
# By default two whose outputs are made of many kinds of layers and distributions (VMA: memory, discrete address,
# VIMCO; ConvVAE: convolutions and batch norm), 5-20 s each in the loaded default suite; the rest in the large suite
# (LadderVAE's took half a minute there; NVAE's eager steps are slower still).
FAMILIES = ["VAE", "IWAE", "MemVAE", "VMA", "SoftAttentionVAE", "HierarchicalVAE", "LadderVAE", "NVAE", "ConvVAE"]
DEFAULT_FAMILIES = ["VMA", "ConvVAE"]


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=() if name in DEFAULT_FAMILIES else pytest.mark.large) for name in FAMILIES
])
def test_mixed_precision_stays_close_to_float32(name):
    golden = MODEL_GOLDENS[name]
    reference = _few_mixed_precision_steps(golden, "float32")
    for policy in ("mixed_float16", "mixed_bfloat16"):
        run = _few_mixed_precision_steps(golden, policy)
        assert np.isfinite(run["loss"]), (policy, run)
        # bfloat16 keeps 8 bits of mantissa: activations round by ~0.4%, the loss moves by < 1%. float16
        # is finer, but the loss scale starts at 2^15 and the steps whose scaled gradients overflow are
        # skipped while it comes down, so after 4 steps its loss is that of fewer updates: < 2%.
        tolerance = 0.02 if policy == "mixed_float16" else 0.01
        np.testing.assert_allclose(run["loss"], reference["loss"], rtol=tolerance, err_msg=policy)
        # The loss alone would pass a policy that never updates: the weights moved the way float32's did (float16's
        # skipped steps leave fewer updates, measured at cosines of 0.62-0.91; bfloat16's 0.97-1.00).
        cosine = run["step"] @ reference["step"] / np.linalg.norm(run["step"]) / np.linalg.norm(reference["step"])
        assert cosine > (0.5 if policy == "mixed_float16" else 0.9), (policy, cosine)
        assert run["compute_dtype"] == policy.removeprefix("mixed_"), (policy, run)
        assert run["variable_dtypes"] == ["float32"], (policy, run)
        # Everything the bound is made of, and the reconstruction the endpoints serve, in float32.
        assert set(run["output_dtypes"].values()) == {"float32"}, (policy, run["output_dtypes"])


@pytest.mark.parametrize("args, env, reason", [
    (["--strategy=several"], {}, "flag --strategy=several: value should be one of <default|mirrored|multi_worker|tpu>"),
    (["--mixed_precision=float64"], {}, "flag --mixed_precision=float64: value should be one of "
                                        "<mixed_float16|mixed_bfloat16>"),
    (["--strategy=multi_worker"], {"TF_CONFIG": ""}, "--strategy=multi_worker reads the cluster from $TF_CONFIG, "
                                                     "which is not set (see BUILD.md)"),
    (["--strategy=multi_worker"], {"TF_CONFIG": '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", '
                                                '"index": 3}}'},
     "$TF_CONFIG: task worker 3 is not in the cluster {'worker': ['localhost:1']}"),
    (["--strategy=mirrored", "--steps_per_execution=5"], {}, "--steps_per_execution > 1 fails under "
     "--strategy=mirrored in Keras 3.15 (keras-team/keras#19246); leave it unset"),
])
def test_bad_distribution_flags_are_refused_in_one_line(args, env, reason, tmp_path):
    process = subprocess.run([sys.executable, "-m", "zoo.train", *TINY, "--epochs=1", f"--model_dir={tmp_path}/run",
                              *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, **env})
    assert process.returncode == 2 and process.stderr.strip() == f"train.py: {reason}", process.stderr
    assert not os.path.exists(tmp_path / "run")


def test_no_tpu_is_a_one_line_usage_error():
    with pytest.raises(run_errors.UsageError, match=r"^--strategy=tpu found no TPU \("):
        run_training.make_strategy("tpu")


@needs_mnist
def test_episodes_are_not_split_between_replicas():
    with pytest.raises(run_errors.UsageError, match="cannot be split between replicas"):
        run_config.resolve_config("vma_mnist_recall", "binarized_mnist", 1, strategy="mirrored",
                                 train_split="train[:300]", validation_split="")
