"""Fixtures for the HTTP learners: a browser-like session against the LAMPI site."""

from __future__ import annotations

import re
import sqlite3
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
