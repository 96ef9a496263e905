"""benchmarks/RESULTS.md is generated from the raw history, never edited by hand."""

import argparse
import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import summarize  # noqa: E402
from tests.conftest import needs_mnist  # noqa: E402
from zoo.runs import provenance  # noqa: E402


def _history():
    return [json.loads(line) for line in (BENCHMARKS / "history.jsonl").read_text().splitlines() if line.strip()]


def test_results_md_is_the_summary_of_the_history():
    assert (BENCHMARKS / "RESULTS.md").read_text() == summarize.render(_history())


def test_every_recorded_run_names_its_machine_commit_and_command():
    for entry in _history():
        machine = entry["machine"]
        assert machine["cpu"] and machine["cores"] >= 1 and isinstance(machine["avx512"], bool)
        assert entry["command"].startswith("python benchmarks/") and len(entry["commit"]) >= 7
        assert entry["wall_seconds"] > 0 and entry["rows"]


def test_the_summary_shows_the_latest_run_on_each_machine():
    def entry(value, cpu):
        return {"benchmark": "train_throughput", "date": "d", "commit": "abc1234", "command": "python benchmarks/x.py",
                "machine": {"cpu": cpu, "cores": 2, "avx2": True, "avx512": cpu.startswith("Intel"), "amx": False},
                "load_average": [0.5, 0.7], "wall_seconds": 90.0, "rows": [{"configuration": "a", "examples/s": value}],
                "notes": {"ratio": "1.20x"}}

    # The latest run on each machine, the most recent machine first; an older run on the same machine is dropped.
    text = summarize.render([entry(999.0, "Intel Xeon"), entry(1234.5, "Intel Xeon"), entry(4321.0, "AMD EPYC")])
    assert "| a | 4,321 |" in text and "| a | 1,234 |" in text and "999" not in text
    assert text.index("### On AMD EPYC, 2 cores, AVX2\n") < text.index("### On Intel Xeon, 2 cores, AVX-512 (no AMX)\n")
    assert "- load average 0.5 at start, 0.7 at end" in text and text.count("- ratio: 1.20x") == 2
    assert "runs of this benchmark in the history: 3\n" in text
    assert "the machines in the history: Intel Xeon, 2 cores, AVX-512 (no AMX); AMD EPYC, 2 cores, AVX2." in text
    assert "- commit `abc1234`, d, wall time 1.5 min\n" in text
    dirty = summarize.render([dict(entry(1.0, "Intel Xeon"), commit="abc1234+dirty")])
    assert "- commit `abc1234+dirty` (run with uncommitted changes: the commit alone does not reproduce it), d," in dirty
    other = dict(entry(1.0, "AMD EPYC"), benchmark="sampling_speed")
    assert "runs of this benchmark in the history: 1; not run on: Intel Xeon" in summarize.render(
        [entry(1.0, "Intel Xeon"), other])
    assert provenance.describe({"cpu": "X", "cores": 4, "avx2": True, "avx512": True, "amx": True}) == "X, 4 cores, AVX-512, AMX"
    assert provenance.describe({"cpu": "X", "cores": 4, "avx2": True, "avx512": True, "amx": True,
                                "avx512_bf16": True}) == "X, 4 cores, AVX-512, AMX"
    assert provenance.describe({"cpu": "Y", "cores": 2, "avx2": True, "avx512": True, "amx": False,
                                "avx512_bf16": True}) == "Y, 2 cores, AVX-512 (no AMX), AVX512_BF16"


def test_a_log_likelihood_speed_worker_imports_the_zoo_of_its_tree(tmp_path):
    import log_likelihood_speed

    # A tree whose zoo says so when imported: the worker must reach it, not this checkout's zoo.
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "__init__.py").write_text('raise ImportError("the zoo of the tree")\n')
    args = argparse.Namespace(num_samples=2, batch_size=2, calls=1)
    with pytest.raises(RuntimeError, match=r"(?s)worker nvae_mnist_small in .* failed:.*ImportError: the zoo of the tree"):
        log_likelihood_speed._run(str(tmp_path), args, "nvae_mnist_small")


def test_machine_reads_this_cpu():
    machine = provenance.machine()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        assert machine["cpu"] == names[0]
        assert machine["avx512"] == (" avx512f" in cpuinfo.read_text())
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split()
        assert machine["avx512_bf16"] == ("avx512_bf16" in flags)
        family = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("cpu family"))
        assert machine["family_model"].split("/")[0] == family.split(":")[1].strip()


def test_machine_reads_the_versions_without_importing_the_frameworks():
    import subprocess

    import keras
    import tensorflow as tf

    machine = provenance.machine()
    assert machine["tensorflow"] == tf.__version__ and machine["keras"] == keras.__version__
    imported = subprocess.run(
        [sys.executable, "-c", "import sys; from zoo.runs import provenance; provenance.machine(); "
         "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))"],
        capture_output=True, text=True, check=True, cwd=pathlib.Path(__file__).parents[1]).stdout.strip()
    assert imported == "[]"


@needs_mnist
@pytest.mark.large  # two training processes at once: half a minute of a loaded 2-core machine
def test_a_training_pinned_to_one_core_and_one_thread_computes_what_the_default_computes():
    # benchmarks/side_by_side.py's two configurations, run at once as the long trainings run: the same seed and
    # images give the same loss up to float rounding (a different seed, batch or model moves it by nats).
    import side_by_side

    default, pinned = side_by_side.run_workers("vae_mnist_500_500_100", ["all", 0])
    assert abs(default["loss"] - pinned["loss"]) < 0.1, (default, pinned)
    assert 150 < default["loss"] < 250, default  # 125 updates from the preset's initial weights


def test_each_training_variant_is_built_the_way_it_names():
    import memvae_vs_vae

    models = {v: memvae_vs_vae.build("vae_mnist_500_500_100", v) for v in ("default", *memvae_vs_vae.VARIANTS)}
    assert {v: (m.dtype_policy.compute_dtype, m.jit_compile) for v, m in models.items()} == {
        "default": ("float32", False), "xla": ("float32", True), "mixed_bfloat16": ("bfloat16", False)}
    assert all(w.dtype == "float32" for m in models.values() for w in m.trainable_weights)


def test_an_unknown_training_variant_is_refused_with_the_known_ones(monkeypatch, capsys):
    import memvae_vs_vae

    monkeypatch.setattr(sys, "argv", ["memvae_vs_vae.py", "--variants=xla,bf16"])
    with pytest.raises(SystemExit) as exit:
        memvae_vs_vae.main()
    assert exit.value.code == 2
    assert "--variants: expected some of xla, mixed_bfloat16; got 'xla,bf16'" in capsys.readouterr().err


def test_a_record_holds_its_start_end_and_thread_settings(monkeypatch):
    import datetime

    import reporting

    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    entry = reporting.record("x", [{"a": 1}], 12.5, (0.1, 0.2), append=False)
    started, ended = (datetime.datetime.strptime(entry[key], "%Y-%m-%d %H:%M:%S UTC") for key in ("started", "ended"))
    assert 12 <= (ended - started).total_seconds() <= 13 and entry["date"] == ended.strftime("%Y-%m-%d %H:%M UTC")
    assert entry["environment"]["TF_NUM_INTRAOP_THREADS"] == "1" and isinstance(entry["environment"]["niceness"], int)
    assert entry["environment"]["cpus"] and entry["machine"]["family_model"]
