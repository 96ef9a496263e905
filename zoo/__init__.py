"""zoo: memory-augmented and hierarchical variational autoencoders for TensorFlow 2 / Keras 3.

The public API (models, layers, data, presets, ...) loads on first use of any `zoo.<name>`:
all of it at once, so Keras knows every zoo class from then on. Importing a submodule such
as `zoo.cli` or `zoo.presets` alone does not load TensorFlow, which lets the command-line
apps check their flags in a fraction of a second. (Loading a `.keras` file of a zoo model
needs the classes registered: touch `zoo.models` first, or use `zoo.<Model>` anywhere.)
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("data", "distributions", "evaluation", "layers", "models", "objectives", "optimizers", "presets",
               "recipes")
_MODELS = ("VAE", "VMA", "ConvVAE", "LatentVariableModel", "MemVAE", "SoftAttentionVAE")
__all__ = [*_SUBMODULES, *_MODELS]


def __getattr__(name):
    if name not in __all__:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    for module in _SUBMODULES:
        globals()[module] = importlib.import_module(f"zoo.{module}")
    for model in _MODELS:
        globals()[model] = getattr(globals()["models"], model)
    return globals()[name]


def __dir__():
    return sorted([*globals(), *__all__])
