# The two commands a new user needs: `make run` and `make test`.
# bin/system-deps lists (and installs, where it can) the system programs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check

.PHONY: setup run test lint clean fuzz system-programs

$(BIN)/python:
	@PYTHON=$(PYTHON) bin/system-deps venv
	$(PYTHON) -m venv $(VENV)

# The service's own requirements: all `make run` installs.
$(BIN)/.runtime-installed: requirements.txt | $(BIN)/python
	$(PIP) -r requirements.txt
	touch $@

# requirements-dev.txt adds the test, lint and benchmark tools.
$(BIN)/.dev-installed: requirements-dev.txt $(BIN)/.runtime-installed
	$(PIP) -r requirements-dev.txt
	touch $@

setup: $(BIN)/.dev-installed

# Web and worker from the Procfile on 127.0.0.1:$PORT (default 8000), on
# REDIS_URL (default redis://127.0.0.1:6379/0; a private redis-server when
# nothing answers there), SQLite unless DATABASE_URL is set. See bin/run.
run: $(BIN)/.runtime-installed
	@$(BIN)/python bin/run

# Checked (and installed) before the virtualenv too, so that a missing program
# is said before minutes of pip.
system-programs:
	@bin/system-deps

# Two pytest-xdist workers: most tests wait on real servers (gunicorn,
# redis-server, PostgreSQL), so two overlap well even on two cores. Each
# worker has its own Redis, SQLite file or PostgreSQL test database. The
# tests that measure a fault under load share one xdist group, so that they
# never overlap each other. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: system-programs $(BIN)/.dev-installed
	@bin/system-deps -- $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The fuzz tests, longer than in `make test` and from a fresh seed (printed;
# replay with TOLLGATE_FUZZ_SEED=...).
FUZZ_EXAMPLES ?= 500
fuzz: system-programs $(BIN)/.dev-installed
	@seed=$${TOLLGATE_FUZZ_SEED:-$$(date +%s)}; echo "TOLLGATE_FUZZ_SEED=$$seed"; \
		TOLLGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) TOLLGATE_FUZZ_SEED=$$seed bin/system-deps -- $(BIN)/python -m pytest --timeout=3600 \
		tests/validation/test_fuzz_hostile.py tests/apidocs/test_schemathesis.py

lint: $(BIN)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .run .pytest-db-*.sqlite3* staticfiles
