"""MemVAE vs the parameter-matched VAE on binarized MNIST: same seed, data order, schedule and epochs.

Trains each preset for `--epochs` (resumable: a restart continues from the last finished
epoch), then estimates the test log-likelihood with k importance samples on the full test
split. Writes `<out>/<preset>/result.json` and prints one JSON line per model.

    TFDS_DATA_DIR=../shared/tensorflow_datasets nohup nice -n 10 .venv/bin/python \
        benchmarks/memvae_experiment.py --epochs=20 --out=runs/memvae_experiment > runs/memvae_experiment.log 2>&1 &
"""

import argparse
import json
import os
import subprocess
import time

import keras

import zoo


def train(preset, epochs, out, seed):
    model_path = os.path.join(out, preset, "model.keras")
    if os.path.exists(model_path):
        return keras.saving.load_model(model_path), None
    keras.utils.set_random_seed(seed)
    model = zoo.LatentVariableModel.from_preset(preset, seed=seed)
    model.compile()
    train_data = zoo.data.load("binarized_mnist", split="train", batch_size=100, seed=seed)
    start = time.perf_counter()
    history = model.fit(
        train_data,
        epochs=epochs,
        verbose=2,
        callbacks=[keras.callbacks.BackupAndRestore(os.path.join(out, preset, "backup"))],
    )
    seconds = time.perf_counter() - start
    model.save(model_path)
    return model, {"train_seconds": seconds, "final_train_metrics": {k: v[-1] for k, v in history.history.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="vae_mnist_530_530_100,memvae_mnist_500_500_100")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num_samples", type=int, default=5000)
    parser.add_argument("--max_examples", type=int, default=None, help="evaluate on the first N test examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/memvae_experiment")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    models = {}
    for preset in args.presets.split(","):
        models[preset] = train(preset, args.epochs, args.out, args.seed)
    for preset, (model, training) in models.items():
        test_data = zoo.data.load("binarized_mnist", split="test", batch_size=100, shuffle=False)
        result = zoo.evaluation.dataset_log_likelihood(
            model, test_data, num_samples=args.num_samples, max_examples=args.max_examples, seed=args.seed
        )
        result.update(
            preset=preset,
            parameters=sum(int(w.numpy().size) for w in model.trainable_weights),
            epochs=args.epochs,
            batch_size=100,
            seed=args.seed,
            commit=commit,
            training=training,
        )
        with open(os.path.join(args.out, preset, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
