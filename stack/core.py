"""The local stack's core: the registry of services (the one list: factories by name, their default
ports and URL variables, all declared by `@register` in stack.services and stack.ralph), process supervision (start,
poll readiness, stop by PID) and the `Stack` itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plumbing.ports import free_port

REPO = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    """A server could not be started or did not become ready; the message is one line."""


@dataclass
class Endpoint:
    """Where a running service listens; `url` is what the suite's options take."""

    name: str
    host: str
    port: int
    url: str
    extra: dict = field(default_factory=dict)


@dataclass
class Proc:
    """One process of a service; `ready` is polled until it returns True."""

    label: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout: float = 60.0


@dataclass
class Service:
    name: str
    procs: list[Proc]
    endpoint: Endpoint
    requires: tuple[str, ...] = ()
    prepare: Callable[[], None] | None = None


# Filled by `register`, the one place a service is declared: its factory, the default ports of
# its port keys and the suite's environment variable for its URL.
SERVICES: dict[str, Callable[[Stack], Service]] = {}
DEFAULT_PORTS: dict[str, int] = {}
ENV_NAMES: dict[str, str] = {}


def register(name: str, *, ports: dict[str, int] | None = None, env: str | None = None) -> Callable:
    """Declare the stack service `name`: decorates its factory `f(stack) -> Service`.

    `ports` are the default ports of the keys the factory passes to `Stack.port` (fixed ports of
    `make demo`'s stack, away from the servers' standard ports so a system service on the same
    machine does not collide; STACK_<KEY>_PORT overrides one). `env` is the suite's environment
    variable for the service's URL (written to `stack.env` and by `python -m stack env`).
    """

    def deco(factory: Callable[[Stack], Service]) -> Callable[[Stack], Service]:
        SERVICES[name] = factory
        DEFAULT_PORTS.update(ports or {})
        if env:
            ENV_NAMES[name] = env
        return factory

    return deco


def env_for(endpoints: dict[str, Endpoint]) -> dict[str, str]:
    """The suite's environment variables for these endpoints (what `stack.env` holds)."""
    return {ENV_NAMES[n]: e.url for n, e in endpoints.items() if n in ENV_NAMES}


def poll_until(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Call `cond` until it returns something truthy; raise StackError naming `what` on timeout.

    Exceptions from `cond` count as "not yet" (a server that is still starting refuses
    connections), the last one is named in the error.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = cond()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
        if time.monotonic() > deadline:
            why = f" (last error: {type(last).__name__}: {last})" if last else ""
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}{why}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group of `pid`, SIGKILL it if it outlives `timeout`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:  # not our child: poll for existence instead
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


class Stack:
    """Servers on loopback under `run_dir`.

    `ports` pins ports by key (e.g. ``{"clickhouse": 19000}``); keys not given get
    STACK_<KEY>_PORT, else free ports when `free_ports` is set (the tests), else the default
    ports their services declared with `register`. `options` are service settings such as ``{"site_profile": "tuned"}``.
    `host` is the address servers listen on and endpoints name (another host's address in the
    multi-host tests); `exec_prefix` goes before each server's command (e.g. ``ip netns exec NS``).
    """

    def __init__(
        self,
        run_dir: Path | str,
        *,
        ports: dict[str, int] | None = None,
        free_ports: bool = False,
        options: dict | None = None,
        host: str = "127.0.0.1",
        exec_prefix: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.exec_prefix = tuple(exec_prefix)
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        self._ports = dict(ports or {})
        self._free = free_ports
        self.options = dict(options or {})
        self._running: dict[str, tuple[Service, list[subprocess.Popen]]] = {}
        self._order: list[str] = []

    # -- helpers for service factories --------------------------------------------------
    def port(self, key: str) -> int:
        if key not in self._ports:
            env = os.environ.get(f"STACK_{key.upper().replace('-', '_')}_PORT")
            if env:
                self._ports[key] = int(env)
            elif self._free:
                self._ports[key] = free_port()
            elif key in DEFAULT_PORTS:
                self._ports[key] = DEFAULT_PORTS[key]
            else:
                raise StackError(f"port {key!r} has no default: declare it in @register(..., ports={{{key!r}: ...}}) "
                                 f"or set STACK_{key.upper().replace('-', '_')}_PORT")
        return self._ports[key]

    def dir(self, name: str) -> Path:
        d = self.run_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def endpoint(self, name: str) -> Endpoint:
        if name not in self._running:
            raise StackError(f"service {name!r} is not running in this stack")
        return self._running[name][0].endpoint

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return {n: s.endpoint for n, (s, _) in self._running.items()}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, *names: str) -> dict[str, Endpoint]:
        """Start `names` (and what they require) unless running; return their endpoints."""
        for name in names:
            self._start_one(name, chain=())
        self._save_state()
        return {n: self.endpoint(n) for n in names}

    def _start_one(self, name: str, chain: tuple[str, ...]) -> None:
        if name in self._running:
            return
        if name in chain:
            raise StackError(f"service dependency cycle: {' -> '.join(chain + (name,))}")
        factory = SERVICES.get(name)
        if factory is None:
            choices = ", ".join(sorted(SERVICES))
            raise StackError(f"unknown service {name!r}; expected one of: {choices}")
        service: Service = factory(self)
        for dep in service.requires:
            self._start_one(dep, chain + (name,))
        if service.prepare:
            service.prepare()
        procs: list[subprocess.Popen] = []
        self._running[name] = (service, procs)
        self._order.append(name)
        for proc in service.procs:
            procs.append(self._spawn(name, proc))

    def _spawn(self, name: str, proc: Proc) -> subprocess.Popen:
        log = self.run_dir / "logs" / f"{proc.label}.log"
        with open(log, "ab") as out:
            try:
                p = subprocess.Popen(
                    [*self.exec_prefix, *proc.argv],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=proc.cwd,
                    env={**os.environ, **proc.env},
                    start_new_session=True,
                )
            except FileNotFoundError:
                self.stop()
                raise StackError(
                    f"{proc.label}: program {proc.argv[0]!r} not found (run `make setup`)"
                ) from None

        def ready() -> bool:
            if p.poll() is not None:
                raise _Exited(p.returncode)
            return proc.ready()

        try:
            poll_until(ready, proc.timeout, f"{proc.label} to be ready", interval=0.05)
        except (StackError, _Exited) as exc:
            why = f"exited with code {exc.code}" if isinstance(exc, _Exited) else str(exc)
            self._running[name][1].append(p)
            self.stop()
            raise StackError(f"{proc.label} did not start: {why}; log {log}: {_tail(log)}") from None
        return p

    def pids(self, name: str) -> list[int]:
        """The process ids of a running service (tests pause a server with SIGSTOP through them)."""
        return [p.pid for p in self._running[name][1]]

    def stop(self, *names: str) -> None:
        """Stop `names` (default: everything), in reverse start order."""
        targets = [n for n in reversed(self._order) if not names or n in names]
        for name in targets:
            _, procs = self._running.pop(name)
            self._order.remove(name)
            for p in reversed(procs):
                stop_pid(p.pid)
        self._save_state()

    def restart(self, name: str) -> Endpoint:
        """Stop and start one service on the same ports (used to test outages)."""
        self.stop(name)
        return self.start(name)[name]

    def env(self) -> dict[str, str]:
        """Environment variables pointing the suite at this stack."""
        return env_for(self.endpoints)

    def _save_state(self) -> None:
        state = {
            n: {"pids": [p.pid for p in procs], "endpoint": asdict(s.endpoint)}
            for n, (s, procs) in self._running.items()
        }
        state_file = self.run_dir / "stack.json"
        if state:
            state_file.write_text(json.dumps({"order": self._order, "services": state}, indent=1))
        elif state_file.exists():
            state_file.unlink()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def stop_from_state(run_dir: Path | str) -> list[str]:
    """Stop what a `python -m stack up` in another process started (by the PIDs it saved)."""
    state_file = Path(run_dir) / "stack.json"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    stopped = []
    for name in reversed(state["order"]):
        for pid in reversed(state["services"][name]["pids"]):
            stop_pid(pid)
        stopped.append(name)
    state_file.unlink()
    return stopped
