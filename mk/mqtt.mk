## make mqtt-test    headless LAMPI MQTT run against MQTT_HOST=mqtt://… (default: local Mosquitto); DEVICES=, SPAWN_RATE=, RUN_TIME=
MQTT_HOST ?=
DEVICES   ?= 500

.PHONY: mqtt-test
mqtt-test: $(call stack_or_venv,$(MQTT_HOST))
	@set -e; if [ -z "$(MQTT_HOST)" ]; then \
	  trap '$(PY) -m stack down >/dev/null' EXIT; \
	  $(PY) -m stack up mosquitto clickhouse; \
	  source $(RUN_DIR)/stack/stack.env; url=$$LOCUST_MQTT_URL; \
	else url="$(MQTT_HOST)"; fi; \
	$(PY) -m loadtesting.run mqtt --mqtt-url "$$url" --users $(DEVICES) --spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME)
