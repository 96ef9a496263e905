import inspect

import keras
import numpy as np
import pytest

import zoo
from tests import goldens, testing

PUBLIC_LAYERS = [c for c in vars(zoo.layers).values() if inspect.isclass(c) and issubclass(c, keras.layers.Layer)]
PUBLIC_MODELS = [
    c for c in vars(zoo.models).values()
    if inspect.isclass(c) and issubclass(c, keras.Model) and c is not zoo.models.LatentVariableModel
]


def test_every_public_class_has_a_golden():
    covered = {g["cls"] for g in {**goldens.LAYER_GOLDENS, **goldens.MODEL_GOLDENS}.values()}
    missing = [c.__name__ for c in PUBLIC_LAYERS + PUBLIC_MODELS if c not in covered]
    assert not missing, f"public classes without a golden in tests/goldens.py: {missing}"
    # Every class keeps its costly checks in the default suite.
    assert goldens.REPEATED_PATHS < set(goldens.MODEL_GOLDENS)
    default = {goldens.MODEL_GOLDENS[name]["cls"] for name in set(goldens.MODEL_GOLDENS) - goldens.REPEATED_PATHS}
    assert default == {g["cls"] for g in goldens.MODEL_GOLDENS.values()}


class TestLayerGoldens(testing.TestCase):
    @pytest.mark.parametrize("name", sorted(goldens.LAYER_GOLDENS))
    def test_layer(self, name):
        golden = goldens.LAYER_GOLDENS[name]
        self.run_layer_test(
            golden["cls"],
            golden["init_kwargs"],
            golden["input_data"](),
            golden["expected_output_shape"],
            call_kwargs=golden.get("call_kwargs"),
            zero_gradient=golden.get("zero_gradient"),
        )


COSTLY = goldens.costly_check_params()


class TestModelGoldens(testing.TestCase):
    @pytest.mark.parametrize("name", sorted(goldens.MODEL_GOLDENS))
    def test_config_round_trip(self, name):
        golden = goldens.MODEL_GOLDENS[name]
        model = golden["cls"](**golden["init_kwargs"])
        clone = golden["cls"].from_config(model.get_config())
        assert clone.get_config() == model.get_config()
        assert clone.count_params() == model.count_params()

    @pytest.mark.parametrize("name", COSTLY)
    def test_eager_and_xla_gradients(self, name):
        golden = goldens.MODEL_GOLDENS[name]
        model = golden["cls"](**golden["init_kwargs"])
        self.run_model_test(model, golden["input_data"](), golden.get("zero_gradient"))

    @pytest.mark.parametrize("name", COSTLY)
    def test_keras_save_load(self, name):
        golden = goldens.MODEL_GOLDENS[name]
        model = golden["cls"](**golden["init_kwargs"])
        x = golden["input_data"]()
        model.compile()
        model(x)  # built
        model.optimizer.build(model.trainable_variables)
        # Every float weight and optimizer slot off its initial value, batch-norm statistics included (as a fit
        # step would move them, without tracing one): a weight lost in the round trip shows.
        rng = np.random.default_rng(0)
        for weight in model.weights + model.optimizer.variables:
            if "float" in str(weight.dtype):
                weight.assign(weight.numpy() * rng.uniform(0.5, 1.5, weight.shape) + rng.normal(0, 0.01, weight.shape))
        self.run_model_saving_test(model, x, golden.get("deterministic_outputs"))


@pytest.mark.parametrize("name", sorted(goldens.MODEL_GOLDENS))
def test_reference_outputs(name):
    golden = goldens.MODEL_GOLDENS[name]
    outputs = goldens.reference_outputs(golden)
    assert name in goldens.REFERENCE_OUTPUTS, f"no reference outputs for {name}: run python -m tests.goldens"
    assert set(goldens.REFERENCE_OUTPUTS[name]) == set(outputs), f"{name}: run python -m tests.goldens"
    for key, expected in goldens.REFERENCE_OUTPUTS[name].items():
        np.testing.assert_allclose(outputs[key], expected, rtol=1e-4, atol=1e-4, err_msg=f"{name} {key}")
