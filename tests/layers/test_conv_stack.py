"""zoo.layers.ConvStack and SkipDecoder (zoo/layers/skip_decoder.py): the activations they accept."""

import numpy as np
import pytest

import zoo


def _slopes(layers):
    """Each layer's activation at -1 and at 1: (-slope, 1) for a leaky ReLU."""
    return [np.asarray(layer.activation(np.array([-1.0, 1.0], np.float32))).tolist() for layer in layers]


def test_the_papers_leaky_relu_reaches_every_convolution():
    stack = zoo.layers.ConvStack(filters=(2, 3), strides=(1, 2), activation="leaky_relu_0.01", seed=0)
    decoder = zoo.layers.SkipDecoder(event_shape=(4, 4, 1), filters=(2, 3), strides=(1, 2),
                                     activation="leaky_relu_0.01", seed=0)
    for layers in (stack.conv_layers, [decoder.projection, *decoder.up_layers]):
        np.testing.assert_allclose(_slopes(layers), [[-0.01, 1.0]] * len(layers), rtol=1e-6)
    # The configs keep the name, so a saved model rebuilds the same activation.
    rebuilt = zoo.layers.ConvStack.from_config(stack.get_config())
    assert stack.get_config()["activation"] == "leaky_relu_0.01"
    np.testing.assert_allclose(_slopes(rebuilt.conv_layers), _slopes(stack.conv_layers))
    assert _slopes(zoo.layers.ConvStack(filters=(2,), strides=(1,)).conv_layers) == [[0.0, 1.0]]  # relu by default


@pytest.mark.parametrize("cls, kwargs", [
    (zoo.layers.ConvStack, {}), (zoo.layers.SkipDecoder, {"event_shape": (4, 4, 1)}),
])
def test_an_unknown_activation_is_named(cls, kwargs):
    with pytest.raises(ValueError, match="activation must be a Keras activation name or one of .*'leaky_relu_0.01'.*, "
                                         "got 'leaky'"):
        cls(filters=(2,), strides=(1,), activation="leaky", **kwargs)
