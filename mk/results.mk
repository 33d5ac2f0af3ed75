## make capacity     HTTP capacity search on the local site (PROFILE=baseline|tuned) or HOST=…, then its report; STEP=, STEP_TIME=, RESOLUTION=
## make report       markdown and HTML report with charts of RUN=<run-id> (default: the newest run in results/); BASELINE=<run-id> adds a comparison
## make compare      compare RUN=<run-id> with BASELINE=<run-id> (loadtesting.compare); FAIL_ON=p95:+10%,rps:-5% gates (exit 1)
STEP       ?= 500
STEP_TIME  ?= 30
RESOLUTION ?= 100
RUN        ?=
BASELINE   ?=
FAIL_ON    ?=

.PHONY: capacity report compare
capacity: $(call stack_or_venv,$(HOST))
	$(if $(HOST),,$(PY) -m stack run --site-profile $(PROFILE) --site-data --) \
	  $(PY) -m loadtesting.run http $(if $(HOST),--host "$(HOST)") --run-tags capacity,$(PROFILE) --capacity-search \
	  --capacity-start-users 10 --capacity-step $(STEP) --capacity-step-time $(STEP_TIME) \
	  --capacity-resolution $(RESOLUTION) --spawn-rate $(SPAWN_RATE)

report: venv
	$(PY) -m loadtesting.report $(RUN) $(if $(BASELINE),--baseline $(BASELINE))

compare: venv
	@if [ -z "$(BASELINE)" ] || [ -z "$(RUN)" ]; then echo "error: make compare needs BASELINE=<run-id> RUN=<run-id>" >&2; exit 2; fi
	$(PY) -m loadtesting.compare $(BASELINE) $(RUN) $(if $(FAIL_ON),--fail-on $(FAIL_ON))
