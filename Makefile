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
	@echo "install: pip, torch 2.13.0 and facestyle with its extras (train, dev, web, photo): several hundred MB"
	$(BIN)/pip install --progress-bar on --upgrade pip
	$(BIN)/pip install --progress-bar on torch==2.13.0
	$(BIN)/pip install --progress-bar on -e ".[train,dev,web,photo]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/facestyle demo --out $(OUT)

test: $(STAMP)
	@echo "test: the web tests drive Chromium (/usr/bin/chromium); scripts/install-browser.sh installs it with" \
	      "apt-get when it is missing and this runs as root (otherwise it says how and the browser tests skip)"
	sh scripts/install-browser.sh
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check facestyle tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/generator_speed.py --size 128

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
