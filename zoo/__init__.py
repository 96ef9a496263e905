"""zoo: memory-augmented and hierarchical variational autoencoders for TensorFlow 2 / Keras 3."""

from zoo import data, distributions, evaluation, layers, objectives, presets
from zoo.models import VAE, LatentVariableModel, MemVAE
from zoo.models import ConvVAE, SoftAttentionVAE, VMA

__version__ = "0.1.0"
