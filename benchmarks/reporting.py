"""What the benchmark scripts share: worker subprocesses, the commit, appending to RESULTS.md."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def git_commit():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def run_worker(script, *args):
    """Runs `python script *args` from the repository root; returns the JSON of its last stdout line."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if out.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def append(report):
    with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
        f.write(report)
