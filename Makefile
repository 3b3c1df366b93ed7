# The two commands: `make run` (everything, on the embedded SQLite default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run lint test test-faults test-drills test-image install openapi migrate worker serve bench clean

$(STAMP): pyproject.toml
	@scripts/check_python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run.sh

# Lint, format check and type check of the code (not the tests); `make test` runs it first.
lint: install
	$(BIN)/ruff check service workers
	$(BIN)/ruff format --check service workers
	$(BIN)/mypy service workers

# The suite on TEST_WORKERS processes (pytest-xdist): it mostly waits (servers, sleeps, timeouts), so several
# run side by side even on two cores. Each worker has its own databases, queues and ports (tests/conftest.py,
# tests/processes.py); a module whose tests share an expensive module-scoped fixture is listed in
# tests/conftest.py ONE_WORKER_MODULES, which `--dist loadgroup` runs whole on one worker. TEST_WORKERS=0 runs it in
# this one process, as before.
TEST_WORKERS ?= 3

test: install lint
	scripts/ensure_services.sh
	scripts/ensure_chromium.sh
	scripts/audit.sh
	$(BIN)/python -m pytest -m "not faults and not image" -n $(TEST_WORKERS) --dist loadgroup

# Every test marked `faults`: the fault drills and the 2,000-report scale-out race (about 7 minutes).
test-faults: install
	scripts/ensure_services.sh
	$(BIN)/python -m pytest -m faults

# The fault drills alone (kill -9 a worker, Redis away 30 s, PostgreSQL restarted; about 4 minutes): CI runs them.
test-drills: install
	scripts/ensure_services.sh
	$(BIN)/python -m pytest -m faults tests/test_faults.py

# The image and compose.yaml for real (podman, podman-compose; installed when missing): builds what a closed
# network needs (scripts/images.sh), starts the compose shape, files reports, kills a replica and a worker.
# About 10 minutes the first time on a machine; the base images are kept for the next run.
test-image: install
	$(BIN)/python -m pytest -m image tests/test_image.py

# Load benchmarks on loopback PostgreSQL + Redis, load from wrk (a separate process); writes bench/RESULTS.md.
bench: install
	scripts/ensure_services.sh
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }; } || \
	  { echo "make bench needs wrk (apt-get install wrk)" >&2; exit 1; }
	@{ $(BIN)/python -c 'import psutil' 2>/dev/null && test -x $(BIN)/py-spy; } || $(BIN)/pip install --quiet psutil py-spy
	$(BIN)/python bench/run_all.py

openapi: install
	$(BIN)/intake openapi

migrate: install
	$(BIN)/intake migrate

serve: install
	$(BIN)/intake serve

worker: install
	$(BIN)/intake worker

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
