# Clearcut developer entry points. `make run` and `make test` install first (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clearcut-installed
TEST_STAMP := $(VENV)/.clearcut-test-installed
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: install install-test run test bench clean

# Runtime dependencies only (what `make run` needs), and the default models, fetched into the
# per-user cache (CLEARCUT_MODEL_DIR, by default $XDG_CACHE_HOME/clearcut/models).
install: $(STAMP)

# The test extras on top (pytest, the validators, the vendor clients, the layer and dependency checks).
install-test: $(TEST_STAMP)

# Each stamp is newer than pyproject.toml once its `pip install` (and the model fetch) succeeded, so a
# second `make install` does nothing until the dependencies change.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e .
	$(VENV)/bin/clearcut models fetch
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -e '.[test]'
	@touch $(TEST_STAMP)

run: install
	$(VENV)/bin/clearcut dev

test: install-test
	$(PY) -m pytest

# The speed table of docs/benchmarks.md, then the quality table when the evaluation set is there.
# The other benchmarks (throughput, latency, batches, reliability, threads, GPU) each take minutes
# to hours; docs/benchmarks.md gives the command of each.
EVAL_SET ?= ../shared/eval/dev
bench: install-test
	$(PY) benchmarks/speed.py
	@if [ -d $(EVAL_SET) ]; then $(PY) benchmarks/quality.py --set $(EVAL_SET) --model quality; \
	else echo "skipping the quality benchmark: no evaluation set at $(EVAL_SET) (set EVAL_SET=...)"; fi

# Keeps var/ (downloaded models and `clearcut dev` state); remove it by hand to start over.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache benchmarks/results
	find clearcut app worker tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
