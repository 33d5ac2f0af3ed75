## make kafka-test   Kafka end to end: local Tansu, reference stream processor, producers, E2E latency (MESSAGES=, DELAY_MS=)
MESSAGES ?= 20000
DELAY_MS ?= 0

.PHONY: kafka-test
kafka-test: setup
	$(PY) -m stack run kafka clickhouse -- $(PY) -m loadtesting.streams_run --messages $(MESSAGES) --delay-ms $(DELAY_MS)
