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

bench: venv
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/step_breakdown.py
	$(PY) benchmarks/memvae_vs_vae.py
	$(PY) benchmarks/vma_speed.py

clean:
	rm -rf $(VENV) runs
