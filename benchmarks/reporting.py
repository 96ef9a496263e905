"""What the benchmark scripts share: the machine's description, worker subprocesses, the history file.

Every run appends one JSON line to `benchmarks/history.jsonl`: the benchmark's name, date,
commit, command, machine (read from the machine itself), load, wall time, the raw rows and
notes. `benchmarks/RESULTS.md` is then regenerated from that file (`summarize.py`): the
latest run of each benchmark. Nothing in RESULTS.md is written by hand.
"""

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HISTORY = os.path.join(HERE, "history.jsonl")


def git_commit():
    """The short commit hash, with `+dirty` when tracked code differs from it (the numbers are then not of that commit)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":!benchmarks/history.jsonl", ":!benchmarks/RESULTS.md"],
                           capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def machine():
    """The CPU as the machine reports it: model name, cores available, vector extensions; and the software."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {"python": platform.python_version()}
    for module in ("tensorflow", "keras", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return {
        "cpu": info.get("model name", platform.processor() or "unknown"),
        "vendor": info.get("vendor_id", "unknown"),
        "cores": cores,
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "amx": "amx_tile" in flags,
        **versions,
    }


def describe(m):
    """One line: `AMD EPYC, 2 cores, AVX-512 (no AMX)`."""
    vector = "AVX-512" if m["avx512"] else "AVX2" if m["avx2"] else "no AVX2"
    amx = ", AMX" if m["amx"] else " (no AMX)" if m["avx512"] else ""
    return f"{m['cpu']}, {m['cores']} cores, {vector}{amx}"


def run_worker(script, *args):
    """Runs `python script *args` from the repository root; returns the JSON of its last stdout line."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if out.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def record(benchmark, rows, wall_seconds, load, notes=None, append=True):
    """Appends one run (rows: a list of flat dicts) to the history and regenerates RESULTS.md; returns the entry."""
    entry = {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "machine": machine(),
        "load_average": [round(x, 2) for x in load],
        "wall_seconds": round(wall_seconds, 1),
        "rows": rows,
        "notes": notes or {},
    }
    print(json.dumps(entry, indent=1))
    if append:
        with open(HISTORY, "a") as f:
            f.write(json.dumps(entry) + "\n")
        import summarize

        summarize.write()
    return entry
