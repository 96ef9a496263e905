"""Public Keras layers of the zoo, one file per layer."""

from zoo.layers.conv_stack import ConvStack
from zoo.layers.dense import Dense
from zoo.layers.dense_stack import DenseStack
from zoo.layers.gated_pixelcnn_block import GatedPixelCNNBlock
from zoo.layers.gaussian_latent import GaussianLatent
from zoo.layers.likelihood_head import LikelihoodHead
from zoo.layers.masked_conv2d import MaskedConv2D
from zoo.layers.matching_embedding import MatchingEmbedding
from zoo.layers.memory_block import MemoryBlock
from zoo.layers.pixelcnn import PixelCNN
from zoo.layers.residual_cell import ResidualCell
from zoo.layers.skip_decoder import SkipDecoder
from zoo.layers.spectral_norm_regularizer import SpectralNormRegularizer
from zoo.layers.squeeze_excitation import SqueezeExcitation
from zoo.layers.stochastic_address import StochasticAddress

__all__ = [
    "ConvStack",
    "Dense",
    "DenseStack",
    "GatedPixelCNNBlock",
    "GaussianLatent",
    "LikelihoodHead",
    "MaskedConv2D",
    "MatchingEmbedding",
    "MemoryBlock",
    "PixelCNN",
    "ResidualCell",
    "SkipDecoder",
    "SpectralNormRegularizer",
    "SqueezeExcitation",
    "StochasticAddress",
]
