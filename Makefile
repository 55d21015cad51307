# Two entry points (README Quickstart): `make demo` and `make test`.
# Each creates .venv when missing, installs the project and, where apt is available and the data is
# absent, the Debian package with the offline Fashion-MNIST data. Chromium is installed separately and
# only by the targets that use it (`make test` for the browser test; `make browser` for PNG export): it
# never blocks the data or the demo, and where it cannot be installed (Ubuntu ships it only as a snap)
# the browser test skips with the reason. Everything else is plain pip.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONUNBUFFERED := 1
# root runs apt-get directly, anyone else through sudo (which may ask for a password)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	--no-install-recommends
HAVE_BROWSER := command -v chromium || command -v chromium-browser || command -v google-chrome
# pytest-xdist processes for `make test` (0: one process). Two on a 2-core CPU: most slow tests wait on Ray
# and driver start-up, so two overlap (19 -> 15 min here); each test file stays in one process, which
# keeps a module's Ray fixture to one cluster. Every Ray a test starts picks free loopback ports.
TEST_WORKERS ?= 2
# pip constraints: the package versions the suite last passed with (see the file); empty for the newest
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: setup data browser system-deps demo test test-fast lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install -q $(PIP_C) torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q $(PIP_C) -e '.[dev,png]'
	touch $@

# The offline data the demo and the tests need (a failure here stops: nothing works without it).
data:
	@if [ ! -f $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing the Debian package dataset-fashion-mnist (sudo may ask for your password)"; \
	    $(APT_INSTALL) dataset-fashion-mnist >/dev/null; \
	  else echo "apt-get not found: get Fashion-MNIST yourself (ddecs-search datasets says how)"; fi; \
	fi

# Chromium for the browser test and PNG export only. Never fails: without it those two are skipped
# (the test says why) and everything else works.
browser:
	@if ! { $(HAVE_BROWSER); } >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && $(APT_INSTALL) chromium >/dev/null; then :; else \
	    echo "note: Chromium could not be installed (Ubuntu ships it as a snap: sudo snap install chromium)."; \
	    echo "note: the browser test of the report skips and 'report --png' is unavailable; all else works."; \
	  fi; \
	fi

system-deps: data browser

setup: data $(VENV)/.installed

# The default job: a multi-objective search on offline Fashion-MNIST, then its Pareto report.
# Rerunnable: a second `make demo` resumes an unfinished experiments/demo or shows the finished one.
demo: setup
	$(BIN)/ddecs-search run search_spaces/fashion_mnist_quick.yaml --name demo --storage experiments \
	  --resume-if-exists
	$(BIN)/ddecs-search pareto experiments/demo
	$(BIN)/ddecs-search report experiments/demo --out experiments/demo/report.html

test: setup browser
	$(BIN)/ruff check ddecs_search tests benchmarks
	$(BIN)/ruff format --check ddecs_search tests benchmarks
	$(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile tests

test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

lint: setup
	$(BIN)/ruff check ddecs_search tests benchmarks
	$(BIN)/ruff format --check ddecs_search tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
