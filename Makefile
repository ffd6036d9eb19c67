# Two commands matter: `make demo` and `make test`. Everything they need installs from here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-sqlite test-postgres lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/omniloop demo --serve

# The suite runs on SQLite always and again on PostgreSQL when
# OMNILOOP_TEST_DATABASE_URL points at one (.ci/run sets it).
test: lint test-sqlite test-postgres

test-sqlite: $(TEST_STAMP)
	env -u OMNILOOP_TEST_DATABASE_URL $(BIN)/pytest -q

test-postgres: $(TEST_STAMP)
	@if [ -n "$$OMNILOOP_TEST_DATABASE_URL" ]; then \
		echo "== PostgreSQL pass =="; \
		$(BIN)/pytest -q -m 'not browser'; \
	else \
		echo "OMNILOOP_TEST_DATABASE_URL not set: PostgreSQL pass skipped"; \
	fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(TEST_STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
