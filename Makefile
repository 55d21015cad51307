# Two entry points (README Quickstart): `make demo` and `make test`.
# Each creates .venv when missing, installs the project and, where apt is available and the data or
# the browser is absent, the Debian packages it needs. Everything else is plain pip.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONUNBUFFERED := 1

.PHONY: setup system-deps demo test test-fast lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,png]'
	touch $@

system-deps:
	@if [ ! -f $(FMNIST) ] || ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	      dataset-fashion-mnist chromium >/dev/null; \
	  else echo "apt-get not found: install Fashion-MNIST data and chromium yourself (see README)"; fi; \
	fi

setup: system-deps $(VENV)/.installed

# The default job: a multi-objective search on offline Fashion-MNIST, then its Pareto report.
demo: setup
	$(BIN)/ddecs-search run search_spaces/fashion_mnist_quick.yaml --name demo --storage experiments
	$(BIN)/ddecs-search pareto experiments/demo
	$(BIN)/ddecs-search report experiments/demo --out experiments/demo/report.html

test: setup
	$(BIN)/ruff check ddecs_search tests benchmarks
	$(BIN)/ruff format --check ddecs_search tests benchmarks
	$(BIN)/python -m pytest -q -ra tests

test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

lint: setup
	$(BIN)/ruff check ddecs_search tests benchmarks
	$(BIN)/ruff format --check ddecs_search tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
