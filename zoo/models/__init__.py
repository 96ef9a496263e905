"""Public models of the zoo, one file per model."""

from zoo.models.base import LatentVariableModel
from zoo.models.conv_vae import ConvVAE
from zoo.models.hierarchical_vae import HierarchicalVAE
from zoo.models.ladder_vae import LadderVAE
from zoo.models.mem_vae import MemVAE
from zoo.models.nvae import NVAE
from zoo.models.soft_attention_vae import SoftAttentionVAE
from zoo.models.vae import VAE
from zoo.models.vma import VMA

__all__ = ["ConvVAE", "HierarchicalVAE", "LadderVAE", "LatentVariableModel", "MemVAE", "NVAE", "SoftAttentionVAE", "VAE", "VMA"]
