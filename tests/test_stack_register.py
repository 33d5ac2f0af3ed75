"""A stack service is declared in one place: `@register(name, ports=..., env=...)`."""

from __future__ import annotations

import sys
import urllib.request

import pytest

from stack import Stack, StackError, free_port, register
from stack.core import DEFAULT_PORTS, ENV_NAMES, SERVICES, Endpoint, Proc, Service


@pytest.fixture
def toy_registry():
    """Whatever a test registers is gone after it (the registry is module-wide)."""
    before = dict(SERVICES), dict(DEFAULT_PORTS), dict(ENV_NAMES)
    yield
    for registry, saved in zip((SERVICES, DEFAULT_PORTS, ENV_NAMES), before, strict=True):
        registry.clear()
        registry.update(saved)


def _http_ok(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
        return resp.status == 200


def test_a_service_declared_only_by_its_decorator_starts_on_its_default_port_and_names_its_url(
        toy_registry, tmp_path):
    default = free_port()

    @register("toy", ports={"toy": default}, env="LOCUST_TOY_URL")
    def toy(stack: Stack) -> Service:
        port = stack.port("toy")
        proc = Proc("toy", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                    ready=lambda: _http_ok(port), cwd=tmp_path)
        return Service("toy", [proc], Endpoint("toy", "127.0.0.1", port, f"http://127.0.0.1:{port}"))

    with Stack(tmp_path / "stack") as stack:
        endpoint = stack.start("toy")["toy"]
        assert endpoint.port == default
        assert _http_ok(default)
        assert stack.env() == {"LOCUST_TOY_URL": f"http://127.0.0.1:{default}"}


def test_a_port_key_without_a_declared_default_is_a_one_line_error(toy_registry, tmp_path):
    @register("toy")
    def toy(stack: Stack) -> Service:
        port = stack.port("toy-admin")
        return Service("toy", [], Endpoint("toy", "127.0.0.1", port, f"http://127.0.0.1:{port}"))

    with pytest.raises(StackError) as err, Stack(tmp_path / "stack") as stack:
        stack.start("toy")
    assert "'toy-admin' has no default" in str(err.value) and "STACK_TOY_ADMIN_PORT" in str(err.value)
    assert "\n" not in str(err.value)

