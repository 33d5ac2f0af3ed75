"""Local stack launcher: real servers on loopback under a run folder, no Docker.

One `Stack` starts, polls and stops ClickHouse, Redis, Mosquitto, Tansu (Kafka) and the
reference LAMPI site. `make demo` uses it through `python -m stack`, the tests through
`tests/conftest.py`. Every process is started in its own session and stopped by PID.
"""

from stack import ralph, services  # noqa: F401  - they register their services
from stack.core import SERVICES, Endpoint, Stack, StackError, free_port, register

__all__ = ["Endpoint", "Stack", "StackError", "free_port", "SERVICES", "register"]
