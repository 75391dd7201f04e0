# Two entry points on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup test demo lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) -m demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint -s pillar.example salt/outpost/defaults.yaml salt/outpost/osfamilymap.yaml

bench: setup
	$(PY) bench/shiv_app_apply.py

clean:
	rm -rf $(VENV) .demo build dist *.egg-info
