# Vitrine: `make run` starts the service, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-classify install clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	# torch first and exactly pinned: pip must take the local CPU wheel, never a CUDA build.
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vitrine serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

bench: $(STAMP)
	$(PY) bench/bench_foundation.py

bench-classify: $(STAMP)
	$(PY) bench/bench_classify.py

clean:
	rm -rf $(VENV) var .cache
