"""zoo: memory-augmented and hierarchical variational autoencoders for TensorFlow 2 / Keras 3."""

from zoo import data, distributions, evaluation, layers, objectives, presets
from zoo.models import VAE, VMA, ConvVAE, LatentVariableModel, MemVAE, SoftAttentionVAE

__version__ = "0.1.0"
