# The README's two commands: `make run` (the loopback demo) and `make test`. Each does its own set-up on a
# fresh machine (system packages when root, a venv, the package), so nothing is assumed.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test setup bench clean

$(VENV)/.installed: pyproject.toml
	bash .ci/setup
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/probepair demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) var
