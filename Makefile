# The two quickstart commands: `make run` and `make test`. Each builds .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit install clean stop reset

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ticketblitz up --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: lint
	$(BIN)/pytest -q

# Stop the `ticketblitz up` of ./.ticketblitz (it holds up.lock and wrote its pid there).
stop:
	@if [ -f .ticketblitz/up.lock ] && ! flock -n .ticketblitz/up.lock true; then \
		kill -INT $$(cat .ticketblitz/up.lock) && echo "stopping ticketblitz up (pid $$(cat .ticketblitz/up.lock))"; \
	else echo "no ticketblitz up runs on .ticketblitz"; fi

# Forget every show, booking and e-mail of ./.ticketblitz (not while `make run` runs).
reset:
	@if [ -f .ticketblitz/up.lock ] && ! flock -n .ticketblitz/up.lock true; then \
		echo "ticketblitz up runs on .ticketblitz: make stop first"; exit 2; fi
	rm -rf .ticketblitz

clean:
	rm -rf $(VENV) .ticketblitz .pytest_cache .mypy_cache .ruff_cache
