"""zoo: memory-augmented and hierarchical variational autoencoders for TensorFlow 2 / Keras 3.

`import zoo` loads the public API (models, layers, data, presets, ...), so Keras knows every
zoo class (e.g. for `keras.saving.load_model`). The command-line apps (`python -m zoo.train`,
`zoo-train`, ...) are the exception: for them the API loads on first use of a `zoo.<name>`,
after their flags are checked, so a bad flag is reported before TensorFlow is imported.
"""

import importlib
import os
import sys

__version__ = "0.1.0"

_SUBMODULES = ("data", "distributions", "evaluation", "layers", "models", "objectives", "presets", "recipes")
_MODELS = ("VAE", "VMA", "ConvVAE", "HierarchicalVAE", "LadderVAE", "LatentVariableModel", "MemVAE", "NVAE", "SoftAttentionVAE")
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


def _running_a_command_line_app():
    argv = getattr(sys, "orig_argv", sys.argv)
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    return module.startswith("zoo.") or os.path.basename(sys.argv[0]).startswith("zoo-")


if not _running_a_command_line_app():
    __getattr__("models")
