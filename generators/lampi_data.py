"""The fake LAMPI users and devices the load tests use, as `manage.py loadtestingdata` makes them.

User n is `user_%06d`, its password the username reversed, and it owns the LAMPI whose device
id is `'%x' % (0x1e0000000000 + n)`. The HTTP learners and the MQTT devices both draw from here.
"""

from __future__ import annotations

DEVICE_ID_BASE = 0x1E0000000000


def username(n: int) -> str:
    return f"user_{n:06d}"


def device_id(n: int) -> str:
    return "%x" % (DEVICE_ID_BASE + n)


def credentials(n: int) -> tuple[str, str, str]:
    """Username, password and device id of fake user `n`."""
    name = username(n)
    return name, name[::-1], device_id(n)
