# modelyard developer entry points. `make help` lists them.
#
#   make install   .venv with modelyard (editable) and the demo's PyTorch
#   make test      everything the tests need (Python and Debian packages, PostgreSQL), then pytest
#   make demo      train the digits example as a job through the CLI
#   make bench     the benchmarks, side by side with MLflow, FastTrackML and Ray Jobs (BENCH_ARGS='--only ingest_sqlite')
#   make gpu-check on a machine with an NVIDIA GPU: the GPU paths, in at most 5 minutes (prints JSON)
#   make gpu-wheels  wheels/ for gpu-check on a machine with no network (carry the folder along)
#
# Variables: PYTHON (interpreter to build .venv from), PYTEST_ARGS (extra pytest
# arguments, e.g. PYTEST_ARGS='-k policy -x'), TEST_DEB_PACKAGES (below).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
VPY := $(CURDIR)/$(VENV)/bin/python
# The real interpreter, never a pyenv shim: supervisors and jobs are spawned with
# .venv's python, and a shim would add ~80 ms to every spawn.
PYTHON ?= $(shell python3 -c 'import sys; print(sys.executable)')
# Debian packages the tests need, as command:package pairs; a package is installed
# only when its command (a name on PATH, or an absolute path) is missing. Podman with
# runc and catatonit (--init) runs the --image tests; debootstrap builds their images.
TEST_DEB_PACKAGES ?= chromium:chromium podman:podman /usr/sbin/runc:runc \
	/usr/libexec/podman/catatonit:catatonit /usr/sbin/debootstrap:debootstrap
PYTEST_ARGS ?=
# extra arguments for python -m bench, e.g. BENCH_ARGS='--no-peers --repeat 5'
BENCH_ARGS ?=
# Reinstall only when pyproject.toml changed since the last install of those extras.
# Plain shell, not make targets: a recreated .venv must lose its stamps, and make
# reads a target's mtime before running its prerequisites.
define install_extras
	@if ! $(VPY) -c '' 2>/dev/null; then \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	fi
	@stamp=$(VENV)/.installed-$(subst $(comma),-,$(1)); \
	if [ ! -f $$stamp ] || [ pyproject.toml -nt $$stamp ]; then \
	  echo "pip install -e '.[$(1)]'"; \
	  $(VPY) -m pip install -q -e '.[$(1)]' && touch $$stamp; \
	fi
endef
comma := ,

.PHONY: help install test demo bench gpu-check gpu-wheels deb-packages postgres clean

help:
	@sed -n 's/^#   //p' Makefile

install:
	$(call install_extras,demo)

test: deb-packages postgres
	$(call install_extras,test$(comma)demo$(comma)ray)
	$(VPY) -m pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

demo: install
	$(VPY) examples/digits-cnn/demo.py

# Not part of `make test` (tests/test_bench_smoke.py runs a tiny version there).
# The peers (pinned MLflow, Ray and FastTrackML) install into bench/.peers-venv on first use.
bench: install postgres
	$(VPY) -m bench $(BENCH_ARGS)

# With wheels/ (make gpu-wheels) the project installs offline; else as `make install` does.
# PyTorch is optional there: without it the digits check reports itself not run.
gpu-check:
	@if ! $(VPY) -c 'import modelyard' 2>/dev/null && [ -d wheels ]; then \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && \
	  $(VPY) -m pip install -q --no-index --find-links wheels modelyard; \
	fi
	@$(VPY) -c 'import modelyard' 2>/dev/null || $(MAKE) --no-print-directory install
	timeout 300 $(VPY) -m bench.gpu_check

gpu-wheels:
	$(VPY) -m pip wheel -q -w wheels .

deb-packages:
	@missing=""; \
	for pair in $(TEST_DEB_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# The tests use a real PostgreSQL on 127.0.0.1:5432 (tests/conftest.py); start the cluster if it is down.
postgres:
	@if ! pg_isready -q -h 127.0.0.1; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "starting PostgreSQL"; \
	  $$sudo pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for _ in $$(seq 60); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done; \
	  pg_isready -h 127.0.0.1; \
	fi

clean:
	rm -rf $(VENV) build dist src/*.egg-info test-artifacts
