# `make demo` and `make test` set everything up on a fresh machine (Python 3.11, pip, a
# compiler) and reuse the virtualenv afterwards.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast setup clean bazel-test

DELEGATE_SOURCES := $(shell find delegates tfquant/native -name '*.cc' -o -name '*.h' -o -name '*.inc' -o -name '*.map')

# The editable install also compiles the C++ delegate into the package (setup.py).
$(STAMP): requirements.txt requirements-extras.txt setup.cfg pyproject.toml setup.py $(DELEGATE_SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-extras.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m tfquant.tools.demo

# Tests run on two worker processes (pytest-xdist; TESTFLAGS="-n 0" runs them in one).
TESTFLAGS ?= -n 2 --dist worksteal

# Everything (what CI runs), with the slowest tests' durations at the end.
test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q $(TESTFLAGS) --durations=25 tests

# Without the tests marked slow (training, compiling, fine-tuning, peers' long runs).
test-fast: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q $(TESTFLAGS) -m "not slow" --durations=10 tests

# C++ delegate with Bazel, offline (installs Debian's bazel-bootstrap if missing).
bazel-test:
	.ci/bazel_test.sh

clean:
	rm -rf $(VENV) build *.egg-info tfquant/_tfquant_dsp*.so tfquant/native/_range_search*.so
	rm -f bazel-bin bazel-out bazel-testlogs bazel-$(notdir $(CURDIR))
