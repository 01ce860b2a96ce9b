# The README's two commands: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

# CPU build of torch first when there is no NVIDIA GPU (an unpinned torch pulls a CUDA build of
# several GB); the package itself only asks for torch>=2.3.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "torch>=2.3"; \
	else $(PY) -m pip install -q torch==2.13.0 || \
	     $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; fi
	$(PY) -m pip install -q -e .
	touch $(STAMP)

# the test extra: pytest and the optional parts the tests exercise (transformers, peft, VADER, Ray,
# Optuna); the demo does not need them
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test]"
	touch $(TEST_STAMP)

# `prefzoo demo` = `prefzoo compare --algos wind sppo iterative_bon --env prefzoo/PrefBandit-Cyclic-v0
# --seeds 0 1 2 --budget 200000 --out results/demo` (+ a tournament), then prints where everything is.
demo: setup
	$(VENV)/bin/prefzoo demo --out results/demo

test: $(TEST_STAMP)
	$(PY) -m pytest -q -n auto --dist loadgroup -m "not slow"

test-all: $(TEST_STAMP)
	$(PY) -m pytest -q -n auto --dist loadgroup

bench: $(TEST_STAMP)
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) logs results *.egg-info
