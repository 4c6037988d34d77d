# The two entry points of the README: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make demo` needs only the runtime dependencies, `make test` adds the test extras (a superset,
# so it marks the runtime install done too).
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test
DEMO_DIR ?= demo-data
# `make demo IMAP_PORT=... WEB_PORT=...`: every port is checked before anything starts. METRICS_PORT is off
# unless set (then `imapd stats --metrics 127.0.0.1:$(METRICS_PORT)` works).
IMAP_PORT ?= 1143
IMAPS_PORT ?= 1993
WEB_PORT ?= 8080
MANAGESIEVE_PORT ?= 4190
METRICS_PORT ?=
# `make cluster-demo`: HAProxy's ports (what clients use) and the base of the others (backends BASE+1..3,
# proxies BASE+21..22, Redis BASE+40; scripts/cluster_demo.py).
CLUSTER_DIR ?= cluster-demo-data
CLUSTER_IMAP_PORT ?= 10143
CLUSTER_IMAPS_PORT ?= 10993
CLUSTER_BASE_PORT ?= 10200

.PHONY: demo cluster-demo test lint typecheck pytest venv sysdeps clean bench bench-quick fuzz fuzz-properties soak conformance

define make_venv
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
endef

# Not editable: setuptools prints a warning box for every editable install, and the demo runs from the work
# tree anyway (`python -m` puts it first on sys.path), so edits still take effect.
$(RUNTIME_STAMP): pyproject.toml
	$(make_venv)
	$(BIN)/python -m pip install --quiet .
	@touch $@

$(TEST_STAMP): pyproject.toml
	$(make_venv)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(RUNTIME_STAMP)

venv: $(TEST_STAMP)

# System packages some end-to-end tests drive (installed only when missing; CI starts from a fresh clone).
sysdeps:
	@scripts/install-sysdeps.sh

demo: $(RUNTIME_STAMP)
	$(BIN)/python -m imapd demo --data-dir $(DEMO_DIR) --imap-port $(IMAP_PORT) --imaps-port $(IMAPS_PORT) \
		--web-port $(WEB_PORT) --managesieve-port $(MANAGESIEVE_PORT)$(if $(METRICS_PORT), --metrics-port $(METRICS_PORT))

# The deploy/ example on loopback: Redis, 3 backends, 2 proxies, HAProxy (docs/cluster.md#deploying).
cluster-demo: $(RUNTIME_STAMP)
	PYTHON=$(BIN)/python scripts/cluster-demo.sh --dir $(CLUSTER_DIR) --imap-port $(CLUSTER_IMAP_PORT) \
		--imaps-port $(CLUSTER_IMAPS_PORT) --base-port $(CLUSTER_BASE_PORT)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# Two test processes (pytest-xdist; a file's tests stay together in one), then the few timed tests alone.
# PYTEST_WORKERS=0 runs everything in this process, in one pass.
PYTEST_WORKERS ?= 2
pytest: $(TEST_STAMP) sysdeps
ifeq ($(PYTEST_WORKERS),0)
	$(BIN)/python -m pytest -q
else
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial
endif

test: lint typecheck pytest

# The differential check: the same IMAP sequences to our server and to Dovecot, answers normalised and
# diffed (tests/conformance/imapdiff.py; docs/clients.md "Differential check against Dovecot"). Not in `test`:
# it needs Dovecot, and a difference is for a person to judge against the RFC. ARGS="-k fetch -v" narrows it.
conformance: $(TEST_STAMP)
	tests/conformance/run.sh $(ARGS)

# Side-by-side figures against Dovecot (installed via apt when run as root); writes to /tmp/imapd-bench.
bench: $(TEST_STAMP)
	bench/run_all.sh

bench-quick: $(TEST_STAMP)
	bench/run_all.sh --quick

# Long versions of the reliability tests (crash kills, many clients, 15,000 connections); report figures.
soak: $(TEST_STAMP)
	IMAPD_SOAK=1 $(BIN)/python -m pytest -q -o timeout=3600 tests/reliability

# Coverage-guided fuzzing of the protocol parser, time-bounded (FUZZ_SECONDS, default 60).
fuzz: $(TEST_STAMP)
	$(BIN)/pip install --quiet atheris
	$(BIN)/python fuzz/fuzz_parser.py -max_total_time=$${FUZZ_SECONDS:-60}

# The property tests with fresh random examples (2,000 where a test sets no count of its own) instead of
# `make test`'s repeatable ones.
fuzz-properties: $(TEST_STAMP)
	HYPOTHESIS_PROFILE=explore $(BIN)/python -m pytest -q -o timeout=1800 $$(grep -rl "from hypothesis" tests --include='test_*.py')

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
