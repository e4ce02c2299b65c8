# Two commands set everything up on a fresh machine (Python 3.11+ required):
#   make run    create .venv, install, migrate, serve the API on http://127.0.0.1:8000,
#               the fake payment provider on :5005 and the background worker
#               (the Procfile's processes; Ctrl-C stops them all)
#   make test   create .venv, install, run the whole test suite (the browser tests need
#               Debian's chromium: without it they are left out, with a message)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
FAKE_PORT ?= 5005

.DEFAULT_GOAL := help
.PHONY: help install migrate run test test-browser lint format superuser bench soak mutation clean

help:
	@echo "make run        the API on http://$(HOST):$(PORT) + fake provider on :$(FAKE_PORT) + worker"
	@echo "make test       run the whole test suite (DATABASE_URL=... for PostgreSQL)"
	@echo "make test-browser  only the docs and admin in headless Chromium (apt-get install chromium)"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make format     ruff format + ruff check --fix"
	@echo "make superuser  create a staff user for the admin and API tokens"
	@echo "make bench      benchmarks with wrk on SQLite and PostgreSQL (docs/benchmarks.md)"
	@echo "make soak       60 s mixed load with provider faults on PostgreSQL (docs/soak.md)"
	@echo "make mutation   mutation testing of the money code with mutmut (docs/testing.md)"
	@echo "make clean      remove .venv, caches and the local SQLite database"

# Reinstall whenever a requirements file changes.
$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python scripts/dev.py --host $(HOST) --port $(PORT) --fake-port $(FAKE_PORT)

# Branch coverage, reported and held at 95 % (.coveragerc). A bare `pytest` (as in
# `docker compose exec api pytest`) runs the same tests without tracing, about a third faster.
test: install
	$(BIN)/python -m pytest --cov $(ARGS)

# The browser suite alone; it fails (rather than being left out) when Chromium is missing.
test-browser: install
	CI=true $(BIN)/python -m pytest -m browser $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

superuser: migrate
	$(BIN)/python manage.py createsuperuser

bench: install
	$(BIN)/python bench/run.py --db both $(ARGS)

soak: install
	$(BIN)/python soak/run.py $(ARGS)

# mutmut over the files and tests listed in setup.cfg [mutmut]; results are kept in
# mutants/ and only changed code is tested again. At low priority, two test processes at
# a time. Some mutants only: make mutation ARGS="discount.services*".
MUTATION_CHILDREN ?= 2
$(BIN)/.installed-mutation: $(BIN)/.installed requirements-mutation.txt
	$(BIN)/python -m pip install --quiet -r requirements-mutation.txt
	@touch $@

mutation: $(BIN)/.installed-mutation
	env -u FAKE_PAYMENT_API nice -n 19 $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) $(ARGS)
	$(BIN)/python scripts/mutation_report.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache htmlcov .coverage .coverage.* staticfiles mutants
	rm -f db.sqlite3 db.sqlite3-* test_db*.sqlite3*
