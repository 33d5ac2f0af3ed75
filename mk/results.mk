## make capacity     HTTP capacity search on the local site (PROFILE=baseline|tuned) or HOST=…, then its report; STEP=, STEP_TIME=, RESOLUTION=
## make report       markdown report with charts of RUN=<run-id> (default: the newest run in results/)
STEP       ?= 500
STEP_TIME  ?= 30
RESOLUTION ?= 100
RUN        ?=

.PHONY: capacity report
capacity: $(call stack_or_venv,$(HOST))
	$(if $(HOST),,$(PY) -m stack run --site-profile $(PROFILE) --site-data --) \
	  $(PY) -m loadtesting.run http $(if $(HOST),--host "$(HOST)") --run-tags capacity,$(PROFILE) --capacity-search \
	  --capacity-start-users 10 --capacity-step $(STEP) --capacity-step-time $(STEP_TIME) \
	  --capacity-resolution $(RESOLUTION) --spawn-rate $(SPAWN_RATE)

report: venv
	$(PY) -m loadtesting.report $(RUN)
