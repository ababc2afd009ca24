# Everyday targets. `make demo` and `make test` work on a fresh machine with only Python.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The real MNIST files; tests and benches read them through this variable.
export MNIST_BATCH_DATA ?= $(abspath ../shared/data/mnist/MNIST/raw)

IN ?= sample_inputs
OUT ?= runs/predictions.parquet
LABELS ?=

.PHONY: help venv demo test lint weights classify report bench bench-startup bench-train bench-classify bench-report bench-ray bench-accuracy clean

help:
	@echo "make demo | test | lint | weights | classify IN=dir OUT=file | report IN=file [LABELS=file] | bench | clean"

$(BIN)/mnist-batch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/mnist-batch

demo: venv
	$(BIN)/mnist-batch classify sample_inputs --out runs/demo.parquet --overwrite || [ $$? -eq 3 ]
	$(BIN)/mnist-batch report runs/demo.parquet --labels sample_inputs/labels.csv --labels-root sample_inputs

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check mnist_batch tests bench

weights: venv
	$(BIN)/mnist-batch train --augment --epochs 6 --out mnist_batch/weights $(TRAIN_ARGS)

classify: venv
	$(BIN)/mnist-batch classify $(IN) --out $(OUT) $(ARGS)

report: venv
	$(BIN)/mnist-batch report $(IN) $(if $(LABELS),--labels $(LABELS)) $(ARGS)

bench: bench-startup bench-train bench-classify bench-report bench-ray bench-accuracy

bench-startup: venv
	$(BIN)/python bench/bench_startup.py

bench-train: venv
	$(BIN)/python bench/bench_train.py

bench-classify: venv
	$(BIN)/python bench/bench_classify.py

bench-report: venv
	$(BIN)/python bench/bench_report.py

bench-ray: venv
	$(BIN)/python bench/bench_ray.py

bench-accuracy: venv
	$(BIN)/python bench/bench_accuracy.py

clean:
	rm -rf runs bench/out .pytest_cache
