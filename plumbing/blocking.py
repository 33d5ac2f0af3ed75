"""Run a blocking call without stalling the gevent loop Locust runs on.

Inside Locust (gevent monkey-patched) the call goes to gevent's native thread pool and the
calling greenlet waits cooperatively; standalone it is simply called.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _gevent_patched() -> bool:
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return monkey.is_module_patched("socket")


def run_blocking(fn: Callable[..., T], *args, **kwargs) -> T:
    if _gevent_patched():
        import gevent

        def guarded():
            # Exceptions come back as values: gevent's pool would print a traceback for them.
            try:
                return True, fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
                return False, exc

        ok, value = gevent.get_hub().threadpool.apply(guarded)
        if not ok:
            raise value
        return value
    return fn(*args, **kwargs)
