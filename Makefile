# Gal-Friday: `make run` starts the whole system on embedded defaults; `make test` runs lint and every test.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Packages checked by mypy (with django-stubs).
TYPED := core timeseries galfriday_site ingest kraken_sim trading models_registry reconciliation experiments \
	alerting notifications dashboard

.PHONY: run test lint format typecheck services up down migrate clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.requirements: requirements.txt | $(PY)
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.requirements-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install -q -r requirements-dev.txt
	touch $@ $(VENV)/.requirements

run: $(VENV)/.requirements
	$(PY) manage.py migrate --noinput
	$(PY) manage.py standalone

test: $(VENV)/.requirements-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(TYPED)
	$(PY) -m pytest

lint: $(VENV)/.requirements-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(TYPED)

format: $(VENV)/.requirements-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(VENV)/.requirements-dev
	$(VENV)/bin/mypy $(TYPED)

# Start PostgreSQL, Redis and InfluxDB on this machine if they are not running (what CI does).
services:
	bash .ci/services.sh

migrate: $(VENV)/.requirements
	$(PY) manage.py migrate --noinput

# Production-like services in containers (needs Docker, which this development machine does not have).
up:
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
