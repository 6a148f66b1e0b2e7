# Two commands for a new engineer: `make run` and `make test`. Both install what is missing.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: run test lint check bench install uv client browser

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --user --quiet uv \
		|| python3 -m pip install --user --quiet --break-system-packages uv

# Bytecode compiled when the dependencies change, not on every start (nor never, where
# PYTHONDONTWRITEBYTECODE is set): a start that compiles them from source takes twice as long.
install: uv .venv/.compiled
	@uv sync --locked --quiet
	@uv run --no-sync python -m compileall -q refit migrations bench >/dev/null

.venv/.compiled: uv.lock pyproject.toml
	@uv sync --locked --quiet --compile-bytecode && touch $@

# API + worker on http://127.0.0.1:8000 (REFIT_HOST / REFIT_PORT). Without
# REFIT_DATABASE_URL / REFIT_REDIS_URL it runs on a private PostgreSQL and Redis in ./.refit/.
run: install
	uv run --no-sync refit run

# The whole suite, on REFIT_TEST_DATABASE_URL / REFIT_TEST_REDIS_URL or the embedded servers.
# Three pytest-xdist workers on two cores (many tests wait on real processes), one test at a
# time each (--maxschedchunk 1) so the longest, handed out first (tests/conftest.py), spread
# out; one set of servers for the run. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3
test: install browser
	uv run pytest -n $(PYTEST_WORKERS) --maxschedchunk 1 $(PYTEST_ARGS)

lint: check
	uv run ruff format --check refit tests migrations bench
	uv run mypy

# ruff's rules, the security ones (S, flake8-bandit) among them: CI runs this before the suite.
check: install
	uv run ruff check refit tests migrations bench

bench: install
	uv run python -m bench

# What the dashboard's browser tests load into the page from node_modules, never from a CDN:
# axe-core (tests/dashboard/test_accessibility.py), pinned in tests/browser/package-lock.json.
# npm's cache answers when the registry does not.
browser: tests/browser/node_modules/.installed

tests/browser/node_modules/.installed: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --prefer-offline --silent
	@touch $@

# The typed TypeScript client of the web app (clients/typescript), regenerated from the API's
# OpenAPI document; `make test` fails while the committed one is stale.
client: install
	uv run refit openapi clients/typescript/openapi.json
	cd clients/typescript && npm ci --no-audit --no-fund && npm run generate && npm run typecheck
