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

        return gevent.get_hub().threadpool.apply(fn, args, kwargs)
    return fn(*args, **kwargs)
