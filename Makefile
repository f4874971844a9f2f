# Vitrine: `make run` starts the service, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-classify bench-scale install clean system-deps

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml clients/python/pyproject.toml | $(PY)
	# torch first and exactly pinned: pip must take the local CPU wheel, never a CUDA build.
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	# The Python client; its dependencies (httpx, pydantic) came with the line above.
	$(PY) -m pip install --quiet --no-deps -e clients/python
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vitrine serve --host 127.0.0.1 --port 8000

test: $(STAMP) system-deps
	bash .ci/install-browser  # Debian's Chromium for the admin UI's browser tests
	$(VENV)/bin/ruff check src tests bench clients
	$(PY) -m pytest

# What the scale-out tests need from the OS (PostgreSQL 15, Swift s3api, memcached, Java 17):
# installed from Debian when missing and possible; the tests start and stop the servers.
system-deps:
	bash tests/servers/servers.sh install

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench clients
	$(VENV)/bin/ruff format --check src tests bench clients

bench: $(STAMP)
	$(PY) bench/bench_foundation.py

bench-classify: $(STAMP)
	$(PY) bench/bench_classify.py

# Sizes: SCALE_SIZES=10k,100k,1m (homes built once, cached under .cache/scale).
SCALE_SIZES ?= 10k,100k
bench-scale: $(STAMP)
	$(PY) bench/bench_scale.py --sizes $(SCALE_SIZES)

clean:
	rm -rf $(VENV) var .cache
