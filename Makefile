# Clearcut developer entry points. `make run` and `make test` install first (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clearcut-installed
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: install run test bench clean

install: $(STAMP)

# The stamp is newer than pyproject.toml once `pip install` and the model fetch succeeded, so a
# second `make install` does nothing until the dependencies change.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	$(VENV)/bin/clearcut models fetch
	@touch $(STAMP)

run: install
	$(VENV)/bin/clearcut dev

test: install
	$(PY) -m pytest

# Placeholder until the benchmark issue wires this up: runs the scripts that are present.
EVAL_SET ?= ../shared/eval/dev
bench: install
	@if [ -f benchmarks/speed.py ]; then $(PY) benchmarks/speed.py; else echo "no benchmarks/speed.py"; fi
	@if [ -f benchmarks/quality.py ] && [ -d $(EVAL_SET) ]; then \
		$(PY) benchmarks/quality.py --set $(EVAL_SET) --model quality; \
	else echo "skipping quality benchmark (needs benchmarks/quality.py and $(EVAL_SET))"; fi

# Keeps var/ (downloaded models and `clearcut dev` state); remove it by hand to start over.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache benchmarks/results
	find clearcut app worker tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
