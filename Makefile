# Two entry points for a fresh Debian machine (as root): `make demo` and `make test`.
# Each installs whatever is missing (apt packages, the venv, the package) and then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := docker.io busybox-static etcd-server etcd-client dnsutils haproxy nginx-light \
	dnsmasq-base dnsperf iproute2 iptables curl procps
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest system-deps install bench clean

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -c 'import hcl2; hcl2.loads("a = 1\n")'  # builds python-hcl2's grammar cache once
	touch $(STAMP)

install: system-deps $(STAMP)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy --strict src/steppe

pytest: install
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

demo: install
	$(BIN)/python -m steppe.demo

bench: install
	$(BIN)/python bench/scheduler.py

clean:
	rm -rf $(VENV) build *.egg-info
