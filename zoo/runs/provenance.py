"""Where a number was measured: the commit of the code, the machine (CPU model, cores, vector units, software).

Every recorded result (a benchmark row, an experiment's JSON, a packaged model's metrics)
takes its provenance from here, read off the machine and the checkout, never typed.
"""

import importlib.metadata
import os
import platform
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def commit(exclude=()):
    """The checkout's short commit hash, with `+dirty` when tracked files (but `exclude`, paths relative to the
    repository root) differ from it: the numbers are then not of that commit. "unknown" outside a git checkout."""
    git = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE)  # noqa: E731
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown"
    root = git("rev-parse", "--show-toplevel").stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            *(f":!{path}" for path in exclude)], capture_output=True, text=True, cwd=root).stdout
    return head.stdout.strip() + ("+dirty" if dirty.strip() else "")


def machine():
    """The CPU as the machine reports it (model name, vendor, cores available, AVX2 / AVX-512 / AMX) and the
    versions of Python, TensorFlow, Keras and (if installed) PyTorch."""
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
    # Read from the installed distributions, not by importing them (PyTorch in a TensorFlow process costs seconds).
    for name, distributions in (("tensorflow", ("tensorflow", "tensorflow-cpu")), ("keras", ("keras",)),
                                ("torch", ("torch",))):
        for distribution in distributions:
            try:
                versions[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                pass
    return {
        "cpu": info.get("model name", platform.processor() or "unknown"),
        "vendor": info.get("vendor_id", "unknown"),
        "cores": cores,
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "amx": "amx_tile" in flags,
        # What tells the AMD EPYCs apart (one has bfloat16 instructions), and so mixed_bfloat16's speed.
        "avx512_bf16": "avx512_bf16" in flags,
        "family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
        **versions,
    }


def describe(m):
    """One line of `machine()`: `AMD EPYC, 2 cores, AVX-512 (no AMX), AVX512_BF16` (the last where recorded).

    AVX512_BF16 is named only without AMX: every AMX processor has it, and records made before it was
    recorded must describe the same machine the same way.
    """
    vector = "AVX-512" if m["avx512"] else "AVX2" if m["avx2"] else "no AVX2"
    amx = ", AMX" if m["amx"] else " (no AMX)" if m["avx512"] else ""
    bf16 = ", AVX512_BF16" if m.get("avx512_bf16") and not m["amx"] else ""
    return f"{m['cpu']}, {m['cores']} cores, {vector}{amx}{bf16}"
