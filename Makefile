# The README's two commands are `make train` and `make test`; both set up the
# environment on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: help install train test bench lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Re-installs whenever the declared or locked dependencies change.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

install: $(STAMP)  ## create .venv and install scopeml with the locked stack

train: $(STAMP)  ## train on the built-in synthesized keywords (pass Hydra overrides with ARGS="...")
	$(BIN)/scopeml-train $(ARGS)

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)  ## run every benchmark under bench/ and print the ratios
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lock: $(STAMP)  ## rewrite constraints.txt from the current environment
	@{ grep '^#' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' | sort; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:  ## remove caches (not outputs/)
	rm -rf .cache .pytest_cache build dist src/*.egg-info
