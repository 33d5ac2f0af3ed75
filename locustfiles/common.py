"""Plumbing shared by the locustfiles: one-line option errors and module-name hygiene."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from pathlib import Path


class OptionError(SystemExit):
    """A bad option: Locust exits with this one line (no traceback) and a non-zero code."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def require(ok: bool, message: str) -> None:
    """Exit with `message` (name the bad value and what was expected) unless `ok`."""
    if not ok:
        raise OptionError(message)


def restore_stdlib_module(name: str) -> None:
    """Put the standard library's `name` package back into sys.modules.

    Locust registers a locustfile under its file name, so `locustfiles/http.py` would hide
    the `http` package from everything imported after it (``http.server``, ``HTTPStatus``).
    """
    init = Path(sysconfig.get_paths()["stdlib"]) / name / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Submodules already imported keep working; re-attach them to the fresh package.
    for key, sub in list(sys.modules.items()):
        if key.startswith(name + ".") and key.count(".") == 1:
            setattr(module, key.split(".", 1)[1], sub)
    sys.modules[name] = module
