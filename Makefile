# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: setup run test lint clean fuzz

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(BIN)/.installed

.run/secret_key:
	mkdir -p .run
	$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@

# Web (gunicorn) and worker (rqworker) from the Procfile, on REDIS_URL
# (default: the local Redis), SQLite unless DATABASE_URL is set.
run: setup .run/secret_key
	@SECRET_KEY=$$(cat .run/secret_key) REDIS_URL=$(REDIS_URL) $(BIN)/python manage.py migrate --noinput
	@SECRET_KEY=$$(cat .run/secret_key) $(BIN)/python manage.py collectstatic --noinput -v 0
	@SECRET_KEY=$$(cat .run/secret_key) REDIS_URL=$(REDIS_URL) $(BIN)/python manage.py seed_demo --base-url http://127.0.0.1:$(PORT)
	SECRET_KEY=$$(cat .run/secret_key) REDIS_URL=$(REDIS_URL) SESSION_COOKIE_SECURE=false \
		GUNICORN_CMD_ARGS="--bind 127.0.0.1:$(PORT)" PATH=$(CURDIR)/$(BIN):$$PATH \
		$(BIN)/honcho start --no-prefix -f Procfile web worker

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fuzz tests, longer than in `make test` and from a fresh seed (printed;
# replay with TOLLGATE_FUZZ_SEED=...).
FUZZ_EXAMPLES ?= 500
fuzz: setup
	@seed=$${TOLLGATE_FUZZ_SEED:-$$(date +%s)}; echo "TOLLGATE_FUZZ_SEED=$$seed"; \
		TOLLGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) TOLLGATE_FUZZ_SEED=$$seed $(BIN)/python -m pytest --timeout=3600 \
		tests/validation/test_fuzz_hostile.py tests/apidocs/test_schemathesis.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .run .pytest-db-*.sqlite3* staticfiles
