# The README's two commands are `make lifecycle` and `make test`; both set up the
# environment on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: help install lifecycle train test check lint chromium postgresql wrk bench lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Re-installs whenever the declared or locked dependencies change.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@# pip compiles what it installs, not the editable source: without this, a run with PYTHONDONTWRITEBYTECODE set
	@# (as in many CI images) compiles scopeml's modules again in every process it starts.
	$(BIN)/python -m compileall -q src
	@touch $@

install: $(STAMP)  ## create .venv and install scopeml with the locked stack

lifecycle: $(STAMP)  ## the main job: data -> sweep -> select -> package -> serve -> load test -> production -> monitoring -> report
	$(BIN)/scopeml-lifecycle $(ARGS)

train: $(STAMP)  ## train one model on the built-in synthesized keywords (pass Hydra overrides with ARGS="...")
	$(BIN)/scopeml-train $(ARGS)

# Two workers, one test file at a time each (a file's fixtures, such as a trained run or a server, are built once):
# a serial run keeps about one core busy (interpreter start-up and imports are single-threaded). The measured
# times are in the README's "What `make test` runs". TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

# The suite runs `scopeml-config check` on every config (tests/test_config_review.py), so it is not run twice.
test: $(STAMP) chromium postgresql lint  ## lint, then the test suite (which also checks every config)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

lint: $(STAMP)  ## ruff: lint and formatting (fix with `ruff check --fix . && ruff format .`)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: $(STAMP)  ## compose and check every config (what CI gates pull requests on)
	$(BIN)/scopeml-config check

# $(call apt_install,PACKAGE,WHAT HAPPENS WITHOUT IT): Debian's package, as root with apt (updating the index only
# when the first try fails); otherwise one line saying what will skip. The callers check first whether it is there.
apt_install = { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
  (apt-get install -y -q $(1) >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(1) >/dev/null 2>&1)) \
  || echo "$(1) not installed: $(2)"; }

# The report test screenshots the lifecycle report in Debian's headless Chromium. Installed
# when missing and possible (root with apt); otherwise that test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || $(call apt_install,chromium,the report screenshot test will skip)

# The shared prediction log's tests start a throwaway server from Debian's PostgreSQL (initdb in a
# temporary folder). Installed the same way, when missing and possible; otherwise those tests skip.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  $(call apt_install,postgresql,the shared prediction log (PostgreSQL) tests will skip)

# The serving benchmark drives the servers with wrk. Installed the same way, when missing and possible.
wrk:
	@command -v wrk >/dev/null 2>&1 || $(call apt_install,wrk,bench/bench_serving.py will stop and say so)

bench: $(STAMP) wrk  ## run every benchmark under bench/ and print the ratios
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lock: $(STAMP)  ## rewrite constraints.txt from the current environment
	@{ grep '^#' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' | sort; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:  ## remove caches (not outputs/)
	rm -rf .cache .pytest_cache build dist src/*.egg-info
