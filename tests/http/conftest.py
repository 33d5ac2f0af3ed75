"""Fixtures for the HTTP learners: a browser-like session against the LAMPI site, and small test sites."""

from __future__ import annotations

import re
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def login(base_url: str, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """Log in through the form like a browser; returns the session and the POST's response."""
    s = requests.Session()
    form = s.get(f"{base_url}/login/", timeout=10)
    token = CSRF.search(form.text).group(1)
    resp = s.post(
        f"{base_url}/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/"},
        headers={"Referer": f"{base_url}/login/"},
        allow_redirects=False,
        timeout=10,
    )
    return s, resp


@pytest.fixture
def site_db(site):
    """A connection to the site's SQLite database (read and, for session tests, delete)."""
    conn = sqlite3.connect(Path(site.extra["data_dir"]) / "db.sqlite3", timeout=20)
    yield conn
    conn.close()


class FakeSite:
    """A small LAMPI-like site on a free loopback port: a login form, the three pages, a request log.

    `pages` overrides answers by path (a trailing `*` matches any rest): {"/lampi/": (302,
    "/login/?next=/lampi/")} sends that page to the login form, {"/lampi/device/*": (500, None)}
    breaks every device page.
    """

    def __init__(self, pages: dict[str, tuple[int, str | None]]) -> None:
        self.pages = pages
        self.log: list[tuple[str, str, int]] = []  # method, path, status
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.log if (m, p.split("?")[0]) == (method, path))

    def answer(self, method: str, path: str) -> tuple[int, str | None, bytes]:
        bare = path.split("?")[0]
        if bare == "/login/":
            if method == "POST":
                return 302, "/", b""
            return 200, None, b'<form><input type="hidden" name="csrfmiddlewaretoken" value="t0ken"></form>'
        for pattern, (status, location) in self.pages.items():
            if bare == pattern or (pattern.endswith("*") and bare.startswith(pattern[:-1])):
                return status, location, b"page"
        if bare == "/lampi":
            return 301, "/lampi/", b""  # Django's APPEND_SLASH
        return 200, None, b"page"

    def _handler(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nginx answers

            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, location, body = site.answer(self.command, self.path)
                with site.lock:
                    site.log.append((self.command, self.path, status))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_site():
    """Start FakeSite(pages) for this test; every one started is stopped afterwards."""
    sites: list[FakeSite] = []

    def start(pages: dict[str, tuple[int, str | None]]) -> FakeSite:
        sites.append(FakeSite(pages))
        return sites[-1]

    yield start
    for s in sites:
        s.close()
