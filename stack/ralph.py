"""The `ralph` stack service: Ralph's LRS API under uvicorn, statements stored by its fs backend.

Ralph lives in its own venv (`.venv-ralph`, from targets/ralph/requirements.txt; `make setup`
builds it, and so does the first start) because it pins click and pydantic versions of its own.
One LRS user is created with `ralph auth`; its password comes from RALPH_LOADTEST_PASSWORD or is
generated into `<run dir>/ralph/password` (mode 0600), which `--ralph-password-file` reads.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import subprocess
import sys
from pathlib import Path

from stack.core import REPO, Endpoint, Proc, Service, Stack, StackError, register
from stack.services import http_ok

VENV = Path(os.environ.get("RALPH_VENV", REPO / ".venv-ralph"))
REQUIREMENTS = REPO / "targets" / "ralph" / "requirements.txt"
USERNAME = "loadtest"


def ensure_venv() -> Path:
    """Build .venv-ralph once (idempotent; a lock keeps parallel starts from building it twice)."""
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= REQUIREMENTS.stat().st_mtime:
        return VENV
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(str(VENV) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.stat().st_mtime >= REQUIREMENTS.stat().st_mtime:
            return VENV
        for cmd in ([sys.executable, "-m", "venv", str(VENV)],
                    [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                last = (done.stderr or done.stdout).strip().splitlines()[-1:]
                raise StackError(f"ralph: building {VENV} failed: {' '.join(last)}")
        stamp.touch()
    return VENV


@register("ralph", ports={"ralph": 18100}, env="LOCUST_RALPH_URL")
def ralph(stack: Stack) -> Service:
    port = stack.port("ralph")
    home = stack.dir("ralph")
    data, auth, password_file = home / "data", home / "auth.json", home / "password"
    env = {"RALPH_APP_DIR": str(home / "app"), "RALPH_AUTH_FILE": str(auth), "RALPH_RUNSERVER_BACKEND": "fs",
           "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(data), "RALPH_SENTRY_DSN": ""}
    workers = str(stack.options.get("ralph_workers", 1))

    def prepare() -> None:
        venv = ensure_venv()
        data.mkdir(exist_ok=True)
        if not password_file.exists():
            password = os.environ.get("RALPH_LOADTEST_PASSWORD") or secrets.token_urlsafe(18)
            password_file.touch(mode=0o600)
            password_file.write_text(password)
        if auth.exists():
            auth.unlink()  # one user, with the current password
        # The password goes to ralph's prompt (and its confirmation) on stdin, not into argv, which
        # any local user can read in the process list.
        password = password_file.read_text()
        done = subprocess.run([str(venv / "bin" / "ralph"), "auth", "-u", USERNAME, "-s", "all",
                               "-M", f"mailto:{USERNAME}@example.com", "-w"], input=f"{password}\n{password}\n",
                              env={**os.environ, **env}, capture_output=True, text=True)
        if done.returncode:
            raise StackError(f"ralph: creating the LRS user failed: {(done.stderr or done.stdout).strip()[-200:]}")

    proc = Proc("ralph", [str(VENV / "bin" / "python"), "-m", "uvicorn", "ralph.api:app", "--host", stack.host,
                          "--port", str(port), "--workers", workers, "--no-access-log"],
                ready=lambda: http_ok(f"http://{stack.host}:{port}/__heartbeat__"), env=env, cwd=home)
    endpoint = Endpoint("ralph", stack.host, port, f"http://{stack.host}:{port}",
                        {"username": USERNAME, "password_file": str(password_file), "data_dir": str(data)})
    return Service("ralph", [proc], endpoint, prepare=prepare)
