"""The image (read, not built: there is no Docker engine here) runs as a non-root user that can write its
run, spill and results folders, and its build context leaves out venvs, run folders and caches."""

from __future__ import annotations

import fnmatch
import re

from tests.helpers import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def ignored(path: str) -> bool:
    """Docker's .dockerignore rule for `path`: the last matching pattern decides (`!` re-includes); a
    pattern matching a folder leaves out everything under it; `**` matches any number of folders."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!")
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?")
        if any(re.fullmatch(regex, p) for p in prefixes):
            verdict = not negate
    return verdict


def test_runs_as_a_numeric_non_root_user():
    user = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    from loadtesting.k8s import UID

    assert int(uid) == UID


def test_the_user_owns_the_folders_the_suite_writes():
    # results/ (run folders), .run/monitor-spill (rows ClickHouse did not take), the spill setting pointing there.
    chown = re.search(r"chown -R (\d+):\d+ ([^\n\\]+)", DOCKERFILE)
    assert chown and chown.group(1) == re.findall(r"^USER\s+(\d+)", DOCKERFILE, re.M)[-1]
    owned = chown.group(2).split()
    assert "/app/results" in owned and "/app/.run" in owned
    assert "LOCUST_SPILL_DIR=/app/.run/monitor-spill" in DOCKERFILE


def test_build_context_leaves_out_venvs_results_and_caches():
    for path in (".venv/bin/python", ".venv-ralph/lib/x.py", ".venv-ralph.lock", "results/20261124-1/stats.json",
                 ".run/stack/stack.json", "monitors/__pycache__/loop.cpython-311.pyc", ".pytest_cache/v/x",
                 ".ruff_cache/x", ".git/HEAD"):
        assert ignored(path), path
    for path in ("locustfiles/http.py", "requirements.txt", "conf/tracking.conf", "targets/lampisite/manage.py",
                 "loadtesting/run.py"):
        assert not ignored(path), path
