# Two entry points on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Prism, which checks the tests' Cloudflare API traffic against Cloudflare's spec, from npm.
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json | cksum | cut -d' ' -f1)

.PHONY: setup test demo lint bench clean postgres chromium

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Two workers, a test module each: most of a module's time is daemons waiting on each other.
test: setup postgres chromium
	$(PY) -m pytest -n 2 --dist loadfile

# The registry tests run a real PostgreSQL server; a machine without one gets Debian's package.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_ctl >/dev/null; then \
		:; \
	elif [ "$${OUTPOST_SKIP_POSTGRES:-}" = 1 ]; then \
		echo "PostgreSQL is not installed; OUTPOST_SKIP_POSTGRES=1 skips its tests"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "PostgreSQL is not installed: run make test as root once, or set OUTPOST_SKIP_POSTGRES=1" >&2; \
		exit 1; \
	else \
		echo "installing PostgreSQL from Debian's packages"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; \
	fi

# The audit report test opens the HTML report in headless Chromium; Debian's package if missing.
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
		:; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "Chromium is not installed: run make test as root once (its test is skipped)" >&2; \
	else \
		echo "installing Chromium from Debian's packages"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends chromium; \
	fi

demo: setup
	$(PY) -m demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint -s pillar/top.sls pillar/outpost/client.sls pillar/outpost/windows.sls pillar/outpost/cloudflared.sls pillar/outpost/apps/hello.sls salt/outpost/defaults.yaml salt/outpost/osfamilymap.yaml

bench: setup
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) bench/shiv_app_apply.py
	$(PY) bench/self_healing.py
	$(PY) bench/rollout.py

clean:
	rm -rf $(VENV) node_modules .demo build dist *.egg-info
