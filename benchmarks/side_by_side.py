"""Two trainings on a small CPU: one after the other with every core, or side by side with one core each.

    python benchmarks/side_by_side.py [--preset=pixelvae_hierarchical_mnist] [--rounds=2] [--no-append]

Each configuration trains the preset (batch 32, binarized MNIST, the same seed and images) in fresh
processes, interleaved over `--rounds` rounds:

- *one process, all cores*: TensorFlow's default thread pools;
- *one process per core*: as many processes as cores, run at once, each pinned to its core
  (`os.sched_setaffinity`) with one intra-op and one inter-op thread
  (`tf.config.threading`); the total is the sum of their updates/s.

Both train the same updates from the same seed, so their training losses must agree up to float
rounding (the notes give the largest difference): the thread count changes how a sum is split, not
what is computed. Appends the raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import reporting

BATCH = 32
CALL = 25  # steps per compiled call (the model's default)
WARMUP_CALLS = 1
TIMED_CALLS = 4
ALL_CORES = "one process, all cores"
PER_CORE = "one process per core, 1 thread each"


def worker(preset, core):
    """Trains `preset` for WARMUP_CALLS + TIMED_CALLS calls; pinned to `core` with one thread unless it is None."""
    import tensorflow as tf

    if core is not None:
        os.sched_setaffinity(0, {core})
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import zoo

    keras.utils.set_random_seed(0)
    model = zoo.LatentVariableModel.from_preset(preset)
    model.compile(steps_per_execution=CALL)
    data = zoo.data.load("binarized_mnist", split=f"train[:{BATCH * CALL * (WARMUP_CALLS + TIMED_CALLS)}]",
                         batch_size=BATCH, shuffle=False)
    model.fit(data.take(CALL * WARMUP_CALLS), verbose=0)  # compiles
    start = time.perf_counter()
    history = model.fit(data.skip(CALL * WARMUP_CALLS), verbose=0)
    seconds = time.perf_counter() - start
    return {"updates_per_second": CALL * TIMED_CALLS / seconds, "loss": history.history["loss"][-1]}


def run_workers(preset, cores):
    """Runs one worker per entry of `cores` at once; returns their results."""
    processes = [subprocess.Popen([sys.executable, __file__, f"--preset={preset}", f"--worker={core}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=reporting.ROOT,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
                 for core in cores]
    results = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"worker failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="pixelvae_hierarchical_mnist")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="Print the results only.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.preset, None if args.worker == "all" else int(args.worker))))
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit(f"side_by_side.py: needs at least 2 cores, this process may use {len(cores)}")
    start, load_before = time.perf_counter(), os.getloadavg()
    runs = {ALL_CORES: [], PER_CORE: []}
    for round_index in range(args.rounds):
        for name, pinned in ((ALL_CORES, ["all"]), (PER_CORE, cores)):
            runs[name].append(run_workers(args.preset, pinned))
            print(f"round {round_index + 1}/{args.rounds} {name}: {runs[name][-1]}", flush=True)
    wall, load_after = time.perf_counter() - start, os.getloadavg()

    def total(name):
        return statistics.median(sum(r["updates_per_second"] for r in results) for results in runs[name])

    rows = [{"configuration": name, "preset": args.preset, "processes": len(runs[name][0]),
             "updates/s per process": statistics.median(r["updates_per_second"] for rs in runs[name] for r in rs),
             "updates/s, all processes": total(name), "vs one process": f"{total(name) / total(ALL_CORES):.2f}x"}
            for name in runs]
    losses = [r["loss"] for results in runs.values() for rs in results for r in rs]
    notes = {"per round, updates/s of all processes": "; ".join(
                 f"{name}: " + ", ".join(f"{sum(r['updates_per_second'] for r in rs):.2f}" for rs in runs[name])
                 for name in runs),
             f"training loss after {CALL * (WARMUP_CALLS + TIMED_CALLS)} updates, largest difference between "
             f"processes": f"{max(losses) - min(losses):.2e} (of {statistics.median(losses):.4f})"}
    reporting.record("side_by_side", rows, wall, (load_before[0], load_after[0]), notes, append=not args.no_append)


if __name__ == "__main__":
    main()
