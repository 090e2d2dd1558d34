# Fieldsync: `make run` serves the demo on SQLite, `make test` installs what it needs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# browser assets (API reference page, console preview, axe-core): npm packages Fieldsync serves itself
ASSETS := node_modules/.installed
# test processes for pytest-xdist: one per core by default (`make test PYTEST_WORKERS=0` runs in one process)
PYTEST_WORKERS ?= auto

.PHONY: run test check lint typecheck layers install bench clean messages

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(ASSETS): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(ASSETS)

install: $(STAMP) $(ASSETS)

run: $(STAMP) $(ASSETS)
	$(BIN)/fieldsync init-db
	$(BIN)/fieldsync demo --base-url http://127.0.0.1:5000
	$(BIN)/fieldsync serve --host 127.0.0.1 --port 5000

test: $(STAMP) $(ASSETS) check
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal

check: lint typecheck layers

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict forms sync exports

layers: $(STAMP)
	$(BIN)/lint-imports

# The console's gettext catalogues: extract messages.pot, then add its new messages to each locale's .po
# (translate them; tests/server/console/test_catalogues.py fails while one is missing). The .po files are
# compiled in memory when the app starts (server/console/i18n.py): no .mo file to build.
CONSOLE := server/console
messages: $(STAMP)
	$(BIN)/pybabel --quiet extract -F $(CONSOLE)/babel.cfg -k lazy_gettext --no-location --omit-header --sort-output \
		-o $(CONSOLE)/translations/messages.pot $(CONSOLE)
	$(BIN)/pybabel --quiet update -i $(CONSOLE)/translations/messages.pot -d $(CONSOLE)/translations \
		--no-fuzzy-matching --ignore-obsolete --width 120

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache
