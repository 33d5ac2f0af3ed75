# pipeline-loadtest — every target installs what it needs first (idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
RUN_DIR := .run

# HTTP run settings (make http-test / demo); every LOCUST_* variable also works.
HOST       ?=
USERS      ?= 100
SPAWN_RATE ?= 10
RUN_TIME   ?= 60s
PROFILE    ?= baseline
BACKEND    ?=

.PHONY: help setup apt browser venv venv-ralph demo test lint http-test bench stack-up stack-down stack-status clean

# What a target that may start the local stack needs: against a given host (HOST, MQTT_HOST …) only
# the venv, so `make http-test HOST=https://…` installs no servers; without one, the stack's packages.
stack_or_venv = $(if $(strip $(1)),venv,setup)

help:
	@echo "make demo        local stack, 10,000 LAMPI users, a 60 s headless HTTP test, 5,000 tracking events through the reference pipeline (BACKEND=)"
	@echo "make test        run the test suite (real servers on free loopback ports)"
	@echo "make http-test   headless HTTP run against HOST (default: the local site; USERS, SPAWN_RATE, RUN_TIME)"
	@echo "make bench       generator benchmarks against native tools (ratios)"
	@echo "make stack-up / stack-down / stack-status   the local stack (PROFILE=baseline|tuned)"
	@echo "make lint        ruff"
	@for f in mk/*.mk; do [ -e "$$f" ] && grep -h '^## ' "$$f" | sed 's/^## //'; done; true

setup: apt venv venv-ralph

# Debian packages (stack/packages.py lists them), only those missing; the system's python3, before any venv.
apt:
	@python3 -m stack.packages stack

# Headless Chromium and its driver: only the test of the web UI's Pipeline page in a browser needs them.
browser:
	@python3 -m stack.packages browser

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@# The checkout itself goes on the venv's path, so `locust -f locustfiles/…` imports the suite from anywhere.
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/pipeline-loadtest.pth", "w").write(sys.argv[1])' "$(CURDIR)"
	@touch $@

# Ralph (the reference LRS of --pipeline-backend ralph) pins its own click/pydantic: its own venv.
venv-ralph: venv
	@$(PY) -c 'from stack.ralph import ensure_venv; ensure_venv()'

stack-up: setup
	$(PY) -m stack up --site-profile $(PROFILE)

stack-down:
	@[ -x $(PY) ] && $(PY) -m stack down || true

stack-status:
	$(PY) -m stack status

# The main job: local stack, 10,000 users, a headless HTTP run; results/<run-id>/ printed at the end.
demo: setup
	$(PY) -m stack run --site-profile $(PROFILE) --site-data -- \
	  $(PY) -m loadtesting.demo --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME) $(if $(BACKEND),--backend $(BACKEND))

# Two pytest workers: most tests wait on real servers and runs of fixed length, not on the CPU.
TEST_JOBS ?= 2
test: setup browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadgroup

lint: venv
	$(VENV)/bin/ruff check .

http-test: $(call stack_or_venv,$(HOST))
	$(if $(HOST),,$(PY) -m stack run site --site-profile $(PROFILE) --site-data --) \
	  $(PY) -m loadtesting.run http $(if $(HOST),--host "$(HOST)") --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME)

bench: setup
	$(PY) -m bench $(BENCH)

# Each capability adds its targets in mk/<area>.mk (lines starting `## ` show in `make help`).
-include mk/*.mk

clean: stack-down
	rm -rf $(RUN_DIR) .pytest_cache
