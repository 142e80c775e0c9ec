# Two set-up-free commands: `make quickstart` and `make test`.
# `setup` is idempotent: a stamp keyed on pyproject.toml's hash skips it on re-run.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
HASH  := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.stamp-$(HASH)

.PHONY: setup quickstart test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v ffmpeg >/dev/null 2>&1 || { echo "[setup] ffmpeg missing: installing the Debian package (musdb/museval need it)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
	  || { echo "[setup] could not install ffmpeg: run 'apt-get install -y ffmpeg' as root" >&2; exit 1; }; }
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "[setup] installing the toolkit into $(VENV) (first time: ~2 min)"
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.stamp-*
	@touch $(STAMP)
	@echo "[setup] done"

quickstart: setup
	$(VENV)/bin/toolkit run experiments/quickstart.gin

# one worker per core (pytest-xdist), each test file on one worker so its module fixtures are built once
test: setup
	$(VENV)/bin/python -m pytest -q -n auto --dist loadscope --durations=15 tests

bench: setup
	$(VENV)/bin/python -m pytest -q benchmarks --benchmark-only

clean:
	rm -rf $(VENV) .pytest_cache
