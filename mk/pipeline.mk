## make pipeline-test  tracking events through the reference pipeline: BACKEND=celery|vector|redis_bus|kafka_bus, EVENTS=20000 EPS=1000 WORKERS=2 BATCH=100
EVENTS  ?= 20000
EPS     ?= 1000
WORKERS ?= 2
BATCH   ?= 100

.PHONY: pipeline-test
pipeline-test: setup
	@set -e; services="clickhouse redis"; [ "$(BACKEND)" = kafka_bus ] && services="$$services kafka"; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; $(PY) -m stack down >/dev/null' EXIT; \
	$(PY) -m stack up $$services; source $(RUN_DIR)/stack/stack.env; \
	rm -f $(RUN_DIR)/tracking.log $(RUN_DIR)/tracking.log.offset $(RUN_DIR)/pipeline.ready; \
	$(PY) -m targets.pipeline $(BACKEND) --workers $(WORKERS) --batch-size $(BATCH) \
	  --clickhouse-url "$$LOCUST_CLICKHOUSE_URL" --redis-url "$$LOCUST_REDIS_URL" --kafka-brokers "$${KAFKA_BROKERS:-127.0.0.1:9092}" \
	  --log-file $(RUN_DIR)/tracking.log --metrics-port 19598 --ready-file $(RUN_DIR)/pipeline.ready & pid=$$!; \
	for i in $$(seq 300); do [ -e $(RUN_DIR)/pipeline.ready ] && break; sleep 0.2; done; \
	monitor="--monitor-backend $(BACKEND)"; [ "$(BACKEND)" = kafka_bus ] && [ -z "$(KAFKA_MONITOR)" ] && monitor=""; \
	$(PY) -m loadtesting.run tracking --pipeline-backend $(BACKEND) $$monitor --num-events $(EVENTS) \
	  --events-per-second $(EPS) --vector-log-file $(RUN_DIR)/tracking.log \
	  --vector-metrics-url http://127.0.0.1:19598/metrics --kafka-bus-brokers "$${KAFKA_BROKERS:-127.0.0.1:9092}" \
	  --clickhouse-data-path $(RUN_DIR)/stack/clickhouse --run-tags pipeline,$(BACKEND),$(WORKERS)-workers,batch$(BATCH)
