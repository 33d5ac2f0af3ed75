## make kafka-test   Kafka end to end: local Tansu, reference stream processor, producers, E2E latency (MESSAGES=, DELAY_MS=)
MESSAGES ?= 20000
DELAY_MS ?= 0

.PHONY: kafka-test
kafka-test: setup
	@set -e; trap 'kill $$proc 2>/dev/null; $(PY) -m stack down >/dev/null' EXIT; \
	$(PY) -m stack up kafka clickhouse; \
	source $(RUN_DIR)/stack/stack.env; \
	$(PY) -m targets.streams.topics performance-test performance-test-out; rm -f $(RUN_DIR)/streams.ready; \
	$(PY) -m targets.streams.processor --input-topic performance-test --output-topic performance-test-out \
	  --delay-ms $(DELAY_MS) --session-timeout-ms 6000 --ready-file $(RUN_DIR)/streams.ready \
	  > $(RUN_DIR)/streams-processor.log 2>&1 & proc=$$!; \
	for i in $$(seq 300); do [ -f $(RUN_DIR)/streams.ready ] && break; sleep 0.1; done; \
	$(PY) -m loadtesting.run kafka --users 10 --spawn-rate 10 --run-time 10m --kafka-messages $(MESSAGES) \
	  --kafka-latency-topic performance-test-out
