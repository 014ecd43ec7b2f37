# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: install run serve worker beat migrate test test-fast lint format check bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

# Migrate, seed the demo tenant on an empty database (else print a fresh demo key), then serve on
# :$(PORT) with a Celery worker and beat beside it. SQLite and a file-system broker by default.
run: migrate
	@$(PY) manage.py seed_demo --if-empty
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/celery -A billing_project worker --beat --loglevel=info --concurrency=2 & \
	$(PY) manage.py runserver 0.0.0.0:$(PORT)

worker: install
	$(VENV)/bin/celery -A billing_project worker --loglevel=info

beat: install
	$(VENV)/bin/celery -A billing_project beat --loglevel=info

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) bench/api.py

clean:
	rm -rf $(VENV) var db.sqlite3 db.sqlite3-*
