"""SavedModel export: every signature reloads with tf.saved_model.load and gives the Keras model's numbers."""

import os
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.goldens import MODEL_GOLDENS, costly_check_params
from tests.testing import assert_allclose
from zoo.runs import export as run_export

SEED = [3, 7]


def _golden_model(name):
    golden = MODEL_GOLDENS[name]
    model = golden["cls"](**golden["init_kwargs"])
    x = golden["input_data"]()
    # Non-trivial BatchNorm statistics, so a variable lost in export would show.
    for variable in model.non_trainable_variables:
        if "moving" in variable.path:
            variable.assign(np.random.default_rng(0).uniform(0.5, 1.5, variable.shape).astype(np.float32))
    return model, x


def _signature_inputs(input_signature, x, model):
    """Concrete inputs for an endpoint, from its TensorSpec names."""
    rng = np.random.default_rng(1)
    values = {
        "x": x,
        "memory": x[:3] if len(x) >= 3 else x,
        "z": rng.normal(size=(4, getattr(model, "latent_dim", 1))).astype(np.float32),
        "num_samples": np.int32(6),
        "num_classes": np.int32(2),
        "seed": np.array(SEED, np.int32),
        "memory_labels": np.array([0, 1, 0], np.int32),
        "address": np.array([0, 1, 2, 0], np.int32),  # one per row of z, into the 3-entry memory
    }
    missing = [spec.name for spec in input_signature if spec.name not in values]
    assert not missing, f"test has no inputs for {missing}"
    return {spec.name: tf.constant(values[spec.name], spec.dtype) for spec in input_signature}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each golden model exported once (module scope: exports cost seconds)."""
    cache = {}

    def get(name):
        if name not in cache:
            model, x = _golden_model(name)
            root = str(tmp_path_factory.mktemp(name))
            cache[name] = (model, x, run_export.export(model, root), root)
        return cache[name]

    return get


SERVED = costly_check_params()


@pytest.mark.parametrize("name", SERVED)
def test_every_signature_reloads_with_the_same_outputs(name, exported):
    model, x, path, _ = exported(name)
    assert path.endswith(os.sep + "1")
    loaded = tf.saved_model.load(path)
    endpoints = model.serving_endpoints()
    assert set(loaded.signatures) == set(endpoints) | {"serving_default"}
    for signature_name, (fn, input_signature) in endpoints.items():
        inputs = _signature_inputs(input_signature, x, model)
        expected = fn(*inputs.values())
        served = loaded.signatures[signature_name](**inputs)
        assert set(served) == set(expected), signature_name
        for key, value in served.items():
            assert value.dtype in (tf.float32, tf.int32, tf.int64), (signature_name, key, value.dtype)
        assert_allclose(served, expected, atol=1e-4, rtol=1e-4)
    # Every weight of the model (BatchNorm statistics included) is in the export, value for value.
    saved = {(tuple(v.shape), v.numpy().tobytes()) for v in loaded.variables}
    for weight in model.weights:
        assert (tuple(weight.shape), weight.numpy().tobytes()) in saved, weight.path


@pytest.mark.parametrize("name", ["VAE", "MemVAE", "GaussianVAE"])
def test_vae_family_signatures_match_the_public_methods(name, exported):
    model, x, path, _ = exported(name)
    loaded = tf.saved_model.load(path).signatures
    x = tf.constant(x)
    z = tf.random.stateless_normal((5, model.latent_dim), seed=SEED)
    seed = tf.constant(SEED)
    assert_allclose(loaded["serving_default"](x=x)["reconstruction"], model.reconstruct(x))
    assert_allclose(loaded["encode"](x=x), model.encode(x))
    assert_allclose(loaded["decode"](z=z), model.decode(z))
    assert_allclose(loaded["sample"](num_samples=tf.constant(4), seed=seed)["samples"], model.sample(4, seed=seed))
    served = loaded["log_likelihood"](x=x, num_samples=tf.constant(30), seed=seed)["log_likelihood"]
    assert_allclose(served, model.log_likelihood(x, num_samples=30, seed=seed), atol=1e-4)


def test_served_log_likelihood_chunks_like_the_keras_method(tmp_path):
    model, x = _golden_model("VAE")
    model.rows_per_chunk = 40  # batch 4 -> chunks of 10 samples: 30 samples = 3 chunks
    path = run_export.export(model, str(tmp_path))
    served = tf.saved_model.load(path).signatures["log_likelihood"]
    expected = model.log_likelihood(x, num_samples=30, seed=SEED)
    assert_allclose(served(x=tf.constant(x), num_samples=tf.constant(30), seed=tf.constant(SEED))["log_likelihood"],
                    expected, atol=1e-4, rtol=1e-5)


def _first_line_of_error(call):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        call()
    return str(error.value).splitlines()[0]


def test_served_inputs_are_validated_and_the_first_line_names_the_problem(exported):
    model, x, path, _ = exported("VAE")
    served = tf.saved_model.load(path).signatures
    x, seed = tf.constant(x), tf.constant(SEED)
    cases = [
        (lambda: served["serving_default"](x=x * 0.5), r"the Bernoulli likelihood expects x binary, with values in \{0, 1\}"),
        (lambda: served["encode"](x=tf.fill(tf.shape(x), np.nan)), "x contains NaN or Inf values"),
        # A server may pass a tensor that does not match the signature's static shape (TF Serving does).
        (lambda: served["reconstruct"](x=tf.zeros([2, 64])), r"x must have shape \[batch, 8, 8, 1\], got shape\] \[2 64\]"),
        (lambda: served["reconstruct"](x=tf.zeros([2, 8, 8, 1, 2])), r"x must have shape \[batch, 8, 8, 1\]"),
        (lambda: served["log_likelihood"](x=x, num_samples=tf.constant(0), seed=seed), r"num_samples must be an int >= 1, got\] \[0\]"),
        (lambda: served["log_likelihood"](x=x, num_samples=tf.constant(-3), seed=seed), "num_samples must be an int >= 1"),
        (lambda: served["sample"](num_samples=tf.constant(0), seed=seed), r"num_samples must be an int >= 1, got\] \[0\]"),
        (lambda: served["decode"](z=tf.fill([3, 2], np.inf)), "z contains NaN or Inf values"),
        (lambda: served["decode"](z=tf.zeros([3, 5])), r"z must have shape \[N, 2\]"),
    ]
    for call, reason in cases:
        first_line = _first_line_of_error(call)
        assert re.search(reason, first_line), (reason, first_line)


def test_served_memory_inputs_are_validated(exported):
    model, x, path, _ = exported("VMA")
    served = tf.saved_model.load(path).signatures
    memory, seed = tf.constant(x[:3]), tf.constant(SEED)
    cases = [
        (lambda: served["log_likelihood"](x=x, num_samples=tf.constant(0), seed=seed, memory=memory), "num_samples must be"),
        (lambda: served["sample"](num_samples=tf.constant(-1), seed=seed, memory=memory), "num_samples must be"),
        (lambda: served["reconstruct"](x=x, memory=tf.fill(tf.shape(memory), np.nan)), "memory contains NaN"),
        (lambda: served["classify"](x=x, memory=memory, memory_labels=tf.constant([0, 1, 2]), num_classes=tf.constant(2)),
         "memory_labels must be < num_classes"),
        (lambda: served["classify"](x=x, memory=memory, memory_labels=tf.constant([0, 1]), num_classes=tf.constant(2)),
         "memory_labels must hold"),
        (lambda: served["decode"](z=tf.zeros([2, 2]), address=tf.constant([0, 3]), memory=memory),
         "address must be < the memory size"),
        (lambda: served["log_likelihood"](x=x, num_samples=tf.constant(2), seed=seed, memory=memory[:0]),
         "memory must hold at least one entry"),
    ]
    for call, reason in cases:
        first_line = _first_line_of_error(call)
        assert re.search(reason, first_line), (reason, first_line)


def test_versions_increase_and_never_overwrite(exported):
    model, _, _, root = exported("VAE")
    assert run_export.next_version(root) == 2
    with pytest.raises(ValueError, match="already exists"):
        run_export.export(model, root, version=1)
    with pytest.raises(ValueError, match="version must be an int >= 1"):
        run_export.export(model, root, version=0)
    with pytest.raises(ValueError, match="has no serving_endpoints"):
        run_export.export(object(), root)


def test_importing_the_export_module_defines_no_flags():
    from absl import flags

    assert "export_dir" not in flags.FLAGS and "preset" not in flags.FLAGS


def _build_md_serving_tables():
    """BUILD.md's serving tables (the models without a memory input, then the memory models') as
    `{signature: [(input, vma_only)]}`, a signature marked `(VMA)` and an input after "VMA also" being VMA's only."""
    text = (pathlib.Path(__file__).parents[2] / "BUILD.md").read_text()
    section = text[text.index("## Serving"):]
    tables = re.findall(r"\| signature \| inputs \| outputs \|\n\| --- \| --- \| --- \|\n((?:\|.*\n)+)", section)
    parsed = []
    for table in tables[:2]:
        rows = {}
        for line in table.splitlines():
            names, inputs, _ = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            vma_row = names.endswith("(VMA)")
            inputs = [(name, vma_row or bool(vma)) for vma, name in re.findall(r"(VMA also )?`([a-z_]+)`", inputs)]
            for name in re.findall(r"`([a-z_]+)`", names):
                rows[name] = (vma_row, inputs)
        parsed.append(rows)
    return parsed


@pytest.mark.parametrize("name", sorted(MODEL_GOLDENS))
def test_build_md_serving_tables_name_every_signature_and_its_inputs(name):
    golden = MODEL_GOLDENS[name]
    model = golden["cls"](**golden["init_kwargs"])
    served = {signature: [spec.name for spec in specs] for signature, (_, specs) in model.serving_endpoints().items()}
    plain, memory = _build_md_serving_tables()
    is_vma = isinstance(model, zoo.VMA)
    table = memory if isinstance(model, zoo.models.SoftAttentionVAE) or is_vma else plain
    documented = {signature: [input for input, vma_only in inputs if is_vma or not vma_only]
                  for signature, (vma_row, inputs) in table.items() if is_vma or not vma_row}
    assert documented == served


def test_a_failed_export_leaves_no_version_behind(tmp_path, monkeypatch):
    # TF Serving watches the directory: a half-written version would be loaded, and the version number taken.
    rename = os.replace

    def failing_rename(source, target):  # the export written (elsewhere), then the process fails
        if os.path.basename(target) == "1":
            assert sorted(os.listdir(source)) == ["assets", "fingerprint.pb", "saved_model.pb", "variables"]
            raise OSError("No space left on device")
        return rename(source, target)

    monkeypatch.setattr(os, "replace", failing_rename)
    with pytest.raises(OSError, match="No space left on device"):
        run_export.export(_golden_model("VAE")[0], str(tmp_path))
    assert os.listdir(tmp_path) == [] and run_export.next_version(str(tmp_path)) == 1
