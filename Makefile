# restic-runner — developer entry points. The README's two commands:
#   make demo   set up, then run the demo: backups, the API, Pushgateway + Prometheus, a failing
#               job's alert firing and its signed webhook verified (./demo/)
#   make test   set up, then lint and run the test suite
# `make test-fast` runs the in-process tests only (tests/README.md: the layout), in under a minute.
# Set-up (apt packages, .venv, restic 0.14 and 0.18 under .tools/) is scripts/bootstrap.sh:
# idempotent, and silent and fast once done.

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PYTEST_ARGS ?= -n 4 -q  # 4 workers on 2 cores: the suite mostly waits on real servers and restic (6.9 -> 4.2 min)
# The in-process directories (no `restic-runner` process, no server; real restic runs), minus
# the tests marked slow (pyproject.toml's `slow` marker).
FAST_TESTS  := tests/runner tests/security tests/notifiers/unit tests/test_architecture.py tests/test_layout.py
BENCH_ARGS  ?=

.DEFAULT_GOAL := help
.PHONY: help venv bootstrap test test-fast lint demo bench image image-test lock clean distclean

help:
	@echo "make demo       set up and run the demo: backups, the API, a failing job, its firing alert and verified webhook (./demo/)"
	@echo "make test       set up, ruff check, pytest $(PYTEST_ARGS)"
	@echo "make test-fast  set up, ruff check, the in-process tests only (under a minute)"
	@echo "make lint       ruff check (+ shellcheck of scripts/ when installed)"
	@echo "make bench      set up and run every bench/ script (BENCH_ARGS=... for bench_overhead)"
	@echo "make image      build the container image with podman (localhost/restic-runner:test)"
	@echo "make image-test build it, then run it for real (tests/image/: ours, the helper's compose files and manifest, the chart under kube play); about 2 min"
	@echo "make lock       regenerate docker/*.lock (hash-pinned) from docker/*.in"
	@echo "make bootstrap  apt packages, .venv, .tools/restic-{0.14,0.18}/restic"
	@echo "make venv       only the .venv"
	@echo "make clean      remove demo/ and .tools/ work dirs, caches (keeps .venv)"
	@echo "make distclean  clean, plus .venv and .tools/"

venv:
	@bash scripts/bootstrap.sh --venv-only

bootstrap:
	@bash scripts/bootstrap.sh

test: bootstrap
	@bash scripts/airflow-venv.sh  # Airflow for tests/airflow/, in .tools/airflow-venv of its own
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS) -m "not slow" $(FAST_TESTS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint Dockerfile
	@if command -v shellcheck >/dev/null; then \
	  echo "shellcheck scripts/*.sh docker/*.sh .ci/run"; shellcheck scripts/*.sh docker/*.sh .ci/run; \
	else echo "shellcheck not installed: skipped"; fi

demo: bootstrap
	@bash scripts/demo.sh

bench: bootstrap
	$(PY) bench/bench_overhead.py $(BENCH_ARGS)
	$(PY) bench/bench_output_path.py
	$(PY) bench/bench_redactor.py
	$(PY) bench/bench_api.py
	$(PY) bench/bench_trigger_wait.py
	$(PY) bench/bench_notify.py
	$(PY) bench/bench_load.py

image: bootstrap
	@bash scripts/image-test.sh --build-only

image-test: bootstrap
	@bash scripts/image-test.sh

# pip-compile (pip-tools) in a throwaway venv, against PyPI itself, so the hashes are PyPI's.
lock:
	rm -rf .tools/pip-tools && python3 -m venv .tools/pip-tools
	.tools/pip-tools/bin/pip install -q 'pip-tools==7.6.*'
	cd docker && for f in requirements build-requirements; do \
	  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= ../.tools/pip-tools/bin/pip-compile \
	    -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	    --index-url https://pypi.org/simple -o $$f.lock $$f.in || exit 1; done

clean:
	rm -rf demo/ .tools/work/ bench/out/ .pytest_cache/ .ruff_cache/ .hypothesis/
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)/ .tools/ *.egg-info/
