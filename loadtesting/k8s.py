"""Kubernetes manifests for a distributed run: ``python -m loadtesting.k8s KIND [options] [-- locust options]``.

Prints the manifests of one run of a locustfile (http, mqtt, tracking, kafka) on Locust's own
distributed engine, to pipe into ``kubectl apply -f -`` (docs/kubernetes.md):

- headless (default): the master as a Job running ``python -m loadtesting.run KIND --master`` (the
  Job's status is the run's exit code; its run folder on a PersistentVolumeClaim, its rows in the
  ClickHouse of the ConfigMap), the workers as a Job of N pods, a headless Service they reach the
  master by;
- ``--web-ui``: the master as a Deployment with a Service for its web UI (``kubectl port-forward``),
  the workers as a Deployment;
- kafka: latency consumers as a Job of their own, and the master waits (an init container) until
  every consumer has joined the group before any producer sends.

Settings come from a ConfigMap and a Secret the user creates (keys named as the suite's variables,
e.g. ``LOCUST_CLICKHOUSE_URL``, ``CLICKHOUSE_PASSWORD``): referenced here, never written, so
applying again never overwrites them. The settings each kind cannot run without are referenced key
by key, so a pod whose ConfigMap lacks one does not start (kubelet says which key).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import yaml

IMAGE = "pipeline-loadtest:latest"
MASTER_PORT = 5557
WEB_PORT = 8089
UID = 10001  # the Dockerfile's user
RESULTS = "/app/results"  # the image's run folders (loadtesting.run --results)


@dataclass(frozen=True)
class Kind:
    required: tuple[str, ...]  # variables the run cannot go without (keys of the ConfigMap)
    worker_cpu: str = "1"
    worker_memory: str = "1Gi"


# A generator process uses one core (gevent); workers get one core each, the master less.
KINDS = {
    "http": Kind(required=("LOCUST_HOST", "LOCUST_CLICKHOUSE_URL")),
    "mqtt": Kind(required=("LOCUST_MQTT_URL", "LOCUST_CLICKHOUSE_URL")),
    "tracking": Kind(required=("LOCUST_PIPELINE_BACKEND", "LOCUST_CLICKHOUSE_URL")),
    "kafka": Kind(required=("KAFKA_BROKERS", "LOCUST_KAFKA_TOPIC", "LOCUST_CLICKHOUSE_URL")),
}
LATENCY_REQUIRED = ("KAFKA_BROKERS", "KAFKA_LATENCY_TOPIC")


def _labels(name: str, component: str) -> dict:
    return {"app.kubernetes.io/name": "pipeline-loadtest", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": component}


def _env(required: tuple[str, ...], config_map: str, secret: str) -> dict:
    """Every key of the ConfigMap and the (optional) Secret as variables, the required ones key by key."""
    return {
        "env": [{"name": key, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": key}}} for key in required],
        "envFrom": [{"configMapRef": {"name": config_map}}, {"secretRef": {"name": secret, "optional": True}}],
    }


def _security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _resources(cpu: str, memory: str) -> dict:
    # Memory limit = request: a generator that outgrows it is killed (OOMKilled in the pod's status),
    # not left to slow the node; CPU has no limit so throttling never skews response times.
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def _container(name: str, argv: list[str], env: dict, resources: dict, **more) -> dict:
    return {"name": name, "image": more.pop("image"), "imagePullPolicy": "IfNotPresent", "command": argv, **env,
            "resources": resources, "securityContext": _container_security(), **more}


def _pod(containers: list[dict], restart: str, labels: dict, volumes: list[dict], init: list[dict] | None = None) -> dict:
    spec: dict = {"restartPolicy": restart, "securityContext": _security()}
    if init:
        spec["initContainers"] = init
    spec["containers"] = containers
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": labels}, "spec": spec}


def render(kind: str, *, workers: int = 2, web_ui: bool = False, image: str = IMAGE, name: str | None = None,
           config_map: str = "pipeline-loadtest", secret: str = "pipeline-loadtest", results_claim: str | None = None,
           storage: str = "1Gi", latency_consumers: int = 2, extra: list[str] | None = None) -> list[dict]:
    """The manifests (as dicts, in apply order) of one distributed run of `kind`."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if workers < 1:
        raise ValueError(f"--workers {workers}: expected at least 1")
    name = name or f"loadtest-{kind}"
    spec, extra = KINDS[kind], list(extra or [])
    env = _env(spec.required, config_map, secret)
    master_host = f"{name}-master"
    docs: list[dict] = []
    claim = results_claim or f"{name}-results"
    if not results_claim:
        docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}})
    results_volume = {"name": "results", "persistentVolumeClaim": {"claimName": claim}}
    results_mount = {"name": "results", "mountPath": RESULTS}
    # The monitor keeps rows ClickHouse did not take in spill files: on the run's volume, so a
    # master that is restarted replays them; workers keep theirs in the pod.
    spill_env = [{"name": "LOCUST_SPILL_DIR", "value": f"{RESULTS}/.spill"}]
    master_labels, worker_labels = _labels(name, "master"), _labels(name, "worker")
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": master_host, "labels": master_labels},
                 "spec": {"clusterIP": "None", "selector": master_labels,
                          "ports": [{"name": "workers", "port": MASTER_PORT, "targetPort": MASTER_PORT}]}})
    conf = ["--config", f"conf/{kind}.conf"]
    master_res = _resources("500m", "1Gi")
    init = []
    if kind == "kafka" and latency_consumers:
        group = f"{name}-latency"
        docs.append(latency_job(name, group, latency_consumers, image, config_map, secret))
        init.append(_container("wait-for-consumers", [
            "python", "-m", "monitors.kafka_latency", "--group", group, "--wait-members", str(latency_consumers),
            "--idle-timeout", "300"], _env(LATENCY_REQUIRED, config_map, secret), _resources("100m", "256Mi"),
            image=image))
    if web_ui:
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-web", "labels": master_labels},
                     "spec": {"selector": master_labels,
                              "ports": [{"name": "web", "port": WEB_PORT, "targetPort": WEB_PORT}]}})
        argv = ["locust", "-f", f"locustfiles/{kind}.py", *conf, "--master", "--master-bind-port", str(MASTER_PORT),
                "--web-host", "0.0.0.0", "--web-port", str(WEB_PORT), *extra]
        master = _container("master", argv, {**env, "env": env["env"] + spill_env}, master_res, image=image,
                            ports=[{"containerPort": MASTER_PORT, "name": "workers"},
                                   {"containerPort": WEB_PORT, "name": "web"}],
                            volumeMounts=[results_mount],
                            readinessProbe={"httpGet": {"path": "/", "port": WEB_PORT}, "periodSeconds": 5})
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": master_host, "labels": master_labels},
                     "spec": {"replicas": 1, "selector": {"matchLabels": master_labels},
                              "template": _pod([master], "Always", master_labels, [results_volume], init)}})
    else:
        argv = ["python", "-m", "loadtesting.run", kind, "--results", RESULTS, "--master", "--expect-workers",
                str(workers), "--master-bind-port", str(MASTER_PORT), *extra]
        master = _container("master", argv, {**env, "env": env["env"] + spill_env}, master_res, image=image,
                            ports=[{"containerPort": MASTER_PORT, "name": "workers"}], volumeMounts=[results_mount])
        # backoffLimit 0: the Job's status is the one run's exit code (Failed: non-zero), never a rerun.
        docs.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": master_host, "labels": master_labels},
                     "spec": {"backoffLimit": 0, "template": _pod([master], "Never", master_labels, [results_volume], init)}})
    worker_argv = ["locust", "-f", f"locustfiles/{kind}.py", *conf, "--worker", "--master-host", master_host,
                   "--master-port", str(MASTER_PORT)]
    worker = _container("worker", worker_argv, env, _resources(spec.worker_cpu, spec.worker_memory), image=image)
    if web_ui:
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{name}-worker", "labels": worker_labels},
                     "spec": {"replicas": workers, "selector": {"matchLabels": worker_labels},
                              "template": _pod([worker], "Always", worker_labels, [])}})
    else:
        # A worker that starts before the master gives up connecting after a minute: OnFailure retries it.
        # Workers exit 0 when the master quits, so the Job completes with the run.
        docs.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{name}-worker", "labels": worker_labels},
                     "spec": {"completions": workers, "parallelism": workers, "backoffLimit": 3 * workers,
                              "template": _pod([worker], "OnFailure", worker_labels, [])}})
    return docs


def latency_job(name: str, group: str, consumers: int, image: str, config_map: str, secret: str) -> dict:
    """Kafka latency consumers on the pipeline's output topic, one group: they split its partitions."""
    labels = _labels(name, "latency")
    argv = ["python", "-m", "monitors.kafka_latency", "--group", group, "--idle-timeout", "300"]
    c = _container("latency", argv, _env(LATENCY_REQUIRED, config_map, secret), _resources("500m", "512Mi"), image=image)
    c["env"].append({"name": "LOCUST_SPILL_DIR", "value": "/tmp/monitor-spill"})
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{name}-latency", "labels": labels},
            "spec": {"completions": consumers, "parallelism": consumers, "backoffLimit": 0,
                     "template": _pod([c], "Never", labels, [])}}


def dump(docs: list[dict]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False, width=120) for d in docs)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(prog="python -m loadtesting.k8s", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", help=", ".join(KINDS))
    p.add_argument("--workers", type=int, default=2, help="worker pods (default %(default)s)")
    p.add_argument("--web-ui", action="store_true", help="the master with its web UI (a Deployment and a Service)")
    p.add_argument("--image", default=IMAGE, help=f"image, with its registry (default {IMAGE})")
    p.add_argument("--name", default=None, help="prefix of the objects' names (default loadtest-KIND)")
    p.add_argument("--config-map", default="pipeline-loadtest", help="ConfigMap of settings (default %(default)s)")
    p.add_argument("--secret", default="pipeline-loadtest", help="Secret of passwords (default %(default)s)")
    p.add_argument("--results-claim", default=None, help="an existing PersistentVolumeClaim for run folders "
                   "(default: one named NAME-results is part of the manifests)")
    p.add_argument("--latency-consumers", type=int, default=2, help="kafka: latency consumer pods (default %(default)s, 0: none)")
    args = p.parse_args(argv)
    try:
        docs = render(args.kind, workers=args.workers, web_ui=args.web_ui, image=args.image, name=args.name,
                      config_map=args.config_map, secret=args.secret, results_claim=args.results_claim,
                      latency_consumers=args.latency_consumers, extra=extra)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(dump(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
