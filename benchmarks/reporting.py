"""What the benchmark scripts share: worker subprocesses and the history file, with each run's provenance.

Every run appends one JSON line to `benchmarks/history.jsonl`: the benchmark's name, date,
commit, command, machine (`zoo.runs.provenance`, read from the machine itself), load, wall time,
the raw rows and notes. `benchmarks/RESULTS.md` is then regenerated from that file (`summarize.py`): the
latest run of each benchmark. Nothing in RESULTS.md is written by hand.
"""

import datetime
import json
import os
import shlex
import subprocess
import sys

import summarize

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HISTORY = os.path.join(HERE, "history.jsonl")
sys.path.insert(0, ROOT)  # this checkout's zoo, whose commit is recorded

from zoo.runs import provenance  # noqa: E402


def git_commit():
    """The checkout's short commit hash, `+dirty` when tracked code differs from it (the history and its summary
    excepted: a run appends to them)."""
    return provenance.commit(exclude=("benchmarks/history.jsonl", "benchmarks/RESULTS.md"))


def run_worker(script, *args):
    """Runs `python script *args` from the repository root; returns the JSON of its last stdout line."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if out.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS",
                    "XLA_FLAGS")


def record(benchmark, rows, wall_seconds, load, notes=None, append=True):
    """Appends one run (rows: a list of flat dicts) to the history and regenerates RESULTS.md; returns the entry."""
    now = datetime.datetime.now(datetime.timezone.utc)
    entry = {
        "benchmark": benchmark,
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        # To the second, so that two runs can be shown not to have overlapped.
        "started": (now - datetime.timedelta(seconds=wall_seconds)).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "ended": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": git_commit(),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        # What the command line does not show but the timings depend on.
        "environment": {
            **{name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
            "niceness": os.nice(0),
            "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        },
        "machine": provenance.machine(),
        "load_average": [round(x, 2) for x in load],
        "wall_seconds": round(wall_seconds, 1),
        "rows": rows,
        "notes": notes or {},
    }
    print(json.dumps(entry, indent=1))
    if append:
        with open(HISTORY, "a") as f:
            f.write(json.dumps(entry) + "\n")
        summarize.write()
    return entry
