"""The committed pretrained models (savedmodels/<name>/): served through TF Serving's loader on real test data.

TensorFlow Serving loads a SavedModel with the TF1 session loader (as `saved_model_cli run`
does), where Keras 3 exports can fail ("Could not find variable"); every signature of every
committed model is run through that loader here on real test images, and the served model gives the per-image
log-likelihoods it gave when it reproduced its card's check (SMALL_CHECKS, at small k on a few images). In the
`large` suite: every signature against the Keras model rebuilt from the shipped weights, and the exact
re-measurement of the card.
"""

import json
import os
import pathlib
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import FREY_FACES_FILE, OMNIGLOT_DIR
from tests.testing import assert_allclose

ROOT = pathlib.Path(__file__).parents[1]
PRETRAINED = sorted(p.parent.name for p in (ROOT / "savedmodels").glob("*/metrics.json"))
SEED = np.array([5, 11], np.int32)
# Test images per signature call, and as many again as the memory of memory models (the card's exact
# re-measurement uses metrics.json's `check` count).
BATCH = 8


def _latest_version(name):
    return str(max((p for p in (ROOT / "savedmodels" / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)))


def _metrics(name):
    return json.loads((ROOT / "savedmodels" / name / "metrics.json").read_text())


# Data read from a file rather than through TFDS.
DATA_FILES = {"frey_faces": FREY_FACES_FILE, "omniglot": OMNIGLOT_DIR}


def _config(name):
    return json.loads((ROOT / "savedmodels" / name / "config.json").read_text())


def _data_options(name):
    """The package's data as it trained on it (e.g. Omniglot at 26x26), read from ../shared."""
    config = _config(name)
    options = dict(config.get("data_options") or {})
    return {**options, "path": str(DATA_FILES[config["dataset"]])} if config["dataset"] in DATA_FILES else options


def _test_images(metrics, count):
    options = _data_options(metrics["name"])
    return next(iter(zoo.data.load(metrics["dataset"], split="test", batch_size=count, shuffle=False, **options))).numpy()


def _test_episodes(name, count, seed):
    """The first `count` test episodes of a model whose memory comes with each batch, as it trained on them."""
    config = _config(name)
    sizes = {key: value for key, value in config["episodes"].items() if key != "kind"}
    return zoo.data.load_episodes(config["dataset"], "test", num_episodes=count, seed=seed,
                                  **sizes, **_data_options(name))


class ServedModel:
    """A SavedModel loaded the way TF Serving loads it: a TF1 session over the MetaGraph's signatures."""

    def __init__(self, path):
        self.session = tf.compat.v1.Session(graph=tf.Graph())
        with self.session.graph.as_default():
            self.signatures = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path).signature_def

    def __call__(self, signature, **inputs):
        definition = self.signatures[signature]
        assert set(inputs) == set(definition.inputs), (signature, sorted(definition.inputs))
        feed = {definition.inputs[key].name: value for key, value in inputs.items()}
        return self.session.run({key: t.name for key, t in definition.outputs.items()}, feed)


@pytest.fixture(scope="module", params=PRETRAINED)
def pretrained(request):
    name = request.param
    metrics = _metrics(name)
    served = ServedModel(_latest_version(name))
    yield name, metrics, served, zoo.LatentVariableModel.from_preset(str(ROOT / "savedmodels" / name))
    served.session.close()


def test_there_are_pretrained_models():
    assert {"iwae_mnist_2layer", "ladder_vae_mnist"} <= set(PRETRAINED)


def _signature_inputs(signature, input_signature, images, memory=None):
    """Inputs for a signature, by input name: real test images for `x` and a memory (default: other test images)."""
    rng = np.random.default_rng(0)
    memory = images[BATCH:] if memory is None else memory
    values = {
        "x": images[:BATCH],
        "memory": memory,
        "num_samples": np.int32(4 if signature == "sample" else 50),
        "seed": SEED,
        "memory_labels": (np.arange(len(memory)) % 4).astype(np.int32),
        "num_classes": np.int32(4),
        "address": np.array([0, 1, len(memory) - 1, 2], np.int32),
    }
    for spec in input_signature:
        if spec.name == "z":  # one code per address, from the prior
            values["z"] = rng.normal(size=(4, *spec.shape[1:])).astype(np.float32)
    missing = [spec.name for spec in input_signature if spec.name not in values]
    assert not missing, f"no test inputs for {missing}"
    return {spec.name: values[spec.name] for spec in input_signature}


def _served_input_signature(served, signature):
    """The served signature's inputs as `tf.TensorSpec`s, as the Keras endpoint declares them."""
    return [tf.TensorSpec([None if dim.size < 0 else dim.size for dim in info.tensor_shape.dim],
                          tf.as_dtype(info.dtype), name)
            for name, info in served.signatures[signature].inputs.items()]


def test_every_signature_serves_real_inputs_through_tf_servings_loader(pretrained):
    name, metrics, served, model = pretrained
    images = _test_images(metrics, 2 * BATCH)
    assert set(served.signatures) - {"__saved_model_init_op"} == set(model.serving_endpoints()), name
    # A learned memory is what the model's numbers hold for; a memory given per batch is any set of test images.
    memory = model.memory.numpy() if getattr(model, "memory_size", None) else None
    outputs = {}
    for signature in model.serving_endpoints():
        inputs = _signature_inputs(signature, _served_input_signature(served, signature), images, memory)
        outputs[signature] = served(signature, **inputs)
        assert set(outputs[signature]) == set(served.signatures[signature].outputs), (name, signature)
        for key, value in outputs[signature].items():
            assert np.all(np.isfinite(value)), (name, signature, key)
    # Sane numbers on real images: for the binary digits reconstructions in [0, 1] and log p(x) within the range
    # of MNIST models (the per-image numbers themselves are pinned by SMALL_CHECKS below).
    log_px = outputs["log_likelihood"]["log_likelihood"]
    assert log_px.shape == (BATCH,), (name, log_px.shape)
    if metrics["dataset"] == "binarized_mnist":
        assert 0 <= outputs["reconstruct"]["reconstruction"].min() <= outputs["reconstruct"]["reconstruction"].max() <= 1
        assert -250 < float(np.mean(log_px)) < -40


@pytest.mark.large  # the Keras side traces every endpoint of every model: a minute in all; the goldens compare
# every class's reloaded signatures with its Keras model by default (tests/runs/test_export.py)
def test_every_signature_serves_the_keras_models_numbers(pretrained):
    name, metrics, served, model = pretrained
    images = _test_images(metrics, 2 * BATCH)
    memory = model.memory.numpy() if getattr(model, "memory_size", None) else None
    for signature, (fn, input_signature) in model.serving_endpoints().items():
        inputs = _signature_inputs(signature, input_signature, images, memory)
        expected = fn(*[tf.constant(value) for value in inputs.values()])
        result = served(signature, **inputs)
        assert set(result) == set(expected), (name, signature)
        assert_allclose(result, expected, atol=1e-4, rtol=1e-4)


def _served_nll(name, metrics, served, model, num_samples, examples=None):
    """-log p(x) per image by the served model with the card's check protocol (evaluation seed 0; the first test
    images, or the targets of the first test episodes each given its episode's memory) at `num_samples`; with
    `examples`, only the first that many images (of the first episode's targets)."""
    check = metrics["check"]
    k, seed = np.int32(num_samples), np.array([0, 0], np.int32)
    if "episodes" in check:  # each episode's targets given its memory
        episodes = list(_test_episodes(name, 1 if examples else check["episodes"], check["episode_seed"]))
        return np.concatenate([
            -served("log_likelihood", x=episode["x"].numpy()[:examples], memory=episode["memory"].numpy(),
                    num_samples=k, seed=seed)["log_likelihood"]
            for episode in episodes
        ])
    # A learned memory is served as an input too: the model's own.
    memory = {"memory": model.memory.numpy()} if "memory" in served.signatures["log_likelihood"].inputs else {}
    return -served("log_likelihood", x=_test_images(metrics, examples or check["examples"]), num_samples=k,
                   seed=seed, **memory)["log_likelihood"]


def _reproduce_the_card_check(name, metrics, served, model):
    """The packaging step's exact re-measurement (metrics.json's `check`: k of the card, seed 0, the first test
    images): the served model gives its mean within 0.02 nats."""
    check = metrics["check"]
    nll = _served_nll(name, metrics, served, model, check["num_samples"])
    assert len(nll) == check["examples"]
    assert abs(nll.mean() - check["nll_nats"]) < 0.02, (name, nll.mean(), check)
    return nll


@pytest.mark.large  # k = 5000 on 100 images for most models: minutes; the default suite pins SMALL_CHECKS
def test_the_served_model_reproduces_the_card(pretrained):
    name, metrics, served, model = pretrained
    nll = _reproduce_the_card_check(name, metrics, served, model)
    # As a sample of the test split, within two of its standard errors of the card's full estimate.
    stderr = nll.std(ddof=1) / np.sqrt(len(nll))
    assert abs(nll.mean() - metrics["test"]["nll_nats"]) < 2 * stderr, (name, nll.mean(), stderr, metrics["test"])


# The card check's protocol at k = SMALL_K on the first SMALL_EXAMPLES images (of the first test episode's targets):
# what the served model gave, per image, when it reproduced its card's check exactly (`python -m
# tests.test_pretrained [NAME ...]` re-measures the cards, then prints their entries). `card_check` is the card's
# check mean it was measured against: a model packaged again fails here until its table entry is made again.
SMALL_K, SMALL_EXAMPLES = 20, 8
SMALL_CHECKS = {
    "iwae_mnist_2layer": {
        "card_check": 88.9559,
        "nll": [82.6935, 111.0447, 107.5889, 93.8275, 93.0416, 95.923, 128.0061, 43.7663],
    },
    "ladder_vae_mnist": {
        "card_check": 86.4457,
        "nll": [80.268, 116.6933, 105.5187, 93.5758, 94.2968, 90.6351, 121.7746, 43.8714],
    },
    "memvae_frey_faces_200_10": {
        "card_check": -580.9996,
        "nll": [-601.0121, -550.3451, -641.4406, -615.8615, -724.5918, -686.3079, -649.1035, -579.0936],
    },
    "memvae_mnist_500_500_100": {
        "card_check": 86.4268,
        "nll": [84.4395, 112.1139, 99.745, 94.6201, 101.5505, 94.1545, 112.0843, 40.0767],
    },
    "nvae_mnist_small": {
        "card_check": 82.3083,
        "nll": [78.4706, 109.0679, 101.6721, 90.6804, 91.7213, 93.4427, 101.9451, 42.5815],
    },
    "pixelvae_hierarchical_mnist": {
        "card_check": 78.9445,
        "nll": [72.3552, 109.4065, 95.2164, 84.7435, 91.5367, 85.6326, 95.7322, 38.9065],
    },
    "pixelvae_mnist": {
        "card_check": 82.3957,
        "nll": [75.988, 109.2099, 100.4303, 88.8153, 95.2658, 92.0497, 100.2261, 39.9541],
    },
    "vae_mnist_530_530_100": {
        "card_check": 87.5534,
        "nll": [80.6837, 116.209, 105.2646, 91.1358, 96.4432, 93.652, 114.065, 42.4742],
    },
    "vis_memvae_mnist_500_500_100": {
        "card_check": 86.321,
        "nll": [86.5109, 110.0094, 102.1311, 96.4385, 94.3683, 91.4471, 115.1731, 39.3976],
    },
    "vma_mnist_mlp": {
        "card_check": 89.9249,
        "nll": [85.7339, 117.6938, 99.9379, 95.0748, 96.7051, 91.743, 114.6534, 42.495],
    },
    "vma_omniglot_conv": {
        "card_check": 106.124,
        "nll": [123.4854, 141.0435, 204.4161, 231.0962, 72.5528, 59.9777, 180.4156, 92.991],
    },
    "vma_omniglot_paper": {
        "card_check": 91.5579,
        "nll": [124.097, 124.29, 161.4758, 196.1353, 63.5573, 69.9816, 127.1623, 78.7173],
    },
}


def test_the_served_model_gives_the_numbers_it_gave_when_it_reproduced_its_card(pretrained):
    """Pins what the exact card check pins, at a fraction of its cost: the served graph and weights (a different
    export, weights or estimator moves log p(x) by far more than the tolerance; the signature test ties the Keras
    model's estimator of today to the served one)."""
    name, metrics, served, model = pretrained
    assert name in SMALL_CHECKS, f"{name}: no SMALL_CHECKS entry; run python -m tests.test_pretrained {name}"
    reference = SMALL_CHECKS[name]
    assert reference["card_check"] == round(metrics["check"]["nll_nats"], 4), (
        f"{name} was packaged again: run python -m tests.test_pretrained {name}")
    nll = _served_nll(name, metrics, served, model, SMALL_K, SMALL_EXAMPLES)
    np.testing.assert_allclose(nll, reference["nll"], atol=0.02, rtol=0, err_msg=name)


def test_cards_check_sample_agrees_with_the_full_estimate():
    """metrics.json's check (the first test images) is a sample of the test split: within two of its standard errors
    of the card's full estimate (the large card test re-measures the check itself)."""
    for name in PRETRAINED:
        check, test = _metrics(name)["check"], _metrics(name)["test"]
        assert check["num_samples"] == test["num_samples"], name
        assert abs(check["nll_nats"] - test["nll_nats"]) < 2 * check["nll_stderr"], (name, check, test)


FEW_SHOT = [name for name in PRETRAINED if "few_shot_check" in _metrics(name)]


@pytest.mark.parametrize("name", FEW_SHOT)
def test_the_served_model_classifies_as_the_card_says(name):
    """The served `classify` gives the packaging step's few-shot accuracies on the same test episodes."""
    metrics = _metrics(name)
    served = ServedModel(_latest_version(name))
    for check in metrics["few_shot_check"]:
        ways, shots = check["ways"], check["shots"]
        episodes = zoo.data.omniglot.few_shot_episodes(
            "test", ways=ways, shots=shots, queries_per_class=1, num_episodes=check["episodes"],
            seed=metrics["few_shot"]["protocol"]["seed"], **_data_options(name))
        correct = []
        for episode in episodes:
            probabilities = served("classify", x=episode["queries"].numpy(), memory=episode["memory"].numpy(),
                                   memory_labels=episode["memory_labels"].numpy(), num_classes=np.int32(ways))
            correct.append(np.argmax(probabilities["probabilities"], axis=-1) == episode["query_labels"].numpy())
        # One query in all may flip on a near tie between the two float paths.
        assert abs(np.mean(correct) - check["accuracy"]) <= 1 / np.size(correct) + 1e-9, (name, ways, shots, check)
        assert np.mean(correct) > 2 / ways  # well above chance: a trained model
    served.session.close()


def test_served_inputs_are_checked(pretrained):
    name, metrics, served, model = pretrained
    x = _test_images(metrics, 2)
    cases = [
        ("reconstruct", {"x": np.full_like(x, np.nan)}, "x contains NaN or Inf values"),
        ("sample", {"num_samples": np.int32(0), "seed": SEED}, "num_samples must be an int >= 1"),
        ("log_likelihood", {"x": x, "num_samples": np.int32(-2), "seed": SEED}, "num_samples must be an int >= 1"),
    ]
    if model.likelihood == "bernoulli":
        cases.append(("reconstruct", {"x": x * 0.5}, "expects x binary"))
    memory = {"memory": x} if "memory" in served.signatures["reconstruct"].inputs else {}
    if memory:
        cases.append(("reconstruct", {"x": x, "memory": np.full_like(x, np.nan)}, "memory contains NaN or Inf values"))
    for signature, inputs, reason in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=reason):
            served(signature, **{**memory, **inputs})
    with pytest.raises(ValueError, match="Cannot feed value of shape"):  # TF Serving rejects it the same way
        served("reconstruct", x=x[:, :14], **memory)


def test_cards_state_the_metrics(pretrained):
    name, metrics, _, model = pretrained
    card = (ROOT / "savedmodels" / name / "MODEL_CARD.md").read_text()
    test = metrics["test"]
    for fact in (f"{test['nll_nats']:.2f} ± {test['nll_stderr']:.2f} nats", f"k = {test['num_samples']:,}",
                 metrics["train_command"], metrics["evaluate_command"], metrics["commit"], metrics["machine"],
                 f"{metrics['parameters']:,} trainable", metrics["paper"]["source"]):
        assert fact in card, (name, fact)
    for row in metrics.get("few_shot", {"results": []})["results"]:
        assert f"| {row['ways']}-way {row['shots']}-shot | {100 * row['accuracy']:.1f} % ±" in card, (name, row)
    assert metrics["parameters"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert metrics["preset"] in metrics["train_command"]


def test_cards_are_generated_from_the_registry():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "pretrained.py"), "--cards", "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_results_opens_with_the_generated_scoreboard():
    import subprocess
    import sys

    generated = subprocess.run([sys.executable, str(ROOT / "experiments" / "pretrained.py"), "--scoreboard"],
                               capture_output=True, text=True, check=True).stdout.strip()
    results = (ROOT / "RESULTS.md").read_text()
    assert generated in results
    first, second = [match.start() for match in re.finditer(r"^## ", results, re.MULTILINE)][:2]
    assert first < results.index(generated) < second, "RESULTS.md opens with the scoreboard"
    for name in PRETRAINED:
        assert f"[{name}](savedmodels/{name}/MODEL_CARD.md)" in generated
    # A paper's number never stands without its protocol: binarization, k, test images, epochs.
    numbered = [cells for cells in ([c.strip() for c in row.split("|")[1:-1]] for row in generated.splitlines())
                if len(cells) == 10 and re.fullmatch(r"\d+\.\d\d", cells[6])]
    assert numbered
    for cells in numbered:
        assert re.fullmatch(r"(dynamic|fixed) binarization, k (= [\d,]+|not stated), .*test images.*, .*epochs",
                            cells[7]), cells


def test_a_pretrained_directory_rebuilds_and_refuses_what_does_not_fit(tmp_path):
    name = PRETRAINED[0]
    directory = str(ROOT / "savedmodels" / name)
    fresh = zoo.LatentVariableModel.from_preset(directory, load_weights=False)
    trained = zoo.LatentVariableModel.from_preset(directory)
    assert [w.shape for w in fresh.weights] == [w.shape for w in trained.weights]
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), trained.get_weights()))
    with pytest.raises(ValueError, match="without config.json"):
        zoo.LatentVariableModel.from_preset(str(tmp_path))
    for corrupt, error in (('{"preset": "vae_mnist_500', "JSONDecodeError"), ('{"preset": "vae_mnist_500_500_100"}', "KeyError"),
                           (b"\xff\xfe", "UnicodeDecodeError")):
        (tmp_path / "config.json").write_bytes(corrupt if isinstance(corrupt, bytes) else corrupt.encode())
        with pytest.raises(ValueError) as raised:
            zoo.LatentVariableModel.from_preset(str(tmp_path))
        assert str(raised.value).startswith(f"{tmp_path / 'config.json'} is not a zoo.train config.json ({error}: ")
    with pytest.raises(ValueError, match="do not fit"):
        zoo.LatentVariableModel.from_preset(directory, input_shape=(14, 14, 1))
    # A directory without its weights, or with a damaged weights file (raw h5py errors before).
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(os.path.join(directory, "config.json"), copy)
    with pytest.raises(ValueError, match=r"'.*copy' has no model.weights.h5; pass load_weights=False"):
        zoo.LatentVariableModel.from_preset(str(copy))
    assert len(zoo.LatentVariableModel.from_preset(str(copy), load_weights=False).weights) == len(trained.weights)
    (copy / "model.weights.h5").write_bytes(b"not HDF5")
    with pytest.raises(ValueError, match=r"model.weights.h5 is not a readable Keras weights file"):
        zoo.LatentVariableModel.from_preset(str(copy))
    with pytest.raises(ValueError, match=r"load_weights must be a bool, got 'False'"):
        zoo.LatentVariableModel.from_preset(directory, load_weights="False")


# BUILD.md's TF Serving examples serve this model.
SERVED_IN_BUILD = "ladder_vae_mnist"


def _build_md_block(title):
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "BUILD.md").read_text(), re.DOTALL):
        if block.startswith(f"# {title}\n"):
            return block
    raise AssertionError(f"BUILD.md has no python block starting with '# {title}'")


def _fits(shape, signature_shape):
    dims = [d.size for d in signature_shape.dim]
    return len(shape) == len(dims) and all(d in (-1, n) for d, n in zip(dims, shape))


def _rest_inputs(body, definition):
    """The tensors TF Serving decodes from a REST predict body: row ("instances") or columnar ("inputs") format."""
    if "instances" in body:
        assert len(definition.inputs) == 1, "rows of a multi-input signature would be objects"
        (key,) = definition.inputs
        values = {key: body["instances"]}
    else:
        values = body["inputs"]
    assert set(values) == set(definition.inputs), (sorted(values), sorted(definition.inputs))
    tensors = {}
    for key, value in values.items():
        dtype = tf.dtypes.as_dtype(definition.inputs[key].dtype)
        array = np.asarray(value)
        assert array.dtype.kind == ("f" if dtype.is_floating else "i"), (key, array.dtype, dtype.name)
        assert _fits(array.shape, definition.inputs[key].tensor_shape), (key, array.shape)
        tensors[key] = array.astype(dtype.as_numpy_dtype)
    return tensors


def _keras_outputs(model, signature, inputs):
    fn, input_signature = model.serving_endpoints()[signature]
    return fn(*[tf.constant(inputs[spec.name]) for spec in input_signature])


@pytest.fixture(scope="module")
def build_md_clients():
    namespace = {}
    exec(_build_md_block("REST client for TF Serving"), namespace)
    exec(_build_md_block("gRPC client for TF Serving"), namespace)
    served = ServedModel(_latest_version(SERVED_IN_BUILD))
    yield namespace, served, zoo.LatentVariableModel.from_preset(str(ROOT / "savedmodels" / SERVED_IN_BUILD))
    served.session.close()


def test_build_md_rest_bodies_fit_the_signatures_and_serve(build_md_clients):
    namespace, served, model = build_md_clients
    bodies = namespace["REST_BODIES"]
    assert set(bodies) == set(served.signatures) - {"__saved_model_init_op"}
    assert f"/v1/models/{SERVED_IN_BUILD}:predict" in namespace["predict"].__defaults__[0]
    for signature, body in bodies.items():
        body = json.loads(json.dumps(body))  # as it goes over the wire
        assert body.get("signature_name", "serving_default") == signature
        inputs = _rest_inputs(body, served.signatures[signature])
        if signature == "log_likelihood":
            inputs["num_samples"] = np.int32(100)  # the body's k = 5000, cut for the test's time
        assert_allclose(served(signature, **inputs), _keras_outputs(model, signature, inputs), atol=1e-4, rtol=1e-4)


def test_build_md_grpc_request_fits_its_signature_and_serves(build_md_clients):
    namespace, served, model = build_md_clients
    request = namespace["request"]
    assert request.model_spec.name == SERVED_IN_BUILD
    definition = served.signatures[request.model_spec.signature_name]
    assert set(request.inputs) == set(definition.inputs)
    inputs = {}
    for key, proto in request.inputs.items():
        assert proto.dtype == definition.inputs[key].dtype, key
        inputs[key] = tf.make_ndarray(proto)
        assert _fits(inputs[key].shape, definition.inputs[key].tensor_shape), (key, inputs[key].shape)
    inputs["num_samples"] = np.int32(100)
    assert_allclose(served(request.model_spec.signature_name, **inputs),
                    _keras_outputs(model, request.model_spec.signature_name, inputs), atol=1e-4, rtol=1e-4)


def test_cards_show_the_learning_curve_or_say_it_was_not_kept():
    for name in PRETRAINED:
        directory = ROOT / "savedmodels" / name
        card, curve = (directory / "MODEL_CARD.md").read_text(), _metrics(name).get("learning_curve")
        if curve is None:  # packaged before curves were kept, from a run directory that is gone
            assert "## Learning curve\n\nNot kept." in card and "next retrained" in card, name
            continue
        assert f"![learning curve]({curve['png']})" in card and f"[{curve['json']}]({curve['json']})" in card, name
        assert (directory / curve["png"]).read_bytes().startswith(b"\x89PNG"), name
        logged = json.loads((directory / curve["json"]).read_text())
        assert logged["best_epoch"] == curve["best_epoch"] == logged["test"]["epoch"], name


if __name__ == "__main__":
    # Re-measures the cards' checks with the served models (as the large test does), then prints their SMALL_CHECKS
    # entries: `python -m tests.test_pretrained [NAME ...]` (default: every packaged model).
    import sys

    unknown = sorted(set(sys.argv[1:]) - set(PRETRAINED))
    if unknown:
        sys.exit(f"unknown packaged models {unknown}; known: {PRETRAINED}")
    rows = []
    for name in sys.argv[1:] or PRETRAINED:
        metrics = _metrics(name)
        served = ServedModel(_latest_version(name))
        model = zoo.LatentVariableModel.from_preset(str(ROOT / "savedmodels" / name))
        _reproduce_the_card_check(name, metrics, served, model)
        nll = _served_nll(name, metrics, served, model, SMALL_K, SMALL_EXAMPLES)
        rows.append(f'    "{name}": {{"card_check": {round(metrics["check"]["nll_nats"], 4)!r}, '
                    f'"nll": {[round(float(v), 4) for v in nll]!r}}},')
        served.session.close()
    print("\n".join(rows))
