# The product's entry points: `make run` starts it, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
S3_PORT ?= $(shell echo $$(($(PORT) + 1)))

.PHONY: install run test lint format benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: install
	$(VENV)/bin/epic serve --host $(HOST) --port $(PORT) --s3-port $(S3_PORT)

# The suite runs on SQLite (the embedded default), then on PostgreSQL where one answers.
POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

test: install lint
	EPIC_HOME=$$(mktemp -d) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	@if pg_isready -q -d "$(POSTGRES_URL)" 2>/dev/null; then \
	  echo "Running the suite again on PostgreSQL (end-to-end tests excepted)"; \
	  EPIC_HOME=$$(mktemp -d) EPIC_DATABASE_URL="$(POSTGRES_URL)" \
	    $(VENV)/bin/python -m pytest -m "not e2e" $(PYTEST_ARGS); \
	else echo "PostgreSQL is not reachable at $(POSTGRES_URL): its run is skipped"; fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m django makemigrations --check --dry-run --settings=epic.settings

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

benchmarks: install
	$(VENV)/bin/python benchmarks/submit_latency.py
	$(VENV)/bin/python benchmarks/s3_throughput.py
	@if sinfo >/dev/null 2>&1; then \
	  $(VENV)/bin/python benchmarks/slurm_array.py && $(VENV)/bin/python benchmarks/slurm_calls.py; \
	else echo "No Slurm cluster answers sinfo: the Slurm benchmarks are skipped"; fi

clean:
	rm -rf $(VENV) build src/*.egg-info
