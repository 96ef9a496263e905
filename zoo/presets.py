"""Named model configurations: plain data, built with `Model.from_preset(name, **overrides)`.

Each preset: `class` (registered zoo class name), `config` (constructor kwargs),
`description`, `reference`, and optionally `recipe` (the paper's training schedule: the keys
`zoo.optimizers` knows, which the training CLI applies).
"""

# thu-ml/MEM_DGM's schedule (mem_dgm_mlp.py), the same for its VAE and MEM-VAE runs: Adam 1e-3
# with epsilon 1e-4, gradients rescaled to total norm <= 5 then clipped to [-1, 1], batch 100,
# lr x 0.998 per epoch after epoch 1000, 3000 epochs; the final model is trained on train + validation.
MEM_DGM_RECIPE = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "epsilon": 1e-4,
    "max_global_norm": 5.0,
    "max_value": 1.0,
    "batch_size": 100,
    "epochs": 3000,
    "decay_start_epoch": 1000,
    "decay_per_epoch": 0.998,
}
MEM_DGM_MNIST_RECIPE = {**MEM_DGM_RECIPE, "train_split": "train+validation"}

# NVlabs/NVAE train.py's optimisation defaults (--learning_rate, --learning_rate_min, --warmup_epochs,
# --weight_decay, Adamax's eps), which its README's command lines keep.
NVAE_RECIPE = {
    "optimizer": "adamax",
    "learning_rate": 1e-2,
    "learning_rate_min": 1e-4,
    "warmup_epochs": 5,
    "weight_decay": 3e-4,
    "epsilon": 1e-3,
}

PRESETS = {
    "vae_mnist_500_500_100": {
        "class": "VAE",
        "config": {
            "input_shape": (28, 28, 1),
            "hidden_units": (500, 500),
            "latent_dim": 100,
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "bernoulli",
        },
        "description": "MNIST VAE, 784-500-500-100, BN + ReLU on every hidden layer; 1,440,984 parameters.",
        "reference": "Li, Zhu & Zhang 2016, Table 3 (VAE, 1,441K); thu-ml/MEM_DGM",
        "recipe": MEM_DGM_MNIST_RECIPE,
    },
    "vae_mnist_530_530_100": {
        "class": "VAE",
        "config": {
            "input_shape": (28, 28, 1),
            "hidden_units": (530, 530),
            "latent_dim": 100,
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "bernoulli",
        },
        "description": "Parameter-matched MNIST VAE baseline for MemVAE; 1,559,184 parameters.",
        "reference": "Li, Zhu & Zhang 2016, Table 3 (VAE, 1,559K)",
        "recipe": MEM_DGM_MNIST_RECIPE,
    },
    "vae_ocr_letters_200_200_50": {
        "class": "VAE",
        "config": {
            "input_shape": (16, 8, 1),
            "hidden_units": (200, 200),
            "latent_dim": 50,
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "bernoulli",
        },
        "description": "OCR-letters VAE, 128-200-200-50 on 16x8 images; 163,828 parameters.",
        "reference": "Li, Zhu & Zhang 2016, Table 3 (VAE, 164K)",
        "recipe": MEM_DGM_RECIPE,
    },
    "memvae_mnist_500_500_100": {
        "class": "MemVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "hidden_units": (500, 500),
            "latent_dim": 100,
            "num_slots": (70, 30),
            "attention": "sigmoid",
            "composition": "ladder",
            "local_reconstruction_weights": (0.1, 0.1),
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "bernoulli",
        },
        "description": "MNIST MEM-VAE 784-500-500-100: sigmoid attention, ladder composition, 70 slots next "
        "to x and 30 next to z, local reconstruction weights 0.1; 1,550,084 parameters.",
        "reference": "Li, Zhu & Zhang 2016, Table 3 (MEM-VAE, 1,550K); thu-ml/MEM_DGM README (-n_slots 0,70,30)",
        "recipe": MEM_DGM_MNIST_RECIPE,
    },
    "vis_memvae_mnist_500_500_100": {
        "class": "MemVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "hidden_units": (500, 500),
            "latent_dim": 100,
            "num_slots": (70, 30),
            "attention": "softmax",
            "composition": "sum",
            "local_reconstruction_weights": (0.1, 0.1),
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "bernoulli",
        },
        "description": "VIS-MEM-VAE for mapping slots to images: softmax attention, element-wise sum; 1,541,084 parameters.",
        "reference": "Li, Zhu & Zhang 2016, sec. 5.5 and Figure 7; thu-ml/MEM_DGM mem_dgm_mlp_for_vis.py",
        "recipe": MEM_DGM_MNIST_RECIPE,
    },
    "memvae_ocr_letters_200_200_50": {
        "class": "MemVAE",
        "config": {
            "input_shape": (16, 8, 1),
            "hidden_units": (200, 200),
            "latent_dim": 50,
            "num_slots": (70, 30),
            "attention": "sigmoid",
            "composition": "ladder",
            "local_reconstruction_weights": (0.1, 0.1),
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "bernoulli",
        },
        "description": "OCR-letters MEM-VAE 128-200-200-50, 70/30 slots; 207,528 parameters.",
        "reference": "Li, Zhu & Zhang 2016, Table 3 (MEM-VAE, 208K); thu-ml/MEM_DGM README",
        "recipe": MEM_DGM_RECIPE,
    },
    "memvae_frey_faces_200_10": {
        "class": "MemVAE",
        "config": {
            "input_shape": (28, 20, 1),
            "hidden_units": (200,),
            "latent_dim": 10,
            "num_slots": (20,),
            "attention": "sigmoid",
            "composition": "ladder",
            "local_reconstruction_weights": (0.0,),
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "gaussian",
        },
        "description": "Frey faces MEM-VAE 560-200-10 with a Gaussian likelihood and 20 slots, no local "
        "reconstruction error.",
        "reference": "Li, Zhu & Zhang 2016, sec. 5.2; thu-ml/MEM_DGM README (-n_slots 0,20 -lambdas 0,0)",
        "recipe": MEM_DGM_RECIPE,
    },
    "vma_mnist_mlp": {
        "class": "VMA",
        "config": {
            "input_shape": (28, 28, 1),
            "architecture": "mlp",
            "hidden_units": (256, 128),
            "latent_dim": 32,
            "matching_dim": 128,
            "memory_size": 256,
            "address_prior": "learned",
            "num_importance_samples": 4,
            "likelihood": "bernoulli",
        },
        "description": "Binarized-MNIST VMA with a learned memory of 256 images (the size is our choice), "
        "MLP 256-128, |z| = 32, K = 4 VIMCO training.",
        "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4 (MNIST MLP architecture)",
    },
    "vma_mnist_recall": {
        "class": "VMA",
        "config": {
            "input_shape": (28, 28, 1),
            "architecture": "mlp",
            "hidden_units": (256, 128),
            "latent_dim": 32,
            "matching_dim": 128,
            "memory_size": None,
            "address_prior": "flat",
            "num_importance_samples": 4,
            "likelihood": "bernoulli",
        },
        "description": "'Train to recall' VMA: MLP 256-128, |z| = 32; the memory (e.g. 256 entries) comes with "
        "each batch and holds the targets, so the optimum is a lookup with bound -> -log |M|.",
        "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4.1",
    },
    "vma_omniglot_conv": {
        "class": "VMA",
        "config": {
            "input_shape": (28, 28, 1),
            "architecture": "conv",
            "filters": (32, 32, 64, 64, 64, 64),
            "strides": (1, 2, 1, 2, 1, 2),
            "latent_dim": 64,
            "matching_dim": 128,
            "memory_size": None,
            "address_prior": "learned",
            "num_importance_samples": 4,
            "likelihood": "bernoulli",
        },
        "description": "Few-shot Omniglot VMA: 6 conv 3x3 layers (32-64 maps, stride 2 every second), skip "
        "connections from the memory's down path to the decoder, 128-d matching space, |z| = 64; "
        "memory given per episode.",
        "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4.2",
    },
    "soft_attention_omniglot_conv": {
        "class": "SoftAttentionVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "architecture": "conv",
            "filters": (32, 32, 64, 64, 64, 64),
            "strides": (1, 2, 1, 2, 1, 2),
            "latent_dim": 64,
            "matching_dim": 128,
            "memory_size": None,
            "num_importance_samples": 4,
            "likelihood": "bernoulli",
        },
        "description": "Soft-attention baseline for vma_omniglot_conv: same down path and decoder, the decoder "
        "reads an attention-weighted average of all memory entries chosen by z; memory per episode.",
        "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4 (soft-attention baseline)",
    },
    "soft_attention_mnist_recall": {
        "class": "SoftAttentionVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "architecture": "mlp",
            "hidden_units": (256, 128),
            "latent_dim": 32,
            "matching_dim": 128,
            "memory_size": None,
            "num_importance_samples": 4,
            "likelihood": "bernoulli",
        },
        "description": "Soft-attention baseline for vma_mnist_recall (MLP 256-128, |z| = 32, memory per batch).",
        "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4 (soft-attention baseline)",
    },
    "vae_omniglot_conv": {
        "class": "ConvVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "filters": (32, 32, 64, 64, 64, 64),
            "strides": (1, 2, 1, 2, 1, 2),
            "latent_dim": 64,
            "num_importance_samples": 4,
            "likelihood": "bernoulli",
        },
        "description": "Unconditioned baseline for vma_omniglot_conv: the same conv down path and up-scaling "
        "decoder (without memory skips), |z| = 64, K = 4 IWAE bound.",
        "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4.2 (VAE baseline)",
    },
    "vae_mnist_256_128_32": {
        "class": "VAE",
        "config": {
            "input_shape": (28, 28, 1),
            "hidden_units": (256, 128),
            "latent_dim": 32,
            "activation": "relu",
            "batch_norm": False,
            "likelihood": "bernoulli",
            "num_importance_samples": 4,
        },
        "description": "Unconditioned baseline for the MNIST VMA presets: the same 256-128 MLP and |z| = 32 "
        "without memory, trained with the same K = 4 bound (IWAE).",
        "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4 (VAE baseline)",
    },
    "iwae_mnist_2layer": {
        "class": "HierarchicalVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "levels": (
                {"hidden_units": (200, 200), "latent_dim": 100},
                {"hidden_units": (100, 100), "latent_dim": 50},
            ),
            "inference": "bottom_up",
            "activation": "tanh",
            "batch_norm": False,
            "likelihood": "bernoulli",
            "num_importance_samples": 5,
        },
        "description": "Two stochastic layers, 784-200-200-100 then 100-100-50 (tanh), bottom-up inference; "
        "IWAE bound with k = 5 (train with num_importance_samples=1 or 50 for the paper's other columns).",
        "reference": "Burda, Grosse & Salakhutdinov 2016, sec. 5 and Table 1",
        # The paper's Adam epsilon and batch; its learning-rate steps (1e-3 x 10^(-i/7) for 3^i epochs) are not applied.
        "recipe": {"epsilon": 1e-4, "batch_size": 20, "learning_rate": 1e-3},
    },
    "ladder_vae_mnist": {
        "class": "LadderVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "levels": tuple(
                {"hidden_units": (units, units), "latent_dim": latent}
                for units, latent in zip((512, 256, 128, 64, 32), (64, 32, 16, 8, 4))
            ),
            "activation": "leaky_relu_0.01",
            "batch_norm": True,
            "likelihood": "bernoulli",
            "kl_warmup_steps": 39_000,
        },
        "description": "Ladder VAE, five stochastic layers 64-32-16-8-4 reached by two-layer MLPs of "
        "512-256-128-64-32 units, batch norm, leaky ReLU, KL warm-up over 200 epochs of batch 256.",
        "reference": "Sonderby et al. 2016, sec. 3 (MNIST); casperkaae/LVAE run_models.py",
        "recipe": {"learning_rate": 2e-4, "batch_size": 256},
    },
    "nvae_mnist_small": {
        "class": "NVAE",
        "config": {
            "input_shape": (28, 28, 1),
            "scales": [{"groups": 2, "latent_channels": 8}, {"groups": 2, "latent_channels": 8}],
            "channels": 16,
            "encoder_cells_per_group": 1,
            "decoder_cells_per_group": 1,
            "preprocess_blocks": 1,
            "preprocess_cells": 2,
            "postprocess_cells": 2,
            "likelihood": "bernoulli",
            "num_importance_samples": 1,
            "kl_warmup_steps": 5_000,
            "kl_balancing": True,
            "spectral_regularization": 1e-2,
        },
        "description": "A CPU-sized NVAE for binarized MNIST: stem of 16 channels, one pre-/post-processing block "
        "of 2 cells (28 -> 14), latent scales 7x7 and 14x14, 2 groups each of 8 channels, one residual cell "
        "per group, KL balancing during a 5,000-step warm-up, spectral regularisation 1e-2. Not a paper configuration.",
        "reference": "Vahdat & Kautz 2020 (architecture); scaled down from NVlabs/NVAE's MNIST command line",
        "recipe": {"learning_rate": 1e-3, "batch_size": 32},
    },
    # The paper-scale configurations, from NVlabs/NVAE's README command lines (the paper's Table 6).
    # Both use the 8-bit discretized logistic mixture of 10 components (--num_mixture_dec 10), one
    # mixture per channel (the authors couple R, G, B; see zoo.distributions). Left out: the
    # normalizing flow cell (--num_nf 1).
    # kl_warmup_steps is the authors' default --kl_anneal_portion 0.3 of the training updates. The recipe is
    # their train.py's defaults: Adamax (eps 1e-3, coupled L2 3e-4), lr 1e-2 warmed up over 5 epochs, then
    # cosine decay to 1e-4.
    "nvae_cifar10": {
        "class": "NVAE",
        "config": {
            "input_shape": (32, 32, 3),
            "scales": [{"groups": 30, "latent_channels": 20}],
            "channels": 128,
            "encoder_cells_per_group": 2,
            "decoder_cells_per_group": 2,
            "preprocess_blocks": 1,
            "preprocess_cells": 2,
            "postprocess_cells": 2,
            "likelihood": "logistic_mixture",
            "num_mixtures": 10,
            "num_importance_samples": 1,
            "kl_warmup_steps": 23_400,  # 0.3 x 400 epochs x 195 updates (batch 32 x 8 GPUs)
            "kl_balancing": True,
            "spectral_regularization": 1e-2,
        },
        "description": "NVAE on CIFAR-10: one latent scale (16x16) of 30 groups of 20 channels, 128-channel stem "
        "(256 in the tower), 2 cells per group, SE, residual Normal, spectral regularisation 1e-2.",
        "reference": "Vahdat & Kautz 2020, Table 6; NVlabs/NVAE README (CIFAR-10 command line)",
        "recipe": {**NVAE_RECIPE, "batch_size": 32, "epochs": 400},
    },
    "nvae_celeba64": {
        "class": "NVAE",
        "config": {
            "input_shape": (64, 64, 3),
            "scales": [
                {"groups": 5, "latent_channels": 20},
                {"groups": 10, "latent_channels": 20},
                {"groups": 20, "latent_channels": 20},
            ],
            "channels": 64,
            "encoder_cells_per_group": 2,
            "decoder_cells_per_group": 2,
            "preprocess_blocks": 1,
            "preprocess_cells": 2,
            "postprocess_cells": 2,
            "likelihood": "logistic_mixture",
            "num_mixtures": 10,
            "num_importance_samples": 1,
            "kl_warmup_steps": 34_300,  # 0.3 x 90 epochs x 1,271 updates (batch 16 x 8 GPUs)
            "kl_balancing": True,
            "spectral_regularization": 1e-1,
        },
        "description": "NVAE on CelebA 64: latent scales 8x8, 16x16, 32x32 with 5, 10, 20 groups of 20 channels "
        "(--ada_groups), 64-channel stem (512 at the top), 2 cells per group, spectral regularisation 1e-1.",
        "reference": "Vahdat & Kautz 2020, Table 6; NVlabs/NVAE README (CelebA 64 command line)",
        "recipe": {**NVAE_RECIPE, "batch_size": 16, "epochs": 90},
    },
    # PixelVAE (Gulrajani et al. 2017): a PixelCNN decoder on the VAE's latent features. igul222/PixelVAE's
    # MNIST decoder ends in a 5x5 mask-A convolution and four gated 3x3 residual blocks of 32 channels
    # (DIM_PIX_1 = 32); here five gated blocks of 32 filters, 3x3, the first with mask A.
    "pixelvae_mnist": {
        "class": "VAE",
        "config": {
            "input_shape": (28, 28, 1),
            "hidden_units": (500, 500),
            "latent_dim": 64,
            "activation": "relu",
            "batch_norm": True,
            "likelihood": "bernoulli",
            "decoder_type": "pixelcnn",
            "pixelcnn_filters": 32,
            "pixelcnn_blocks": 5,
            "pixelcnn_kernel_size": 3,
        },
        "description": "PixelVAE on binarized MNIST with the zoo's MLP encoder and decoder (784-500-500-64, BN + ReLU; "
        "the paper's are convolutional): a gated PixelCNN of 5 blocks x 32 filters (3x3) conditioned on the decoder's "
        "last hidden layer, broadcast over the image.",
        "reference": "Gulrajani et al. 2017, sec. 3 (PixelVAE); igul222/PixelVAE pixelvae.py (MNIST PixelCNN width 32)",
    },
}
# The hierarchical PixelVAE: nvae_mnist_small's Ladder-style hierarchy (convolutional latent groups inferred
# top-down through the generative path) with a PixelCNN on its last feature map, so comparing it with
# nvae_mnist_small isolates the autoregressive decoder, and its _no_concatenation twin isolates the image input.
PRESETS["pixelvae_hierarchical_mnist"] = {
    "class": "NVAE",
    "config": {
        **PRESETS["nvae_mnist_small"]["config"],
        "decoder_type": "pixelcnn",
        "pixelcnn_filters": 32,
        "pixelcnn_blocks": 4,
        "pixelcnn_kernel_size": 3,
        "concatenate_input": True,
    },
    "description": "Hierarchical PixelVAE for binarized MNIST: nvae_mnist_small's four convolutional latent groups "
    "(7x7 and 14x14, 8 channels each, shared top-down path) feeding a gated PixelCNN of 4 blocks x 32 filters that "
    "also reads the image. Not a paper configuration.",
    "reference": "Gulrajani et al. 2017, sec. 3.2 (hierarchical PixelVAE); hierarchy as nvae_mnist_small",
    "recipe": {"learning_rate": 1e-3, "batch_size": 32},
}
PRESETS["pixelvae_hierarchical_mnist_no_concatenation"] = {
    **PRESETS["pixelvae_hierarchical_mnist"],
    "config": {**PRESETS["pixelvae_hierarchical_mnist"]["config"], "concatenate_input": False},
    "description": "The ablation of pixelvae_hierarchical_mnist without the concatenation: the same PixelCNN reads "
    "only the latent feature map, not the image, so the decoder is factorised given z.",
}

# vma_omniglot_conv with what Bornschein et al. (2017, sec. 4.2) say of their Omniglot model changed: 26x26
# inputs (the 104x104 crop max-pooled 4x4), untied embedding networks for p(a) and q(a|x) (and h^q apart
# from h^m), q(z|m,x) on x and m stacked as channels through 6 convolutions of 64 maps and a one-hidden-layer
# MLP, the leave-one-out baseline of eq. 8, Adam at 3e-4 (the paper: 1e-4 or 3e-4). Not in the paper, kept
# from vma_omniglot_conv so the two differ only in the above: the other networks' maps, |z|, the matching
# space, K = 4, the posterior MLP's width (256).
PRESETS["vma_omniglot_paper"] = {
    "class": "VMA",
    "config": {
        **PRESETS["vma_omniglot_conv"]["config"],
        "input_shape": (26, 26, 1),
        "shared_embedding": False,
        "query_network": "separate",
        "prior_network": "separate",
        "posterior_input": "concatenated",
        "posterior_filters": (64, 64, 64, 64, 64, 64),
        "posterior_strides": (1, 2, 1, 2, 1, 2),
        "posterior_hidden_units": (256,),
        "vimco_baseline": "arithmetic",
    },
    "description": "Few-shot Omniglot VMA as the paper describes it: 26x26 inputs; separate, untied embedding "
    "networks for p(a), for q(a|x)'s queries and for its memory entries; q(z|m,x) on concat(x, m) through 6 conv "
    "3x3 layers of 64 maps and an MLP with one hidden layer of 256; VIMCO with the leave-one-out arithmetic "
    "baseline; p(z|m) and the decoder as vma_omniglot_conv; memory given per episode (8 characters x 4 targets).",
    "reference": "Bornschein, Mnih, Zoran & Rezende 2017, sec. 4.2 and eq. 8",
    "recipe": {"optimizer": "adam", "learning_rate": 3e-4},
}
