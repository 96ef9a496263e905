"""Public Keras layers of the zoo, one file per layer."""

from zoo.layers.dense_stack import DenseStack
from zoo.layers.gaussian_latent import GaussianLatent
from zoo.layers.likelihood_head import LikelihoodHead

__all__ = ["DenseStack", "GaussianLatent", "LikelihoodHead"]
