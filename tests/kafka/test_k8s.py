"""The Kubernetes manifests parse and run commands, files and options that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import LOCUST, REPO

K8S = REPO / "conf" / "k8s"


def documents() -> list[dict]:
    return [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def containers() -> list[dict]:
    out = []
    for d in documents():
        if d["kind"] in ("Job", "Deployment"):
            out += d["spec"]["template"]["spec"]["containers"]
    return out


def command_line(c: dict) -> list[str]:
    cmd = c.get("command", []) + c.get("args", [])
    if cmd[:2] == ["sh", "-c"]:
        return shlex.split(cmd[2].split("exec ", 1)[1])
    return cmd


def test_manifests_parse_and_use_the_image_the_dockerfile_builds():
    kinds = sorted(d["kind"] for d in documents())
    assert kinds.count("Job") == 2 and "Deployment" in kinds and "ConfigMap" in kinds
    assert "pipeline-loadtest:latest" in (REPO / "Dockerfile").read_text()
    assert {c["image"] for c in containers()} == {"pipeline-loadtest:latest"}


def test_producer_job_scales_by_completions_and_parallelism():
    job = next(d for d in documents() if d["kind"] == "Job" and d["metadata"]["name"] == "kafka-producer")
    assert job["spec"]["completions"] >= 1 and job["spec"]["parallelism"] >= 1


def test_config_maps_and_secrets_referenced_exist():
    defined = {(d["kind"], d["metadata"]["name"]) for d in documents()}
    for c in containers():
        for env in c.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                assert ("ConfigMap", ref["configMapKeyRef"]["name"]) in defined
            if "secretKeyRef" in ref:
                assert ("Secret", ref["secretKeyRef"]["name"]) in defined


def test_commands_name_existing_files_and_options():
    helps = {
        # Locust's own options, plus the ones the locustfile and the monitor plugin register.
        "locust": subprocess.run([LOCUST, "--help"], cwd=REPO, capture_output=True, text=True).stdout
        + (REPO / "locustfiles" / "kafka.py").read_text() + (REPO / "monitors" / "locust_plugin.py").read_text(),
        "monitors.kafka_latency": subprocess.run([sys.executable, "-m", "monitors.kafka_latency", "--help"],
                                                 cwd=REPO, capture_output=True, text=True).stdout,
    }
    for c in containers():
        argv = command_line(c)
        if argv[0] == "locust":
            assert (REPO / argv[argv.index("-f") + 1]).is_file()
            text = helps["locust"]
        else:
            assert argv[:2] == ["python", "-m"] and (REPO / Path(*argv[2].split("."))).with_suffix(".py").is_file()
            text = helps[argv[2]]
        for opt in (a for a in argv if a.startswith("--")):
            assert re.search(rf"(^|[\s\"]){re.escape(opt)}[\s=,\"]", text, re.M), opt
