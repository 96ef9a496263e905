"""zoo: memory-augmented and hierarchical variational autoencoders for TensorFlow 2 / Keras 3.

`import zoo` is light: the public API (models, layers, data, presets, ...) and TensorFlow load
on the first use of a `zoo.<name>` (`zoo.VAE`, `from zoo import MemVAE`, `zoo.models`), so that
the command-line apps (`python -m zoo.train`, ...) report a bad flag before TensorFlow is
imported. Loading the models registers the zoo's classes with Keras: to read a `.keras` file
of a zoo model with `keras.saving.load_model` in a program that has not used `zoo.models` or a
model class yet, `import zoo.models` first.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("analysis", "data", "distributions", "layers", "models", "objectives", "optimizers", "presets")
_MODELS = ("VAE", "VMA", "ConvVAE", "HierarchicalVAE", "LadderVAE", "LatentVariableModel", "MemVAE", "NVAE", "SoftAttentionVAE")
__all__ = [*_SUBMODULES, *_MODELS]


def __getattr__(name):
    # Only what is asked for: the package's own modules run `from zoo import distributions` while they load, and
    # loading more here (the models, which import those modules) would be a circular import.
    if name in _SUBMODULES:
        return importlib.import_module(f"zoo.{name}")
    if name in _MODELS:
        globals()[name] = getattr(importlib.import_module("zoo.models"), name)
        return globals()[name]
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
