# The one command surface; CI runs `make test` through .ci/run.
.PHONY: setup lint test unit integration bench chaos chaos-long demo run clean

setup:           ## install redis-server (apt) and .venv with all dependencies
	scripts/setup.sh

lint: setup      ## ruff, ruff format --check, mypy --strict, import-linter
	scripts/lint.sh

test:            ## everything CI runs: setup, lint, all test suites, quick benchmarks
	scripts/test.sh

unit: setup
	.venv/bin/python -m pytest -p no:cacheprovider tests/unit

integration: setup
	.venv/bin/python -m pytest -p no:cacheprovider tests/integration tests/contract

bench: setup     ## benchmarks (add ARGS=--full for the long run)
	.venv/bin/python -m bench $(ARGS)

chaos: setup     ## fault-injection scenarios, 5 seeds each (ARGS=--long, ARGS="--scenario NAME --seeds N")
	.venv/bin/python -m tests.chaos $(ARGS)

chaos-long: setup  ## the long profile of every scenario (same as make chaos ARGS=--long)
	.venv/bin/python -m tests.chaos --long $(ARGS)

demo: setup      ## local demo without Docker
	.venv/bin/python -m tests.support.demo $(ARGS)

run:             ## the whole system in Docker (MongoDB replica set, Redis, watchers, replicas)
	docker compose up --build

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis
