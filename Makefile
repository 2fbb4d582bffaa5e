# Two commands do all the set-up on a fresh machine (see README):
#   make demo   generate phantoms, run the baselines through the loop, write a leaderboard
#   make test   install what the tests need (Docker engine, chromium), build the images, run pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint system images bench clean

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

test: $(BIN)/segloop system images
	$(BIN)/ruff check evaluator protocols containers baselines leaderboard tests
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

lint: $(BIN)/segloop
	$(BIN)/ruff format --check evaluator protocols containers baselines leaderboard tests
	$(BIN)/ruff check evaluator protocols containers baselines leaderboard tests

bench: $(BIN)/segloop
	$(BIN)/segloop bench

clean:
	rm -rf $(VENV) segloop-demo .pytest_cache
