"""Tiny "golden" configurations of every public layer and model, run through the whole battery.

Each entry: `cls`, `init_kwargs`, `input_data` (a function returning numpy arrays), and for
layers `expected_output_shape` (and optional `call_kwargs`); for models optional
`deterministic_outputs(model, x)` compared after a save/load round trip (see tests/testing.py). `zero_gradient` is a regex of
weight paths whose gradient is zero by design.
"""

import numpy as np

import zoo


# A Dense bias followed by batch normalization is cancelled by the mean subtraction; the MEM-VAE
# architecture keeps it so parameter counts match Li et al. (2016), Table 3.
BN_DENSE_BIAS = r"dense_\d+/bias"


def binary_images(shape=(4, 8, 8, 1), seed=0):
    return (np.random.default_rng(seed).random(shape) < 0.5).astype(np.float32)


def features(shape=(4, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


LAYER_GOLDENS = {
    "DenseStack": dict(
        cls=zoo.layers.DenseStack,
        init_kwargs=dict(hidden_units=(6, 3), activation="relu", batch_norm=True),
        input_data=lambda: features((4, 5)),
        expected_output_shape=(4, 3),
        zero_gradient=BN_DENSE_BIAS,
    ),
    "GaussianLatent": dict(
        cls=zoo.layers.GaussianLatent,
        init_kwargs=dict(latent_dim=2, seed=3),
        input_data=lambda: features((4, 5)),
        call_kwargs=dict(num_samples=3),
        expected_output_shape={"mean": (4, 2), "log_variance": (4, 2), "z": (3, 4, 2), "log_prob": (3, 4)},
    ),
    "LikelihoodHead": dict(
        cls=zoo.layers.LikelihoodHead,
        init_kwargs=dict(event_shape=(2, 3, 1), likelihood="gaussian"),
        input_data=lambda: features((4, 5)),
        expected_output_shape={"mean": (4, 2, 3, 1), "log_variance": (4, 2, 3, 1)},
    ),
}

MODEL_GOLDENS = {
    "VAE": dict(
        cls=zoo.VAE,
        init_kwargs=dict(input_shape=(8, 8, 1), hidden_units=(16, 8), latent_dim=2, seed=1),
        input_data=binary_images,
        zero_gradient=BN_DENSE_BIAS,
    ),
    "IWAE": dict(
        cls=zoo.VAE,
        init_kwargs=dict(input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, num_importance_samples=5, seed=1),
        input_data=binary_images,
        zero_gradient=BN_DENSE_BIAS,
    ),
    "GaussianVAE": dict(
        cls=zoo.VAE,
        init_kwargs=dict(
            input_shape=(6, 5, 1), hidden_units=(8,), latent_dim=2, likelihood="gaussian", batch_norm=False, seed=2
        ),
        input_data=lambda: np.random.default_rng(0).random((4, 6, 5, 1)).astype(np.float32),
    ),
}
