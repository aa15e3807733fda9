# Entry point of the pipeline. `make help` lists the targets (built from the ## comments).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Relative config paths resolve against this folder; export absolute ones for tests.
export PIPELINE__CLUSTER__STATE_DIR ?= $(CURDIR)/.state
export PIPELINE__CLUSTER__ARTIFACTS_DIR ?= $(CURDIR)/.state/artifacts
export PIPELINE__POSTGRES__PASSWORD_FILE ?= $(PIPELINE__CLUSTER__STATE_DIR)/secrets/postgres.password

CARGO ?= cargo
PIPELINE := $(CARGO) run --quiet --bin pipeline --
SERVICE ?=

.PHONY: help demo deps build up down status logs produce submit follow jobs-status jobs-stop local verify dlq-list dlq-replay sample \
	config-check test test-unit lint fmt clean-state bench-produce bench-local bench-spark

demo: ## From nothing: services up, users produced, Spark job submitted, rows shown from Cassandra
	@cluster/scripts/demo.sh

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

deps: ## Install what is missing: apt packages (as root), Maven jars, pyspark, Airflow virtualenv (cached)
	@cluster/scripts/deps.sh

build: deps ## Build the workspace (the `pipeline` binary and the tests)
	$(CARGO) build --workspace --all-targets

up: build ## Start Kafka, registry, PostgreSQL, Cassandra, Spark master/worker/Connect, Airflow; wait until ready
	$(PIPELINE) cluster up

down: ## Stop every service `up` started
	$(PIPELINE) cluster down

status: ## Table of services: pid, ports, health, memory, UI URLs
	$(PIPELINE) cluster status

logs: ## Last log lines of every service, or of SERVICE=name
	$(PIPELINE) cluster logs $(SERVICE)

COUNT ?= 1000
SOURCE ?= synthetic
produce: build ## Produce COUNT users (default 1000) from SOURCE (synthetic|randomuser) to Kafka via the audit outbox
	$(PIPELINE) produce --source $(SOURCE) --count $(COUNT)

submit: build ## Start the Spark streaming job (Kafka -> transform -> Cassandra); returns once running
	$(PIPELINE) submit

follow: build ## Start the Spark job if needed and print a progress line per micro-batch (Ctrl-C leaves it running)
	$(PIPELINE) submit --follow

jobs-status: ## State and last progress of the Spark job's queries
	$(PIPELINE) jobs status

jobs-stop: ## Stop the Spark job gracefully (a later submit resumes from the checkpoint)
	$(PIPELINE) jobs stop

local: build ## Run the same transform locally on DataFusion until the topic is drained
	$(PIPELINE) local --until-idle

verify: ## Reconcile audit store, Kafka, Cassandra and dead letters; fails on any loss or audited user refused
	$(PIPELINE) verify

dlq-list: ## Dead letters by reason and engine: counts, audited, replayed, samples
	$(PIPELINE) dlq list

dlq-replay: ## Republish audited dead letters to the topic once (REASON=text, SINCE=2h|date|RFC 3339)
	$(PIPELINE) dlq replay $(if $(REASON),--reason "$(REASON)") $(if $(SINCE),--since "$(SINCE)")

sample: ## Row count and a few rows of spark_streams.created_users
	$(PIPELINE) sample

bench-produce: deps ## Producer records/s per stage vs Kafka's ProducerPerformance (needs `make up`; BENCH_RECORDS=N)
	$(CARGO) bench -p pipeline-producer --bench produce

BENCH_VENV := $(PIPELINE__CLUSTER__STATE_DIR)/bench-venv
bench-local: deps ## Local engine vs raw Cassandra inserts vs the seed's Python consumer; latency at 1,000/s (needs `make up`)
	@test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/pip install -q kafka-python lz4 cassandra-driver fastavro
	BENCH_PYTHON=$(BENCH_VENV)/bin/python $(CARGO) bench -p pipeline-jobs --bench local

bench-spark: deps ## Spark job rows/s from a backlog and produce->Cassandra latency at BENCH_RATE/s (needs `make up`)
	$(CARGO) bench -p pipeline-jobs --bench spark

config-check: ## Load every config layer and print all errors at once
	$(PIPELINE) config check

test: build ## lint + unit + integration tests on the real services (starts the cluster if needed, stops what it started)
	@cluster/scripts/test.sh

test-unit: ## Unit tests only (no services)
	$(CARGO) test --workspace --lib --bins

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

clean-state: down ## Stop the services, delete their data, logs and job checkpoints (keeps artifacts)
	rm -rf $(PIPELINE__CLUSTER__STATE_DIR)/data $(PIPELINE__CLUSTER__STATE_DIR)/logs $(PIPELINE__CLUSTER__STATE_DIR)/run \
	       $(PIPELINE__CLUSTER__STATE_DIR)/checkpoints $(PIPELINE__CLUSTER__STATE_DIR)/spark
