# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint bench lab pulumi-cli

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: $(PYTHON) is older than Python 3.11; run with PYTHON=python3.11 (or newer)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt -e .
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/python -m pytest

# A Pulumi CLI for `make demo` and the end-to-end tests: PATH's, or built into .pulumi-bin/ (see README).
pulumi-cli:
	@scripts/pulumi-cli.sh

demo:
	@scripts/demo.sh

# Only the demo's hvsim lab (hvsim.dev.toml, state in .hvsim/), in the background and without the Pulumi
# CLI: try the providers from Python against it. It prints how to stop it; `make demo` reuses it.
lab: $(STAMP)
	@$(VENV)/bin/python -m hvsim start --config hvsim.dev.toml --state-dir .hvsim
