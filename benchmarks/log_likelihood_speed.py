"""Evaluation speed of the convolutional hierarchies: samples x images per second of `log_likelihood`, two commits.

    python benchmarks/log_likelihood_speed.py --before=REV [--after=REV --num_samples=20 --batch_size=100
        --calls=3 --rounds=2 --pause_pids=PID,... --no-append]

Times `model.log_likelihood(x, num_samples, seed)` of `nvae_mnist_small` and
`pixelvae_hierarchical_mnist` (the weights in savedmodels/<name>, the first `--batch_size`
binarized-MNIST test images) with the code of `--after` (default: this checkout) and of `--before`
(each commit in a temporary `git worktree`, removed at the end). Every measurement is a fresh
process that imports `zoo` from its tree (checked), traces with one untimed call, then times
`--calls` calls; processes alternate between the commits and the models over `--rounds`
rounds, so drifts of machine load hit both alike. The rate is num_samples x batch_size over
the median call. Both commits draw the same samples from the same seeds, so each worker also
reports its estimate, and the notes give the two commits' largest difference.

`--pause_pids` stops those processes (SIGSTOP) while measuring, e.g. a training run sharing
the machine, and always resumes them (SIGCONT), also on errors and on SIGTERM / SIGINT.

Appends the raw rows to benchmarks/history.jsonl and regenerates benchmarks/RESULTS.md.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# `reporting` puts this checkout's zoo first on sys.path, so only the parent imports it (in `main`): a worker
# must import its tree's zoo.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("nvae_mnist_small", "pixelvae_hierarchical_mnist")


def worker(tree, preset, num_samples, batch_size, calls):
    import numpy as np

    import zoo

    where = os.path.realpath(zoo.__file__)
    if not where.startswith(os.path.realpath(tree) + os.sep):
        raise RuntimeError(f"imported zoo from {where}, expected it under {tree}")
    model = zoo.LatentVariableModel.from_preset(os.path.join(ROOT, "savedmodels", preset))
    data = zoo.data.load("binarized_mnist", split=f"test[:{batch_size}]", batch_size=batch_size, shuffle=False)
    x = np.concatenate(list(data.as_numpy_iterator()))
    start = time.perf_counter()
    log_px = np.asarray(model.log_likelihood(x, num_samples=num_samples, seed=0))  # traces the chunks
    first = time.perf_counter() - start
    seconds = []
    for call in range(calls):
        start = time.perf_counter()
        np.asarray(model.log_likelihood(x, num_samples=num_samples, seed=call + 1))
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "first_call": first, "mean_log_likelihood": float(log_px.mean()),
            "log_likelihood": log_px.tolist(), "zoo": where}


def _git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()


def _run(tree, args, preset):
    command = [sys.executable, os.path.abspath(__file__), "--worker", tree, f"--preset={preset}",
               f"--num_samples={args.num_samples}", f"--batch_size={args.batch_size}", f"--calls={args.calls}"]
    # PYTHONPATH comes before the editable install of this checkout, so the worker imports `tree`'s zoo.
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": tree, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if out.returncode != 0:
        raise RuntimeError(f"worker {preset} in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _interrupted(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")  # unwinds through the finally that resumes the paused processes


def measure(args, trees):
    results = {(preset, version): [] for preset in PRESETS for version in trees}
    for round_index in range(args.rounds):
        for preset in PRESETS:
            # Alternate which commit goes first, so neither always runs in the other's wake.
            for version in (("before", "after") if round_index % 2 == 0 else ("after", "before")):
                result = _run(trees[version], args, preset)
                results[preset, version].append(result)
                print(f"round {round_index + 1}/{args.rounds} {preset} {version}: "
                      f"{[round(s, 2) for s in result['seconds']]} s per call", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="the commit to compare with (e.g. the parent of a speed-up)")
    parser.add_argument("--after", help="the commit to time against it (default: this checkout, as it is)")
    parser.add_argument("--num_samples", type=int, default=20, help="importance samples k per image")
    parser.add_argument("--batch_size", type=int, default=100, help="images per call (zoo.evaluate's default)")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per worker")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pause_pids", default="", help="comma-separated pids to SIGSTOP while measuring")
    parser.add_argument("--no-append", action="store_true", help="print only, do not record the run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.preset, args.num_samples, args.batch_size, args.calls)))
        return
    import reporting

    if not args.before:
        parser.error("--before is required")
    commits = {"before": _git("rev-parse", "--short", args.before),
               "after": _git("rev-parse", "--short", args.after) if args.after else reporting.git_commit()}
    pids = [int(p) for p in args.pause_pids.split(",") if p]
    start, load_before = time.perf_counter(), os.getloadavg()
    trees = {"after": ROOT} if not args.after else {}
    for version in ("before", "after"):
        if version not in trees:
            trees[version] = tempfile.mkdtemp(prefix=f"zoo-{commits[version]}-")
            os.rmdir(trees[version])  # git worktree add creates it
            _git("worktree", "add", "--detach", trees[version], commits[version])
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    paused = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            paused.append(pid)
        results = measure(args, trees)
    finally:
        for pid in paused:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for tree in trees.values():
            if tree != ROOT:
                _git("worktree", "remove", "--force", tree)
    wall, load_after = time.perf_counter() - start, os.getloadavg()

    rows, notes = [], {}
    rate = {}
    for (preset, version), runs in results.items():
        seconds = [s for run in runs for s in run["seconds"]]
        rate[preset, version] = args.num_samples * args.batch_size / statistics.median(seconds)
        rows.append({
            "preset": preset,
            "code": f"{version} ({commits[version]})",
            "samples x images/s (median)": round(rate[preset, version], 1),
            "per call (s)": ", ".join(f"{s:.2f}" for s in seconds),
            "first call, tracing (s)": round(statistics.median(run["first_call"] for run in runs), 1),
            "mean log p(x), seed 0": round(runs[0]["mean_log_likelihood"], 4),
        })
    for preset in PRESETS:
        notes[f"{preset}: after / before"] = f"{rate[preset, 'after'] / rate[preset, 'before']:.2f}x"
        difference = max(abs(a - b) for a, b in zip(results[preset, "after"][0]["log_likelihood"],
                                                    results[preset, "before"][0]["log_likelihood"]))
        notes[f"{preset}: largest |log p(x) after - before| over the images, same seed (nats)"] = f"{difference:.2g}"
    notes["k, images per call, timed calls per worker, rounds"] = (
        f"{args.num_samples}, {args.batch_size}, {args.calls}, {args.rounds}")
    notes["paused while measuring"] = f"{len(paused)} process(es) (SIGSTOP, then SIGCONT)" if paused else "nothing"
    reporting.record("log_likelihood_speed", rows, wall, (load_before[0], load_after[0]), notes,
                     append=not args.no_append)


if __name__ == "__main__":
    main()
