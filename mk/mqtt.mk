## make mqtt-test    headless LAMPI MQTT run against MQTT_HOST=mqtt://… (default: local Mosquitto); DEVICES=, SPAWN_RATE=, RUN_TIME=
MQTT_HOST ?=
DEVICES   ?= 500

.PHONY: mqtt-test
mqtt-test: setup
	$(if $(MQTT_HOST),,$(PY) -m stack run mosquitto clickhouse --) $(PY) -m loadtesting.run mqtt \
	  $(if $(MQTT_HOST),--mqtt-url "$(MQTT_HOST)") --users $(DEVICES) --spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME)
