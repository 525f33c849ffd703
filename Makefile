# One command vocabulary: `make help` lists it.
SHELL := /bin/sh
UV := $(shell ./scripts/ensure-uv.sh)
export UV_FROZEN := 1

.PHONY: help install run test check bench fmt clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: ## Install Pimlico and its development tools into .venv (from uv.lock)
	@$(UV) sync --quiet

run: install ## Migrate the local SQLite store, load the demo, serve on http://127.0.0.1:8000
	@$(UV) run pimlico db upgrade
	@$(UV) run pimlico demo load --if-empty
	@$(UV) run pimlico demo sign-ins
	@$(UV) run pimlico serve --host 127.0.0.1 --port 8000

test: install ## Run the whole test suite, 3 workers (PostgreSQL tests use PIMLICO_TEST_POSTGRES_URL)
	@$(UV) run pytest -q -n 3 --dist loadfile

check: install ## Lint, format check and strict type check
	@$(UV) run ruff check src tests bench examples
	@$(UV) run ruff format --check src tests bench examples
	@$(UV) run mypy

bench: ## Run the benchmarks and print their figures (see docs/performance.md)
	@$(UV) sync --quiet --group bench
	@$(UV) run --group bench python -m bench

fmt: install ## Format the code and apply safe lint fixes
	@$(UV) run ruff format src tests bench examples
	@$(UV) run ruff check --fix src tests bench examples

clean: ## Remove the local store and caches
	rm -rf pimlico.db pimlico.db-wal pimlico.db-shm .pytest_cache .mypy_cache .ruff_cache
