"""The Kubernetes manifests of every kind are valid for a current Kubernetes, and the commands they run
parse with the locustfile's own options, reading the settings the pods are given.

The manifests are rendered as users render them (`python -m loadtesting.k8s KIND`), validated with
kubernetes-validate --strict against Kubernetes 1.37, and each container's command is parsed by
Locust's own parser with the locustfile loaded (its `init_command_line_parser` options), in the
environment the pod would have: the ConfigMap's required keys and the container's literal values.
They have not been applied to a cluster here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, locust_env, log_of, parse_locust

K8S_VERSION = "1.37.0"  # the newest Kubernetes kubernetes-validate 1.37.0 knows
VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))
KINDS = ("http", "mqtt", "tracking", "kafka")
MODES = {"headless": [], "web-ui": ["--web-ui"]}

# What a user's ConfigMap holds (fake hosts: nothing connects); each value must reach an option.
SETTINGS = {
    "LOCUST_HOST": "http://site.example.test:8080",
    "LOCUST_MQTT_URL": "mqtt://broker.example.test:1883",
    "LOCUST_PIPELINE_BACKEND": "kafka_bus",
    "LOCUST_CLICKHOUSE_URL": "clickhouse://loadtest@clickhouse.example.test:9000/default",
    "KAFKA_BROKERS": "kafka.example.test:9092",
    "LOCUST_KAFKA_TOPIC": "topic-example",
    "KAFKA_LATENCY_TOPIC": "topic-example-out",
}

PARSE_LATENCY = """
import json, sys
from monitors.kafka_latency import parser
print(json.dumps(vars(parser().parse_args(json.loads(sys.argv[1]))), default=str))
"""


def render(kind: str, *args: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "loadtesting.k8s", kind, *args], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pods(docs: list[dict]) -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Job", "Deployment")]


def containers(docs: list[dict]) -> list[dict]:
    return [c for p in pods(docs) for c in p.get("initContainers", []) + p["containers"]]


def pod_env(container: dict) -> dict[str, str]:
    """The variables the container gets: required ConfigMap keys (from SETTINGS) and literal values."""
    env = {}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("configMapKeyRef")
        env[e["name"]] = SETTINGS[ref["key"]] if ref else e["value"]
    return env


def locust_argv(command: list[str]) -> list[str]:
    """What Locust is called with: the command itself, or what `python -m loadtesting.run` passes on."""
    if command[0] == "locust":
        return command[1:]
    assert command[:3] == ["python", "-m", "loadtesting.run"], command
    from loadtesting.run import build_command

    kind, rest = command[3], command[4:]
    at = rest.index("--results")
    folder = REPO / "results-not-made" / "run"
    return build_command(kind, folder, rest[:at] + rest[at + 2:])[1:]


def parse(container: dict) -> dict:
    command = container["command"]
    # The pod's environment: none of this process's settings, the container's own.
    env = {**{k: None for k in os.environ if k.startswith(("LOCUST_", "KAFKA_", "CLICKHOUSE_"))},
           **pod_env(container)}
    if command[:3] == ["python", "-m", "monitors.kafka_latency"]:
        done = subprocess.run([sys.executable, "-c", PARSE_LATENCY, json.dumps(command[3:])], cwd=REPO,
                              capture_output=True, text=True, env=locust_env(env), timeout=120)
    else:
        done = parse_locust(locust_argv(command), env=env)
    assert done.returncode == 0, f"{command}: {log_of(done.stderr)}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[tuple[str, str], list[dict]]:
    return {(kind, mode): render(kind, *args) for kind in KINDS for mode, args in MODES.items()}


def test_manifests_are_valid_for_a_current_kubernetes(rendered, tmp_path):
    files = []
    for (kind, mode), docs in rendered.items():
        path = tmp_path / f"{kind}-{mode}.yaml"
        path.write_text("---\n".join(yaml.safe_dump(d) for d in docs))
        files.append(str(path))
    done = subprocess.run([VALIDATE, "--strict", "--quiet", "-k", K8S_VERSION, *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # --strict rejects what a current API server would not take: a misspelt field fails.
    docs = rendered[("http", "headless")]
    job = next(d for d in docs if d["kind"] == "Job")
    job["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(job))
    assert subprocess.run([VALIDATE, "--strict", "--quiet", "-k", K8S_VERSION, str(bad)],
                          capture_output=True).returncode != 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_commands_parse_with_the_locustfiles_options_and_read_the_settings(rendered, kind, mode):
    for c in containers(rendered[(kind, mode)]):
        options = parse(c)
        given = pod_env(c)
        values = {str(v) for v in options.values()}
        for name, value in given.items():
            if name in SETTINGS:
                assert value in values, f"{c['name']}: {name} reaches no option of {c['command']}"
        if c["command"][0] == "locust" or "loadtesting.run" in c["command"]:
            assert options["locustfile"].endswith(f"locustfiles/{kind}.py")


@pytest.mark.parametrize("kind", KINDS)
def test_headless_master_is_a_job_whose_status_is_the_runs_exit_code(rendered, kind):
    docs = rendered[(kind, "headless")]
    master = next(d for d in docs if d["metadata"]["name"] == f"loadtest-{kind}-master" and d["kind"] == "Job")
    assert master["spec"]["backoffLimit"] == 0  # one run: Failed when its exit code is not 0
    pod = master["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    command = pod["containers"][0]["command"]
    assert command[:4] == ["python", "-m", "loadtesting.run", kind] and "--master" in command
    workers = next(d for d in docs if d["metadata"]["name"] == f"loadtest-{kind}-worker")
    assert command[command.index("--expect-workers") + 1] == str(workers["spec"]["parallelism"])
    # The run folder is on the claim; workers reach the master through its Service.
    mount = pod["containers"][0]["volumeMounts"][0]
    claim = next(v for v in pod["volumes"] if v["name"] == mount["name"])["persistentVolumeClaim"]["claimName"]
    assert mount["mountPath"] == command[command.index("--results") + 1]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim for d in docs)
    service = next(d for d in docs if d["kind"] == "Service")
    worker_cmd = workers["spec"]["template"]["spec"]["containers"][0]["command"]
    assert worker_cmd[worker_cmd.index("--master-host") + 1] == service["metadata"]["name"]
    assert service["spec"]["selector"] == master["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("kind", KINDS)
def test_web_ui_variant_is_a_deployment_with_a_service_for_the_ui(rendered, kind):
    docs = rendered[(kind, "web-ui")]
    master = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-master"))
    web = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-web"))
    assert web["spec"]["selector"] == master["spec"]["template"]["metadata"]["labels"]
    command = master["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--headless" not in command and command[command.index("--web-port") + 1] == str(web["spec"]["ports"][0]["port"])
    assert not any(d["kind"] == "Job" and d["metadata"]["name"].endswith("-master") for d in docs)


def test_settings_and_secrets_are_referenced_never_written(rendered):
    for docs in rendered.values():
        assert not [d for d in docs if d["kind"] in ("ConfigMap", "Secret")]
        for c in containers(docs):
            assert {"configMapRef": {"name": "pipeline-loadtest"}} in c["envFrom"]
            assert {"secretRef": {"name": "pipeline-loadtest", "optional": True}} in c["envFrom"]


def test_every_pod_runs_as_non_root_with_a_memory_limit(rendered):
    for docs in rendered.values():
        for pod in pods(docs):
            assert pod["securityContext"]["runAsNonRoot"] is True
            for c in pod.get("initContainers", []) + pod["containers"]:
                assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("mode", MODES)
def test_kafka_producers_start_after_every_latency_consumer_joined(rendered, mode):
    docs = rendered[("kafka", mode)]
    consumers = next(d for d in docs if d["metadata"]["name"] == "loadtest-kafka-latency")
    group = consumers["spec"]["template"]["spec"]["containers"][0]["command"]
    group = group[group.index("--group") + 1]
    master = next(d for d in docs if d["kind"] in ("Job", "Deployment") and d["metadata"]["name"] == "loadtest-kafka-master")
    wait = master["spec"]["template"]["spec"]["initContainers"][0]["command"]
    assert wait[wait.index("--group") + 1] == group
    assert wait[wait.index("--wait-members") + 1] == str(consumers["spec"]["parallelism"])
    # The order of the documents is the order kubectl applies them: consumers first.
    assert docs.index(consumers) < docs.index(master)


def test_a_bad_kind_is_one_error_line():
    done = subprocess.run([sys.executable, "-m", "loadtesting.k8s", "ftp"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: kind 'ftp': expected one of http, mqtt, tracking, kafka"]
