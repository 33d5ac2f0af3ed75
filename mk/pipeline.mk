## make pipeline-test  tracking events through the reference pipeline: BACKEND= (python -m loadtesting.pipeline_run --help), EVENTS=20000 EPS=1000 WORKERS=2 BATCH=100
EVENTS  ?= 20000
EPS     ?= 1000
WORKERS ?= 2
BATCH   ?= 100

.PHONY: pipeline-test
pipeline-test: setup
	$(PY) -m stack run clickhouse redis kafka -- \
	  $(PY) -m loadtesting.pipeline_run $(BACKEND) --events $(EVENTS) --eps $(EPS) --workers $(WORKERS) --batch $(BATCH)

## make pipeline-capacity  the events/s the reference pipeline sustains and what limits it: BACKEND=… WORKERS=2 BATCH=100 (CAPACITY_ARGS="--capacity-start-rate 100 …")
CAPACITY_ARGS ?=

.PHONY: pipeline-capacity
pipeline-capacity: setup
	$(PY) -m stack run clickhouse redis kafka -- \
	  $(PY) -m loadtesting.pipeline_run $(BACKEND) --workers $(WORKERS) --batch $(BATCH) --capacity $(CAPACITY_ARGS)
