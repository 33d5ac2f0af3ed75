"""The tuned site profile serves the same pages with its own settings."""

from __future__ import annotations

import pytest

from generators.lampi_data import credentials
from stack import Stack, StackError
from tests.helpers import load_site_users
from tests.http.conftest import login


@pytest.fixture(scope="module")
def tuned_site(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("tuned"), free_ports=True, options={"site_profile": "tuned"})
    try:
        endpoint = s.start("site")["site"]
        load_site_users(endpoint, count=100)
        yield endpoint
    finally:
        s.stop()


def test_tuned_profile_keeps_sessions_in_signed_cookies(tuned_site):
    username, password, device = credentials(7)
    session, resp = login(tuned_site.url, username, password)
    assert resp.status_code == 302
    assert session.cookies["sessionid"].count(":") >= 2  # signed_cookies: payload:timestamp:signature
    assert session.get(f"{tuned_site.url}/lampi/device/{device}", timeout=10).status_code == 200


def test_unknown_site_profile_is_refused(tmp_path):
    with pytest.raises(StackError, match="site profile 'fast' is unknown; expected baseline or tuned"):
        Stack(tmp_path, free_ports=True, options={"site_profile": "fast"}).start("site")
