"""The LAMPI reference site behaves as the LAMPI brief describes."""

from __future__ import annotations

import random

import requests

from generators.lampi_data import credentials
from tests.helpers import load_site_users
from tests.http.conftest import login


def test_login_works_for_random_fake_users(site):
    for n in random.Random(7).sample(range(10_000), 15):
        username, password, _ = credentials(n)
        session, resp = login(site.url, username, password)
        assert resp.status_code == 302 and resp.headers["Location"] == "/", username
        home = session.get(f"{site.url}/", allow_redirects=False, timeout=10)
        assert home.status_code == 200 and username in home.text


def test_wrong_password_is_refused(site):
    _, resp = login(site.url, "user_000001", "user_000001")
    assert resp.status_code == 200 and "didn't match" in resp.text


def test_pages_require_login(site):
    for path in ("/", "/lampi/", "/lampi/device/1e0000000001"):
        resp = requests.get(f"{site.url}{path}", allow_redirects=False, timeout=10)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login/"), path


def test_lampi_without_slash_is_a_301_to_lampi_slash(site):
    # Django's APPEND_SLASH, as on a course site: before the login check, for anyone.
    username, password, _ = credentials(3)
    session, _ = login(site.url, username, password)
    for client in (requests, session):
        resp = client.get(f"{site.url}/lampi", allow_redirects=False, timeout=10)
        assert (resp.status_code, resp.headers["Location"]) == (301, "/lampi/")


def test_device_page_with_a_trailing_slash_is_404(site):
    username, password, device = credentials(3)
    session, _ = login(site.url, username, password)
    assert session.get(f"{site.url}/lampi/device/{device}/", allow_redirects=False, timeout=10).status_code == 404


def test_owner_sees_own_device_page(site):
    username, password, device = credentials(42)
    session, _ = login(site.url, username, password)
    resp = session.get(f"{site.url}/lampi/device/{device}", allow_redirects=False, timeout=10)
    assert resp.status_code == 200 and device in resp.text


def test_device_page_of_another_user_is_404(site):
    username, password, _ = credentials(42)
    _, _, other_device = credentials(43)
    session, _ = login(site.url, username, password)
    resp = session.get(f"{site.url}/lampi/device/{other_device}", allow_redirects=False, timeout=10)
    assert resp.status_code == 404


def test_lampi_list_shows_the_users_device(site):
    username, password, device = credentials(9_999)
    session, _ = login(site.url, username, password)
    resp = session.get(f"{site.url}/lampi/", allow_redirects=False, timeout=10)
    assert resp.status_code == 200 and device in resp.text


def test_unknown_path_is_404(site):
    username, password, _ = credentials(1)
    session, _ = login(site.url, username, password)
    assert session.get(f"{site.url}/nope", allow_redirects=False, timeout=10).status_code == 404


def test_loadtestingdata_twice_leaves_exactly_10000_users(site, site_db):
    load_site_users(site, count=10_000)  # the fixture already ran it once
    users = site_db.execute("SELECT count(*) FROM auth_user WHERE username LIKE 'user_%'").fetchone()[0]
    lamps = site_db.execute("SELECT count(*) FROM lampi_lampi").fetchone()[0]
    mismatched = site_db.execute(
        "SELECT count(*) FROM lampi_lampi l JOIN auth_user u ON u.id = l.user_id "
        "WHERE printf('%x', 32985348833280 + CAST(substr(u.username, 6) AS INTEGER)) != l.device_id"
    ).fetchone()[0]
    assert (users, lamps, mismatched) == (10_000, 10_000, 0)
