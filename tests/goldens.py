"""Tiny "golden" configurations of every public layer and model, run through the whole battery.

Each entry: `cls`, `init_kwargs`, `input_data` (a function returning numpy arrays), and for
layers `expected_output_shape` (and optional `call_kwargs`); for models optional
`deterministic_outputs(model, x)` compared after a save/load round trip (see tests/testing.py),
`reference_state(model)` (weights set off their initialisation before `reference_outputs`) and
`reference_log_likelihood` (see `reference_outputs`). `zero_gradient` is a regex of weight paths whose
gradient is zero by design.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo


# A Dense bias followed by batch normalization is cancelled by the mean subtraction; the MEM-VAE
# architecture keeps it so parameter counts match Li et al. (2016), Table 3.
BN_DENSE_BIAS = r"dense_\d+/bias"


# The ladder composition starts as the identity on h_g with its memory paths closed
# (a3 = a4 = b1 = 0, Li et al. 2016's initialisation), so at initialisation no gradient reaches
# the memory, the controller or the gate's c-vectors; tests/models/test_mem_vae.py checks they get one
# once the paths open.
MEMORY_CLOSED_AT_INIT = r"memory_block[^/]*/(memory|controller_kernel|controller_bias|c[1-4])$"


def binary_images(shape=(4, 8, 8, 1), seed=0):
    return (np.random.default_rng(seed).random(shape) < 0.5).astype(np.float32)


def features(shape=(4, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def eager_deterministic_outputs(model, x):
    """Deterministic outputs without an XLA compile per model (tests/models/test_vma.py covers log_likelihood)."""
    return {"reconstruct": model.reconstruct(x), "sample": model.sample(3, seed=5)}


def open_memory_gates(model):
    """MemVAE off its initialisation, where the ladder gates are closed (a3 = a4 = b1 = 0) and the memory is
    ~ N(0, 0.01^2): then every number equals the VAE's. Open gates and O(1) entries put the memory read in them."""
    for block in model.memory_blocks.values():
        block.memory.assign(100.0 * block.memory)
        for name, value in (("a3", 0.5), ("a4", 0.3), ("b1", 0.5), ("c3", 0.5), ("c4", 0.2)):
            block.ladder[name].assign(tf.fill(block.ladder[name].shape, value))


def tilt_address_prior(model):
    """VMA's learned p(a) off flat (e^p = 0 at initialisation), so that log p(a) and log q(a|x) differ."""
    model.address.prior_query.assign(tf.linspace(-4.0, 4.0, model.address.matching_dim))


LAYER_GOLDENS = {
    "Dense": dict(
        cls=zoo.layers.Dense,
        init_kwargs=dict(units=256, activation="relu"),
        input_data=lambda: features((64, 512)),  # 64 x 512 x 256 multiply-adds: the blocked products
        expected_output_shape=(64, 256),
    ),
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
    "MemoryBlock": dict(
        cls=zoo.layers.MemoryBlock,
        init_kwargs=dict(num_slots=3, attention="sigmoid", composition="ladder", activation="relu"),
        input_data=lambda: features((4, 5)),
        expected_output_shape=(4, 5),
        zero_gradient=MEMORY_CLOSED_AT_INIT,
    ),
    "LikelihoodHead": dict(
        cls=zoo.layers.LikelihoodHead,
        init_kwargs=dict(event_shape=(2, 3, 1), likelihood="gaussian"),
        input_data=lambda: features((4, 5)),
        expected_output_shape={"mean": (4, 2, 3, 1), "log_variance": (4, 2, 3, 1)},
    ),
    "LikelihoodHeadLogisticMixture": dict(  # 8-bit data: three [.., H, W, C, M] parameter maps and the mean
        cls=zoo.layers.LikelihoodHead,
        init_kwargs=dict(event_shape=(2, 3, 2), likelihood="logistic_mixture", num_mixtures=3, seed=1),
        input_data=lambda: features((4, 5)),
        expected_output_shape={
            "logits": (4, 2, 3, 2, 3), "means": (4, 2, 3, 2, 3), "log_scales": (4, 2, 3, 2, 3), "mean": (4, 2, 3, 2),
        },
    ),
    "ConvStack": dict(
        cls=zoo.layers.ConvStack,
        init_kwargs=dict(filters=(4, 8), strides=(1, 2), activation="relu"),
        input_data=lambda: features((4, 7, 7, 1)),
        expected_output_shape=[(4, 7, 7, 4), (4, 4, 4, 8)],
    ),
    "MatchingEmbedding": dict(
        cls=zoo.layers.MatchingEmbedding,
        init_kwargs=dict(event_shape=(8, 8, 1), matching_dim=3, architecture="conv", filters=(4,), strides=(2,)),
        input_data=binary_images,
        expected_output_shape=(4, 3),
    ),
    "SkipDecoder": dict(
        cls=zoo.layers.SkipDecoder,
        init_kwargs=dict(event_shape=(7, 7, 1), filters=(4, 8), strides=(1, 2)),
        input_data=lambda: features((4, 3)),
        call_kwargs=dict(skips=[features((4, 7, 7, 4), 1), features((4, 4, 4, 8), 2)]),
        expected_output_shape={"logits": (4, 7, 7, 1), "mean": (4, 7, 7, 1)},
    ),
    "StochasticAddress": dict(
        cls=zoo.layers.StochasticAddress,
        init_kwargs=dict(event_shape=(8, 8, 1), matching_dim=3, hidden_units=(8,), seed=2),
        input_data=lambda: {"query": binary_images(), "memory": binary_images(seed=1)},
        call_kwargs=dict(num_samples=2),
        expected_output_shape={
            "logits": (4, 4), "prior_logits": (4,), "samples": (2, 4), "log_prob": (2, 4), "kl": (4,),
        },
    ),
    "SqueezeExcitation": dict(
        cls=zoo.layers.SqueezeExcitation,
        init_kwargs=dict(reduction=2, min_hidden_units=2, seed=0),
        input_data=lambda: features((4, 8, 8, 8)),
        expected_output_shape=(4, 8, 8, 8),
    ),
    "ResidualCell": dict(  # NVAE's encoder cell, halving the resolution (factorized-reduce skip)
        cls=zoo.layers.ResidualCell,
        init_kwargs=dict(filters=8, cell_type="encoder", stride=2, seed=1),
        input_data=lambda: features((4, 8, 8, 4)),
        expected_output_shape=(4, 4, 4, 8),
    ),
    "ResidualCellDecoder": dict(  # NVAE's generative cell, doubling the resolution (upsampling skip)
        cls=zoo.layers.ResidualCell,
        init_kwargs=dict(filters=4, cell_type="decoder", upsample=True, expansion=2, seed=2),
        input_data=lambda: features((4, 4, 4, 8)),
        expected_output_shape=(4, 8, 8, 4),
    ),
    "MaskedConv2D": dict(
        cls=zoo.layers.MaskedConv2D,
        init_kwargs=dict(filters=4, kernel_size=(3, 5), mask_type="A"),
        input_data=lambda: features((4, 6, 6, 2)),
        expected_output_shape=(4, 6, 6, 4),
    ),
    "GatedPixelCNNBlock": dict(  # a later block: [v, h, conditioning map]
        cls=zoo.layers.GatedPixelCNNBlock,
        init_kwargs=dict(filters=3, kernel_size=3, mask_type="B", condition_channels=2, seed=1),
        input_data=lambda: [features((4, 5, 5, 3)), features((4, 5, 5, 3), 1), features((4, 5, 5, 2), 2)],
        expected_output_shape=[(4, 5, 5, 3), (4, 5, 5, 3)],
    ),
    "PixelCNN": dict(  # conditioned on a coarser map, upsampled; the 8-bit logistic mixture
        cls=zoo.layers.PixelCNN,
        init_kwargs=dict(
            event_shape=(4, 4, 2), likelihood="logistic_mixture", filters=4, num_blocks=2, condition_shape=(2, 2, 3),
            num_mixtures=2, seed=2,
        ),
        input_data=lambda: [np.random.default_rng(0).integers(0, 256, (4, 4, 4, 2)).astype(np.float32) / 255,
                            features((4, 2, 2, 3))],
        expected_output_shape={
            "logits": (4, 4, 4, 2, 2), "means": (4, 4, 4, 2, 2), "log_scales": (4, 4, 4, 2, 2), "mean": (4, 4, 4, 2),
        },
    ),
    "SpectralNormRegularizer": dict(  # no trainable weights: the fit step updates its singular vectors
        cls=zoo.layers.SpectralNormRegularizer,
        init_kwargs=dict(num_power_iterations=2, initial_power_iterations=8, seed=0),
        input_data=lambda: [features((4, 9)), features((4, 9), 1), features((4, 6), 2)],
        expected_output_shape=(),
    ),
}

MODEL_GOLDENS = {
    # One architecture each keeps the suite short: the XLA-sensitive ops (address sampling,
    # gathers, attention) are the same in both; tests/models/test_vma.py runs the other variants.
    "ConvVAE": dict(
        cls=zoo.ConvVAE,
        init_kwargs=dict(input_shape=(8, 8, 1), filters=(4, 8), strides=(1, 2), latent_dim=2, seed=1),
        input_data=binary_images,
        deterministic_outputs=eager_deterministic_outputs,
    ),
    "SoftAttentionVAE": dict(
        cls=zoo.SoftAttentionVAE,
        init_kwargs=dict(
            input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, matching_dim=4, memory_size=5, seed=1,
        ),
        input_data=binary_images,
        deterministic_outputs=eager_deterministic_outputs,
    ),
    "VMA": dict(
        cls=zoo.VMA,
        init_kwargs=dict(
            input_shape=(8, 8, 1), architecture="conv", filters=(4, 8), strides=(1, 2), latent_dim=2,
            matching_dim=4, memory_size=5, num_importance_samples=2, seed=1,
        ),
        input_data=binary_images,
        deterministic_outputs=eager_deterministic_outputs,
        reference_state=tilt_address_prior,
        reference_log_likelihood=True,
    ),
    # vma_omniglot_paper's code paths: separate h^q and p(a) networks, q(z|x,m_a) on concat(x, m_a), eq. 8's baseline.
    # p(a)'s query point e^p starts at 0 (a flat prior), so no gradient reaches h^p at initialisation;
    # tests/models/test_vma_omniglot_paper.py checks that one does once e^p has moved.
    "VMAPaper": dict(
        cls=zoo.VMA,
        init_kwargs=dict(
            input_shape=(8, 8, 1), architecture="conv", filters=(4, 8), strides=(1, 2), latent_dim=2,
            matching_dim=4, memory_size=5, num_importance_samples=2, shared_embedding=False,
            query_network="separate", prior_network="separate", posterior_input="concatenated",
            posterior_filters=(4, 8), posterior_strides=(1, 2), posterior_hidden_units=(6,),
            vimco_baseline="arithmetic", seed=1,
        ),
        input_data=binary_images,
        deterministic_outputs=eager_deterministic_outputs,
        zero_gradient=r"address/prior_embedding/",
        reference_state=tilt_address_prior,
    ),
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
    "MemVAE": dict(
        cls=zoo.MemVAE,
        init_kwargs=dict(input_shape=(8, 8, 1), hidden_units=(16, 8), latent_dim=2, num_slots=(4, 3), seed=1),
        input_data=binary_images,
        zero_gradient=BN_DENSE_BIAS + "|" + MEMORY_CLOSED_AT_INIT,
        reference_state=open_memory_gates,
        reference_log_likelihood=True,
    ),
    "HierarchicalVAE": dict(
        cls=zoo.HierarchicalVAE,
        init_kwargs=dict(
            input_shape=(8, 8, 1),
            levels=[{"hidden_units": (16,), "latent_dim": 4}, {"hidden_units": (8,), "latent_dim": 2}],
            num_importance_samples=3,
            seed=1,
        ),
        input_data=binary_images,
    ),
    # Memory in an upper generative level, through the same level structure as MemVAE's.
    "HierarchicalMemVAE": dict(
        cls=zoo.HierarchicalVAE,
        init_kwargs=dict(
            input_shape=(8, 8, 1),
            levels=[
                {"hidden_units": (16,), "latent_dim": 4},
                {"hidden_units": (8,), "latent_dim": 2, "num_slots": (3,), "attention": "softmax", "composition": "sum"},
            ],
            kl_warmup_steps=10,
            seed=2,
        ),
        input_data=binary_images,
    ),
    "LadderVAE": dict(
        cls=zoo.LadderVAE,
        init_kwargs=dict(
            input_shape=(8, 8, 1),
            levels=[
                {"hidden_units": (16, 16), "latent_dim": 4},
                {"hidden_units": (8,), "latent_dim": 3},
                {"hidden_units": (8,), "latent_dim": 2},
            ],
            num_importance_samples=2,
            seed=3,
        ),
        input_data=binary_images,
        zero_gradient=BN_DENSE_BIAS,
    ),
    # Two scales (2x2 and 4x4 latents), one group on top and two below: the top group's direct
    # posterior, residual Normals, upsampling between scales; warm-up with KL balancing and the
    # spectral + BN regulariser in the loss.
    "NVAE": dict(
        cls=zoo.NVAE,
        init_kwargs=dict(
            input_shape=(8, 8, 1),
            scales=[{"groups": 1, "latent_channels": 2}, {"groups": 2, "latent_channels": 2}],
            channels=4,
            kl_warmup_steps=10,
            spectral_regularization=0.1,
            seed=1,
        ),
        input_data=binary_images,
    ),
    # PixelVAE: the VAE with a PixelCNN decoder on its MLP decoder's features.
    "PixelVAE": dict(
        cls=zoo.VAE,
        init_kwargs=dict(
            input_shape=(8, 8, 1), hidden_units=(16,), latent_dim=2, decoder_type="pixelcnn", pixelcnn_filters=4,
            pixelcnn_blocks=2, seed=1,
        ),
        input_data=binary_images,
        zero_gradient=BN_DENSE_BIAS,
    ),
    # The seed's hierarchical PixelVAE: NVAE's convolutional groups, a PixelCNN on the last feature map and the image.
    "HierarchicalPixelVAE": dict(
        cls=zoo.NVAE,
        init_kwargs=dict(
            input_shape=(8, 8, 1),
            scales=[{"groups": 1, "latent_channels": 2}, {"groups": 1, "latent_channels": 2}],
            channels=4,
            decoder_type="pixelcnn",
            pixelcnn_filters=4,
            pixelcnn_blocks=2,
            seed=1,
        ),
        input_data=binary_images,
    ),
    "GaussianVAE": dict(
        cls=zoo.VAE,
        init_kwargs=dict(
            input_shape=(6, 5, 1), hidden_units=(8,), latent_dim=2, likelihood="gaussian", batch_norm=False, seed=2
        ),
        input_data=lambda: np.random.default_rng(0).random((4, 6, 5, 1)).astype(np.float32),
    ),
}


# Goldens of a class that another golden of the same class covers, on code paths other goldens run: IWAE the VAE's
# with k samples, HierarchicalMemVAE the bottom-up stack's with MemVAE's memory blocks, VMAPaper VMA's with the
# paper's networks, HierarchicalPixelVAE NVAE's stack with PixelVAE's PixelCNN head, GaussianVAE the VAE's with the
# Gaussian likelihood head (the LikelihoodHead layer golden's, XLA step included). Their costly checks (an XLA
# compile, a save/load round trip, an export: seconds to a minute each on 2 cores) run in the `large` suite.
REPEATED_PATHS = {"IWAE", "HierarchicalMemVAE", "VMAPaper", "HierarchicalPixelVAE", "GaussianVAE"}


def costly_check_params():
    """Every model golden as a pytest parameter, those in `REPEATED_PATHS` marked `large`."""
    return [pytest.param(name, marks=pytest.mark.large) if name in REPEATED_PATHS else name
            for name in sorted(MODEL_GOLDENS)]


def reference_outputs(golden):
    """Numbers that depend on every weight and on the samplers, of the golden's model freshly built (its seed
    fixes the initial weights) and, with `reference_state`, moved off its initialisation, on two examples:
    log importance weights `[3, 2]` for a fixed stateless seed, four pixels of the reconstructions `[2, 4]`,
    with `reference_log_likelihood` `log_likelihood` `[2]` at k = 4 (it traces a `tf.function`, 1-3 s a model
    on 2 cores: taken for one golden of each `importance_sampling`, the level stacks' and the memory
    models'), and from one training-mode call (the model's first sampler draws) the
    KL terms (`kl`, and `address_kl` `[2]` or `kl_levels` `[2, levels]` where the model has them) and the
    training loss at update 3: inside the goldens' KL warm-ups (10 updates), where NVAE balances its KL."""
    model = golden["cls"](**golden["init_kwargs"])
    if "reference_state" in golden:
        golden["reference_state"](model)
    x = golden["input_data"]()[:2]
    outputs = {
        "log_weights": model.log_importance_weights(model.validate_inputs(x), 3, tf.constant([1, 2])).numpy(),
        "reconstruct": model.reconstruct(x).numpy().reshape(2, -1)[:, :4],
    }
    if golden.get("reference_log_likelihood"):
        outputs["log_likelihood"] = model.log_likelihood(x, num_samples=4, seed=3).numpy()
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.optimizer.iterations.assign(3)
    y_pred = model(x, training=True)
    outputs["loss"] = model.compute_loss(x=x, y_pred=y_pred, training=True).numpy()
    outputs.update({key: y_pred[key].numpy() for key in ("kl", "address_kl", "kl_levels") if key in y_pred})
    return outputs


# `reference_outputs` of each model golden. A change to a model's numbers fails tests/test_goldens.py;
# when the change is meant, regenerate with `python -m tests.goldens` and say why in the commit.
REFERENCE_OUTPUTS = {
    "ConvVAE": {
        "log_weights": [[-44.47405 , -44.60247 ], [-45.305195, -44.185677], [-44.007427, -44.281685]],
        "reconstruct": [[0.5002173, 0.4990182, 0.5024307, 0.498427 ], [0.4998347, 0.500069 , 0.5008001, 0.499641 ]],
        "loss": 44.58973,
        "kl": [0.2299336, 0.0366028],
    },
    "GaussianVAE": {
        "log_weights": [[-32.59575 , -32.076096], [-42.111374, -36.38817 ], [-35.08075 , -33.47272 ]],
        "reconstruct": [[ 0.0806892,  0.014439 , -0.1464144,  0.2714629], [ 0.0756523,  0.0051357, -0.1251562,  0.2360318]],
        "loss": 35.64147,
        "kl": [0.8243638, 0.3107929],
        "kl_levels": [[0.8243638], [0.3107929]],
    },
    "HierarchicalMemVAE": {
        "log_weights": [[-46.448116, -49.9877  ], [-49.864174, -47.03982 ], [-49.28346 , -49.911724]],
        "reconstruct": [[0.5286723, 0.5037118, 0.4551845, 0.4938925], [0.4942573, 0.5307512, 0.4375629, 0.5116942]],
        "loss": 45.743584,
        "kl": [0.527786 , 1.9233245],
        "kl_levels": [[0.1608755, 0.3669105], [1.015523 , 0.9078015]],
    },
    "HierarchicalPixelVAE": {
        "log_weights": [[-43.359318, -40.93017 ], [-47.131413, -42.92082 ], [-47.082584, -46.66221 ]],
        "reconstruct": [[0.5011605, 0.4923584, 0.5112678, 0.5144092], [0.5006893, 0.5105541, 0.4935921, 0.5167004]],
        "loss": 46.404877,
        "kl": [1.5726584, 1.9864333],
        "kl_levels": [[0.0246727, 1.5479857], [0.018919 , 1.9675143]],
    },
    "HierarchicalVAE": {
        "log_weights": [[-53.485756, -51.925354], [-55.00113 , -49.682808], [-47.24016 , -47.371834]],
        "reconstruct": [[0.4362036, 0.5330711, 0.5058445, 0.5917549], [0.4518819, 0.4764794, 0.487717 , 0.6006364]],
        "loss": 48.907257,
        "kl": [5.719921, 8.100399],
        "kl_levels": [[4.016474 , 1.7034473], [6.1442556, 1.9561439]],
    },
    "IWAE": {
        "log_weights": [[-46.40296 , -45.41952 ], [-42.688656, -47.982124], [-47.752056, -47.561195]],
        "reconstruct": [[0.4973935, 0.5360676, 0.4741986, 0.5322097], [0.4996575, 0.534179 , 0.4785493, 0.5075879]],
        "loss": 44.783607,
        "kl": [0.7779256, 0.9184048],
        "kl_levels": [[0.7779256], [0.9184048]],
    },
    "LadderVAE": {
        "log_weights": [[-46.62831 , -46.70169 ], [-47.210068, -45.742588], [-47.12246 , -48.65738 ]],
        "reconstruct": [[0.4920261, 0.5127479, 0.52039  , 0.4897855], [0.4938156, 0.5185866, 0.5257819, 0.4854425]],
        "loss": 50.61151,
        "kl": [2.977864 , 3.8281271],
        "kl_levels": [[0.8353729, 1.7547729, 0.3877183], [1.7776484, 1.8259228, 0.2245557]],
    },
    "MemVAE": {
        "log_weights": [[-46.92711 , -49.216785], [-45.379917, -50.574806], [-47.391094, -51.154408]],
        "reconstruct": [[0.3650237, 0.4538678, 0.3987235, 0.4659975], [0.3831188, 0.4511193, 0.4055773, 0.4447526]],
        "log_likelihood": [-46.4673 , -49.35713],
        "loss": 49.13812,
        "kl": [0.3256158, 0.5527692],
        "kl_levels": [[0.3256158], [0.5527692]],
    },
    "NVAE": {
        "log_weights": [[-45.950073, -43.19616 ], [-41.528328, -41.869835], [-51.973648, -46.190643]],
        "reconstruct": [[0.4986299, 0.4958304, 0.4951388, 0.4945512], [0.502887 , 0.495338 , 0.4912148, 0.4895239]],
        "loss": 54.847786,
        "kl": [5.6811295, 3.5736537],
        "kl_levels": [[0.0453206, 1.8937722, 3.7420363], [0.0126757, 1.9251995, 1.6357785]],
    },
    "PixelVAE": {
        "log_weights": [[-45.4227  , -45.228474], [-43.210728, -46.400467], [-45.94386 , -46.089096]],
        "reconstruct": [[0.4999506, 0.4826673, 0.5168468, 0.531674 ], [0.5005087, 0.531848 , 0.4597691, 0.5326207]],
        "loss": 45.633987,
        "kl": [0.7779256, 0.9184048],
        "kl_levels": [[0.7779256], [0.9184048]],
    },
    "SoftAttentionVAE": {
        "log_weights": [[-46.954258, -46.246815], [-44.663544, -46.86609 ], [-47.181805, -46.015987]],
        "reconstruct": [[0.3897023, 0.4650488, 0.4834036, 0.4410517], [0.4660586, 0.4423786, 0.5277495, 0.446529 ]],
        "loss": 46.18377,
        "kl": [1.0089394, 0.2437361],
    },
    "VAE": {
        "log_weights": [[-45.37644 , -45.82759 ], [-43.306835, -47.17711 ], [-45.54545 , -47.69543 ]],
        "reconstruct": [[0.4648258, 0.5104406, 0.4709122, 0.5258394], [0.4774168, 0.5202871, 0.489259 , 0.5147155]],
        "loss": 46.68466,
        "kl": [0.3256158, 0.5527692],
        "kl_levels": [[0.3256158], [0.5527692]],
    },
    "VMA": {
        "log_weights": [[-46.418083, -47.32558 ], [-45.350853, -46.249847], [-47.10757 , -46.807636]],
        "reconstruct": [[0.5404497, 0.5375317, 0.4878212, 0.5731722], [0.5022829, 0.5493568, 0.5221389, 0.5247635]],
        "log_likelihood": [-45.341988, -46.34732 ],
        "loss": 46.742462,
        "kl": [0.336226 , 0.2132372],
        "address_kl": [0.2930548, 0.2733984],
    },
    "VMAPaper": {
        "log_weights": [[-44.51865 , -47.50382 ], [-47.430172, -46.25146 ], [-44.86866 , -47.276142]],
        "reconstruct": [[0.5267774, 0.526918 , 0.5256482, 0.5499397], [0.5025842, 0.5484946, 0.5217052, 0.5233527]],
        "loss": 45.55771,
        "kl": [0.0353964, 0.0978191],
        "address_kl": [0.5512124, 0.5597321],
    },
}


if __name__ == "__main__":
    np.set_printoptions(precision=7, floatmode="maxprec")
    for name, golden in sorted(MODEL_GOLDENS.items()):
        outputs = reference_outputs(golden)
        print(f'    "{name}": {{')
        for key, value in outputs.items():
            print(f'        "{key}": {np.array2string(value, separator=", ").replace(chr(10), "")},')
        print("    },")
