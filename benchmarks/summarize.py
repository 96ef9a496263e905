"""Regenerates benchmarks/RESULTS.md from benchmarks/history.jsonl: the latest run of each benchmark.

    python benchmarks/summarize.py

The scripts call this after appending a run; run it by hand after editing a description below.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's zoo

from zoo.runs.provenance import describe  # noqa: E402

# What each benchmark measures and how to read it, in the order RESULTS.md shows them.
DESCRIPTIONS = {
    "train_throughput": (
        "Training and evaluation speed of `vae_mnist_500_500_100` against a plain PyTorch peer",
        "Training examples/s at batch 100 on binarized MNIST. Every configuration runs in a fresh "
        "process, configurations interleaved over the rounds; median over rounds. *zoo default* is "
        "exactly `model.compile(); model.fit(zoo.data.load(...))`; *plain Keras* is the same with "
        "`keras.layers.Dense` in place of `zoo.layers.Dense`; the PyTorch peer "
        "(`benchmarks/torch_peer.py`) is an eager loop of the same model, at its default thread count "
        "and at one thread. `log_likelihood k=5000` is examples/s of the importance-sampled "
        "log-likelihood (chunks of 500 samples), beside a PyTorch evaluator doing the same chunked "
        "sampling under `torch.no_grad()`; `% of peak` is matmul FLOP/s over the machine's measured "
        "peak float32 matmul rate. Targets (issue 16): zoo default >= 1.0x the faster PyTorch "
        "setting (goal 1.2x) and >= 1.0x plain Keras; log_likelihood >= 1.2x the PyTorch evaluator.",
    ),
    "step_breakdown": (
        "Where a training step of `vae_mnist_500_500_100` spends its time (one process, interleaved)",
        "Both frameworks are built in one process and timed in alternating blocks of 25 steps, so "
        "machine-load drifts hit every variant alike; ms per step, median over rounds. The `matmul pair` "
        "rows time the model's largest matmul pair (100x784 @ 784x500, 100x500 @ 500x784) as "
        "`tf.matmul`, as `zoo.layers.dense.blocked_matmul` in two row blocks, and in PyTorch: "
        "GFLOP/s and CPU cores busy (process CPU time / wall time).",
    ),
    "memvae_vs_vae": (
        "MemVAE epoch time against the VAE's",
        "Examples/s of the default compiled training step (`model.compile()`, 25 steps per call), models alternating over rounds in one process, "
        "median. Target (issue 16): a MemVAE epoch at most 1.5x a VAE epoch (the paper: at most 2x).",
    ),
    "hierarchies_throughput": (
        "Training speed of the hierarchical presets beside the VAE's",
        "Examples/s of the default compiled training step (`model.compile()`, 25 steps per call) at batch "
        "100 on binarized MNIST, models alternating over rounds in one process, median; each preset's own "
        "bound (the two-layer IWAE at k = 5). The notes give each preset's epoch time over the first one's.",
    ),
    "training_variants": (
        "Ways to compile a training step, measured on this machine",
        "Examples/s of a preset's compiled training step (25 steps per call) built and compiled the default way "
        "(float32, no XLA) and each other way: `xla` is `model.compile(jit_compile=True)`, `mixed_bfloat16` the "
        "Keras dtype policy `zoo.train --mixed_precision=mixed_bfloat16` sets; all in one process, "
        "alternating over rounds, median. Issue 25: whether a cheaper step carries over to the running CPU "
        "before the long runs use it (the notes give each variant over the default).",
    ),
    "sampling_speed": (
        "Sampling speed: an NVAE-style hierarchy against the same hierarchy with a PixelCNN decoder",
        "ms per 28x28 image of `model.sample(16)`: `nvae_mnist_small` (one top-down pass), "
        "`pixelvae_hierarchical_mnist` (its PixelCNN drawn pixel by pixel in one compiled loop) and the "
        "no-concatenation ablation (the PixelCNN without the image input: one pass), interleaved in one "
        "process, median. For context only (another model, image size and machine): the NVAE paper's ratio at "
        "batch 16 on a Titan V (PixelCNN++ / NVAE) is about 1,700x.",
    ),
    "log_likelihood_speed": (
        "Evaluation speed of the convolutional hierarchies, before and after a change",
        "Samples x images per second of `model.log_likelihood(x, k, seed)` for `nvae_mnist_small` and "
        "`pixelvae_hierarchical_mnist` (weights from savedmodels/, the first binarized-MNIST test images), "
        "with the code of two commits (`before`, `after`), each measurement a fresh process, commits and "
        "models alternating over the rounds; median call. Both commits draw the same samples from the same "
        "seeds, so their estimates must agree (the notes give the largest difference). Issue 25: NVAE's "
        "bottom-up pass once per image per call, not once per chunk of samples.",
    ),
    "side_by_side": (
        "Two trainings on a 2-core CPU: one process with every core, or one process per core",
        "Training updates/s at batch 32 on binarized MNIST: one process with TensorFlow's default thread pools, "
        "against one process per core run at once, each pinned to its core with one intra-op and one inter-op "
        "thread (the total is the sum of theirs); fresh processes, configurations interleaved over the rounds, "
        "median. Issue 25: whether the hierarchical PixelVAE's 20-epoch run and its 10-epoch ablation finish sooner side by "
        "side, one core each. Both configurations train the same updates from the same seed, so their losses "
        "agree up to rounding (notes).",
    ),
    "vma_speed": (
        "Hard (VMA) vs soft memory addressing as the memory grows",
        "Training updates/s of `vma_omniglot_conv` and the soft-attention baseline with the memory "
        "given per batch, one process. Target (issue 16): VMA ahead of soft attention from |M| = 32.",
    ),
}


def _cell(value):
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(rows):
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _uncommitted(commit):
    # `reporting.git_commit` marks a checkout whose tracked code differed from its commit.
    if commit.endswith("+dirty"):
        return " (run with uncommitted changes: the commit alone does not reproduce it)"
    return ""


def render(entries):
    # The latest run of each benchmark on each machine: speed is a property of the processor too.
    latest = {}
    for entry in entries:
        latest.setdefault(entry["benchmark"], {}).pop(describe(entry["machine"]), None)
        latest[entry["benchmark"]][describe(entry["machine"])] = entry  # re-inserted: the most recent machine last
    machines = list(dict.fromkeys(describe(entry["machine"]) for entry in entries))
    parts = [
        "# Benchmark results\n",
        "Generated by `python benchmarks/summarize.py` from `benchmarks/history.jsonl` (every run's raw "
        "rows, appended by the scripts): the latest run of each benchmark on each machine, most recent "
        "first. Timings on a shared 2-core machine are noisy: compare ratios inside one run, never across "
        "runs or machines. The machine line is read from the machine that ran the benchmark; the machines "
        "in the history: " + "; ".join(machines) + ".\n",
    ]
    order = list(DESCRIPTIONS) + sorted(set(latest) - set(DESCRIPTIONS))
    for name in order:
        if name not in latest:
            continue
        title, text = DESCRIPTIONS.get(name, (name, ""))
        runs = sum(e["benchmark"] == name for e in entries)
        missing = [machine for machine in machines if machine not in latest[name]]
        parts.append(f"## {title}\n\n{text}\n\n- runs of this benchmark in the history: {runs}"
                     + (f"; not run on: {'; '.join(missing)}" if missing else "") + "\n")
        for machine, entry in reversed(latest[name].items()):
            notes = "".join(f"- {key}: {_cell(value)}\n" for key, value in entry["notes"].items())
            parts.append(
                f"### On {machine}\n\n"
                f"- command: `{entry['command']}`\n"
                f"- commit `{entry['commit']}`{_uncommitted(entry['commit'])}, {entry['date']}, "
                f"wall time {entry['wall_seconds'] / 60:.1f} min\n"
                f"- load average {entry['load_average'][0]:.1f} at start, {entry['load_average'][1]:.1f} at end\n\n"
                f"{table(entry['rows'])}\n\n{notes}"
            )
    return "\n".join(parts)


def write():
    entries = []
    if os.path.exists(os.path.join(HERE, "history.jsonl")):
        with open(os.path.join(HERE, "history.jsonl")) as f:
            entries = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(render(entries))


if __name__ == "__main__":
    write()
