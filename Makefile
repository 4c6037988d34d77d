# The two entry points of the README: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-data

.PHONY: demo test lint typecheck pytest venv sysdeps clean bench bench-quick fuzz soak

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# System packages some end-to-end tests drive (installed only when missing; CI starts from a fresh clone).
sysdeps:
	@scripts/install-sysdeps.sh

demo: $(STAMP)
	$(BIN)/python -m imapd demo --data-dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

# Side-by-side figures against Dovecot (installed via apt when run as root); writes to /tmp/imapd-bench.
bench: $(STAMP)
	bench/run_all.sh

bench-quick: $(STAMP)
	bench/run_all.sh --quick

# Long versions of the reliability tests (crash kills, many clients, 15,000 connections); report figures.
soak: $(STAMP)
	IMAPD_SOAK=1 $(BIN)/python -m pytest -q -o timeout=3600 tests/reliability

# Coverage-guided fuzzing of the protocol parser, time-bounded (FUZZ_SECONDS, default 60).
fuzz: $(STAMP)
	$(BIN)/pip install --quiet atheris
	$(BIN)/python fuzz/fuzz_parser.py -max_total_time=$${FUZZ_SECONDS:-60}

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
