"""Named model configurations: plain data, built with `Model.from_preset(name, **overrides)`.

Each preset: `class` (registered zoo class name), `config` (constructor kwargs),
`description`, `reference`, and optionally `recipe` (the paper's training schedule, for
reference and for the training CLI).
"""

# thu-ml/MEM_DGM's MNIST schedule: Adam 1e-3, batch 100, lr x 0.998 per epoch after epoch
# 1000, 3000 epochs; the final model is trained on train + validation.
MEM_DGM_MNIST_RECIPE = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 100,
    "epochs": 3000,
    "decay_start_epoch": 1000,
    "decay_per_epoch": 0.998,
    "train_split": "train+validation",
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
    },
}
