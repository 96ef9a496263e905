"""How the untied addressing networks of VMA move in the first updates of MNIST "train to recall".

Trains `vma_mnist_recall` with `shared_embedding=False` (h^q = h^m + c r) as
`experiments/vma_recall.py` does (Adam 1e-3, one 256-image recall episode per update, the
same seeds), and every `--every` updates scores one fixed training-set episode (seed 12345):
recall (argmax_a q(a|x) is the stored copy), the mean q of the copy and its rank, the entropy
of q(a|x), how many distinct entries are argmaxes, the norms of h^m(x), h^q(x) and of the
residual h^q(x) - h^m(x) = c r(x), how constant that residual is across queries
(||mean r|| / mean ||r||) and cos(h^q(x), h^m(x)).

    PYTHONPATH=. TFDS_DATA_DIR=/work/shared/tensorflow_datasets python experiments/vma_untied_dynamics.py \
        --seeds=5,6,7,8,9,10,11,12 --overrides='{"residual_scale": 1.0}' --out=experiments/results/vma_untied_dynamics_c1.json
    python experiments/results_md.py --write     # RESULTS.md's table from the committed JSON files
"""
import json
import os
import shlex
import sys
import time

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's zoo

from zoo.cli import run_app  # noqa: E402
from zoo.runs import provenance  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0"], "Seeds of the model and the episode stream, as in vma_recall.py.")
flags.DEFINE_integer("steps", 1000, "Updates per seed.")
flags.DEFINE_integer("every", 250, "Updates between measurements (a multiple of steps_per_execution, 25).")
flags.DEFINE_string("overrides", "{}", "JSON dict of preset overrides, e.g. residual_scale.")
flags.DEFINE_string("out", "", "JSON output: {seed: [measurements]}.")
flags.DEFINE_bool("verbose_rows", True, "Print every measurement.")


def stats(layer, probe, step, logs):
    x, mem, addr = probe["x"], probe["memory"], probe["addresses"].numpy()
    log_q = layer.posterior_logits(x, layer.memory_keys(mem)).numpy()
    am = log_q.argmax(1)
    hm = layer.memory_embedding(x).numpy()
    eq = layer.query_embedding(x).numpy()
    r = eq - hm
    counts = np.bincount(am, minlength=256)
    n = np.linalg.norm
    return dict(step=step, recall=float(np.mean(am == addr)),
                p_copy=float(np.mean(np.exp(log_q[np.arange(256), addr]))),
                rank_copy=float(np.mean((log_q > log_q[np.arange(256), addr][:, None]).sum(1))),
                entropy=float(-np.mean(np.sum(np.exp(log_q) * log_q, 1))),
                distinct=int((counts > 0).sum()), top_share=float(counts.max() / 256),
                hm_norm=float(n(hm, axis=1).mean()), eq_norm=float(n(eq, axis=1).mean()),
                r_norm=float(n(r, axis=1).mean()),
                r_const=float(n(r.mean(0)) / (n(r, axis=1).mean() + 1e-12)),
                cos_q_m=float(np.mean(np.sum(eq * hm, 1) / (n(eq, axis=1) * n(hm, axis=1) + 1e-12))),
                # Keras's running means over the updates so far:
                address_kl=float((logs or {}).get("address_kl", np.nan)), bound=float((logs or {}).get("bound", np.nan)))


def main(argv):
    del argv
    import keras
    import zoo
    images = next(iter(zoo.data.load("binarized_mnist", "train", batch_size=50_000, shuffle=False))).numpy()
    probe = next(iter(zoo.data.episodes.recall_episodes(images, memory_size=256, num_episodes=1, seed=12345, with_labels=True)))
    overrides = json.loads(FLAGS.overrides)
    # Before --out is first written: the code of this process, not the rewritten results file, makes it dirty.
    commit, cpu = provenance.commit(), provenance.machine()["cpu"]
    allrows, seconds = {}, {}
    for seed in map(int, FLAGS.seeds):
        train = zoo.data.episodes.recall_episodes(images, memory_size=256, seed=seed)
        model = zoo.VMA.from_preset("vma_mnist_recall", seed=seed,
                                    shared_embedding=False, **overrides)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        rows = allrows[seed] = [stats(model.address, probe, 0, None)]

        class Probe(keras.callbacks.Callback):
            step = 0

            def on_train_batch_end(self, batch, logs=None):
                Probe.step = batch + 1
                if Probe.step % FLAGS.every == 0:
                    rows.append(stats(model.address, probe, Probe.step, logs))
                    if FLAGS.verbose_rows:
                        print(seed, json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)

        start = time.time()
        model.fit(train, epochs=1, steps_per_epoch=FLAGS.steps, verbose=0, callbacks=[Probe()])
        seconds[seed] = time.time() - start
        f = rows[-1]
        print(f"SEED {seed} seconds {seconds[seed]:.0f} recall {f['recall']:.3f} p_copy {f['p_copy']:.3f} "
              f"distinct {f['distinct']} entropy {f['entropy']:.2f} akl {f['address_kl']:.2f}", flush=True)
        if FLAGS.out:
            with open(FLAGS.out, "w") as f:
                json.dump({"command": shlex.join(["python", *sys.argv]), "commit": commit,
                           "cpu": cpu, "overrides": overrides, "seconds": seconds,
                           "runs": allrows}, f, indent=1)


if __name__ == "__main__":
    run_app(main)
