"""Hosts for distributed runs: Linux network namespaces the test session makes, on a bridge of its own.

Each host is a network namespace with one address on a private /24 (the first of 10.213.N.0/24 that
no route or address of this machine uses), joined by a bridge made for the session; the test process
reaches them through the bridge's address (.1). Servers and Locust processes start inside a host with
`ip netns exec`, so each sees only its own loopback and the bridge: a default that points at
127.0.0.1 finds nothing there. Everything is removed at the end of the session, also after a failure
half way through building it (processes in the namespaces by their ids, the namespaces, the bridge).

    sut      the system under test: the LAMPI site, Mosquitto, Redis (the reference pipeline's bus), Tansu
    ch       ClickHouse
    master   the Locust master
    w1, w2   the Locust workers
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stack import Stack
from tests.helpers import REPO, load_site_users, wait_for

HOSTS = {"sut": 10, "ch": 11, "master": 20, "w1": 21, "w2": 22}
# Fresh namespaces have every port free: the stacks there use fixed ones.
PORTS = {"clickhouse": 9000, "clickhouse-http": 8123, "site": 8080, "site-wsgi": 8081, "mosquitto": 1883,
         "redis": 6379, "kafka": 9092}


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.213.0.0/16 that overlaps no address or route of this machine."""
    used = []
    for what in (["-4", "route", "show", "table", "all"], ["-4", "addr", "show"]):
        out = subprocess.run(["ip", *what], capture_output=True, text=True).stdout
        for word in out.split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    for n in range(200, 256):
        net = ipaddress.ip_network(f"10.213.{n}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4 and u.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 in 10.213.200-255.0: every one is in use on this machine")


@dataclass
class Host:
    name: str
    ns: str
    addr: str

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*argv), cwd=kw.pop("cwd", REPO), start_new_session=True, **kw)

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*argv), cwd=kw.pop("cwd", REPO), **kw)


@dataclass
class Topology:
    net: ipaddress.IPv4Network
    bridge: str
    hosts: dict[str, Host]
    stacks: dict[str, Stack] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def stack(self, host: str, root: Path) -> Stack:
        """The servers of `host` (one Stack per host, listening on its address)."""
        if host not in self.stacks:
            h = self.hosts[host]
            self.stacks[host] = Stack(root / host, ports=PORTS, host=h.addr, exec_prefix=tuple(h.argv()),
                                      options={"clickhouse_networks": [str(self.net)]})
        return self.stacks[host]


def build(tag: str) -> Topology:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2 (make setup installs it)")
    net = free_subnet()
    addr = [str(a) for a in net]  # addr[n] is .n
    topo = Topology(net, f"lt{tag}br", {})
    try:
        ip("link", "add", topo.bridge, "type", "bridge")
        ip("addr", "add", f"{addr[1]}/{net.prefixlen}", "dev", topo.bridge)
        ip("link", "set", topo.bridge, "up")
        for name, n in HOSTS.items():
            host = Host(name, f"lt{tag}-{name}", addr[n])
            topo.hosts[name] = host
            outside, inside = f"lt{tag}{name}0", f"lt{tag}{name}1"
            ip("netns", "add", host.ns)
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", host.ns)
            ip("link", "set", outside, "master", topo.bridge, "up")
            ip("-n", host.ns, "addr", "add", f"{host.addr}/{net.prefixlen}", "dev", inside)
            ip("-n", host.ns, "link", "set", inside, "up")
            ip("-n", host.ns, "link", "set", "lo", "up")
    except BaseException:
        teardown(topo)
        raise
    return topo


def teardown(topo: Topology) -> None:
    for s in topo.stacks.values():
        s.stop()
    for host in topo.hosts.values():
        # What still runs inside our namespaces was started by this session: end it by its ids.
        pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)
    subprocess.run(["ip", "link", "del", topo.bridge], capture_output=True)  # takes the veths' outer ends along


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def topology(tmp_path_factory) -> Topology:
    topo = build(f"{os.getpid() % 100000:05d}"[-4:])
    try:
        yield topo
    finally:
        teardown(topo)


@pytest.fixture(scope="session")
def hosts_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hosts")


@pytest.fixture(scope="session")
def ch(topology, hosts_root):
    """ClickHouse on host `ch`."""
    return topology.stack("ch", hosts_root).start("clickhouse")["clickhouse"]


@pytest.fixture(scope="session")
def sut_site(topology, hosts_root):
    """The LAMPI site on host `sut`, with 1,000 users."""
    endpoint = topology.stack("sut", hosts_root).start("site")["site"]
    load_site_users(endpoint, count=1_000)
    return endpoint


@pytest.fixture(scope="session")
def sut_redis(topology, hosts_root):
    return topology.stack("sut", hosts_root).start("redis")["redis"]


@pytest.fixture(scope="session")
def sut_mosquitto(topology, hosts_root):
    return topology.stack("sut", hosts_root).start("mosquitto")["mosquitto"]


@pytest.fixture(scope="session")
def sut_kafka(topology, hosts_root):
    return topology.stack("sut", hosts_root).start("kafka")["kafka"]


__all__ = ["Host", "Topology", "reachable", "wait_for"]
