# Set-up: `make demo` and `make test` each create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-output

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[train,dev,web]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/facestyle demo --out $(OUT)

test: $(STAMP)
	sh scripts/install-browser.sh
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check facestyle tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/generator_speed.py --size 128

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
