"""The run library under the command-line apps: everything a training run is, except its flags.

    errors       the one-line errors a run reports (bad choice, full disk, divergence)
    files        a run directory: layout, lock, atomic writes, the resume check
    config       choices -> the resolved configuration config.json holds; the model and optimizer it builds
    data         a run's splits, episodes and per-epoch training stream
    state        epoch checkpoints, best weights, loading a trained run
    callbacks    the NaN guard, the epoch keeper, the sample grid
    training     strategies and `train(config, model_dir)`
    logs         the learning curve and wall time a run logged
    evaluation   the importance-sampled log-likelihood of a trained run
    export       a model as a versioned SavedModel for TF Serving
    packaging    a trained run as a model of the zoo: SavedModel, metrics, learning curve and card
    search       hyperparameter search with keras-tuner, resumable; `hypermodel` holds its Keras side
    provenance   where a number was measured: the commit and the machine

From Python:

    from zoo.runs import config, training
    run = config.resolve_config("vae_mnist_500_500_100", "binarized_mnist", epochs=10)
    training.train(run, "runs/vae")

Nothing here parses flags, and importing a module imports TensorFlow only where it says so
(`callbacks`, `hypermodel`), so that an app can check its options first.
"""
