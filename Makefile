# Two commands do all the set-up on a fresh machine (see README):
#   make demo   generate phantoms, run the baselines through the loop, write a leaderboard
#   make test   install what the tests need (Docker engine, chromium), build the images, run pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint lint-imports system images bench clean

$(BIN)/segloop: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dask]'
	touch $@

demo: $(BIN)/segloop
	$(BIN)/segloop demo --out segloop-demo

system:
	bash scripts/setup-system.sh

images: $(BIN)/segloop system
	$(BIN)/segloop images build --with-tests

# The import layers (pyproject.toml [tool.importlinter]), checked on a regular install of the
# package in build/lint (the editable install spreads segloop over the repository's folders).
lint-imports: $(BIN)/segloop
	rm -rf build/lint && $(BIN)/pip install --quiet --no-deps --target build/lint .
	PYTHONPATH=build/lint $(BIN)/lint-imports

test: $(BIN)/segloop system images lint-imports
	$(BIN)/ruff check evaluator protocols containers baselines leaderboard tests
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

lint: $(BIN)/segloop
	$(BIN)/ruff format --check evaluator protocols containers baselines leaderboard tests
	$(BIN)/ruff check evaluator protocols containers baselines leaderboard tests

bench: $(BIN)/segloop
	$(BIN)/segloop bench

clean:
	rm -rf $(VENV) segloop-demo .pytest_cache
