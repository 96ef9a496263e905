"""Public models of the zoo, one file per model."""

from zoo.models.base import LatentVariableModel
from zoo.models.vae import VAE

__all__ = ["LatentVariableModel", "VAE"]
