## make pipeline-test  tracking events through the reference pipeline: BACKEND=celery|vector|redis_bus|kafka_bus, EVENTS=20000 EPS=1000 WORKERS=2 BATCH=100
EVENTS  ?= 20000
EPS     ?= 1000
WORKERS ?= 2
BATCH   ?= 100

.PHONY: pipeline-test
pipeline-test: setup
	@set -e; services="clickhouse redis"; [ "$(BACKEND)" = kafka_bus ] && services="$$services kafka"; \
	trap '$(PY) -m stack down >/dev/null' EXIT; \
	$(PY) -m stack up $$services; source $(RUN_DIR)/stack/stack.env; \
	$(PY) -m loadtesting.pipeline_run $(BACKEND) --events $(EVENTS) --eps $(EPS) --workers $(WORKERS) --batch $(BATCH)

## make pipeline-capacity  the events/s the reference pipeline sustains and what limits it: BACKEND=… WORKERS=2 BATCH=100 (CAPACITY_ARGS="--capacity-start-rate 100 …")
CAPACITY_ARGS ?=

.PHONY: pipeline-capacity
pipeline-capacity: setup
	@set -e; services="clickhouse redis"; [ "$(BACKEND)" = kafka_bus ] && services="$$services kafka"; \
	trap '$(PY) -m stack down >/dev/null' EXIT; \
	$(PY) -m stack up $$services; source $(RUN_DIR)/stack/stack.env; \
	$(PY) -m loadtesting.pipeline_run $(BACKEND) --workers $(WORKERS) --batch $(BATCH) --capacity $(CAPACITY_ARGS)
