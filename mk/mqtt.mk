## make mqtt-test    headless LAMPI MQTT run against MQTT_HOST=mqtt://… (default: local Mosquitto); DEVICES=500, SPAWN_RATE= (100 devices/s), RUN_TIME=
MQTT_HOST ?=
DEVICES   ?= 500
# Devices connect at conf/mqtt.conf's 100/s unless SPAWN_RATE is given (the HTTP targets' 10/s would spend
# 50 s of a 60 s run connecting 500 devices; the run warns when the ramp takes over a third of it).
DEVICE_SPAWN_RATE = $(if $(filter command line environment environment override,$(origin SPAWN_RATE)),$(SPAWN_RATE),100)

.PHONY: mqtt-test
mqtt-test: $(call stack_or_venv,$(MQTT_HOST))
	$(if $(MQTT_HOST),,$(PY) -m stack run mosquitto clickhouse --) $(PY) -m loadtesting.run mqtt \
	  $(if $(MQTT_HOST),--mqtt-url "$(MQTT_HOST)") --users $(DEVICES) --spawn-rate $(DEVICE_SPAWN_RATE) --run-time $(RUN_TIME)
