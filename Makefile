PYTHON ?= python3
export PYTHONPATH := $(CURDIR)

.PHONY: install infra-up infra-down up test test-unit test-integration test-e2e test-faults bench compose-check

# Unset, ENVIRONMENT means production: every development target says which environment it is.
up: export ENVIRONMENT = local
test test-unit test-integration test-e2e test-faults bench: export ENVIRONMENT = test

install:
	$(PYTHON) -m pip install -q -e '.[test]'

KAFKA_BROKERS ?= 1

infra-up:
	KAFKA_BROKERS=$(KAFKA_BROKERS) bash scripts/infra-up.sh

infra-down:
	bash scripts/infra-down.sh

up: install
	$(PYTHON) -m ops up

test: test-unit test-integration test-e2e test-faults

test-unit:
	$(PYTHON) -m pytest -q tests/unit

# two test processes, each module's tests in one of them (every module makes its own databases and
# topics; none stops the broker or PostgreSQL, unlike e2e's broker outage and the fault suite)
test-integration:
	$(PYTHON) -m pytest -q -n 2 --dist loadfile tests/integration

test-e2e:
	$(PYTHON) -m pytest -q tests/e2e

test-faults:
	$(PYTHON) -m pytest -q tests/faults

bench:
	$(PYTHON) -m pip install -q -e '.[bench]'
	$(PYTHON) -m bench.run

compose-check:
	docker compose config -q
