# Two entry points: `make train` (main job) and `make test` (test suite); both create the venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_TFDS := $(abspath ../shared/tensorflow_datasets)
export TFDS_DATA_DIR ?= $(if $(wildcard $(SHARED_TFDS)),$(SHARED_TFDS),$(HOME)/tensorflow_datasets)
export TF_CPP_MIN_LOG_LEVEL ?= 2
EPOCHS ?= 5

.PHONY: venv train test test-large bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(PY) -m zoo.train --preset=vae_mnist_500_500_100 --dataset=binarized_mnist --epochs=$(EPOCHS) --model_dir=runs/quickstart
	$(PY) -m zoo.evaluate --model_dir=runs/quickstart --dataset=binarized_mnist --split=test --num_samples=5000

test: venv
	$(PY) -m pytest -q

test-large: venv
	$(PY) -m pytest -q -m large

bench: venv
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/step_breakdown.py
	$(PY) benchmarks/memvae_vs_vae.py
	$(PY) benchmarks/vma_speed.py

clean:
	rm -rf $(VENV) runs
