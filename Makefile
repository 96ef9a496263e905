# Two entry points: `make train` (main job) and `make test` (test suite); both create the venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_TFDS := $(abspath ../shared/tensorflow_datasets)
export TFDS_DATA_DIR ?= $(if $(wildcard $(SHARED_TFDS)),$(SHARED_TFDS),$(HOME)/tensorflow_datasets)
export TF_CPP_MIN_LOG_LEVEL ?= 2
EPOCHS ?= 5
# `make train` evaluates k = 5000 on the first EVAL_EXAMPLES test images; `make train EVAL_EXAMPLES=` takes
# all 10,000 (about ten times as long).
EVAL_EXAMPLES ?= 1000
RUN_DIR ?= runs/quickstart

.PHONY: venv train test test-large bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(PY) -m zoo.train --preset=vae_mnist_500_500_100 --dataset=binarized_mnist --epochs=$(EPOCHS) --model_dir=$(RUN_DIR)
	$(PY) -m zoo.evaluate --model_dir=$(RUN_DIR) --split=test --num_samples=5000 $(if $(EVAL_EXAMPLES),--max_examples=$(EVAL_EXAMPLES))

# One pytest worker per core; a test file stays on one worker, so its module fixtures are built once.
test: venv
	$(PY) -m pytest -q -n auto --dist loadfile --durations=25

test-large: venv
	$(PY) -m pytest -q -n auto --dist loadfile -m large

# Every standing benchmark of benchmarks/RESULTS.md with the flags of its recorded runs (hours on 2 cores; run it
# alone). log_likelihood_speed compares two commits around one change: run by hand with them.
bench: venv
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/train_throughput.py --rounds=2
	$(PY) benchmarks/step_breakdown.py --rounds=20
	$(PY) benchmarks/memvae_vs_vae.py --rounds=20
	$(PY) benchmarks/memvae_vs_vae.py --benchmark=hierarchies_throughput \
		--presets=vae_mnist_500_500_100,iwae_mnist_2layer,ladder_vae_mnist,nvae_mnist_small --rounds=5
	$(PY) benchmarks/memvae_vs_vae.py --benchmark=training_variants --presets=pixelvae_hierarchical_mnist \
		--batch_size=32 --variants=mixed_bfloat16,xla --rounds=3
	$(PY) benchmarks/sampling_speed.py
	$(PY) benchmarks/side_by_side.py
	$(PY) benchmarks/vma_speed.py

clean:
	rm -rf $(VENV) runs
