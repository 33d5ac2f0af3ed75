"""One table of exit codes: lifecycle.exit_codes.ExitCode; the documentation is its rendering and
no other module defines a code of its own."""

from __future__ import annotations

import ast

from lifecycle.exit_codes import ExitCode, render_table
from tests.helpers import REPO
from tests.test_layout import MAY_IMPORT, sources


def test_docs_show_the_exit_code_table_as_the_code_defines_it() -> None:
    assert render_table() in (REPO / "docs" / "exit-codes.md").read_text()


def test_interrupted_runs_exit_128_plus_the_signal_number() -> None:
    import signal

    assert (ExitCode.SIGINT, ExitCode.SIGTERM) == (128 + signal.SIGINT, 128 + signal.SIGTERM)


def test_no_module_but_lifecycle_defines_an_exit_code() -> None:
    defined = []
    for package in MAY_IMPORT:
        if package == "lifecycle":
            continue
        for path, tree in sources(package):
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign):
                    names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                    defined += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                                if n.startswith("EXIT_") and n != "EXIT_INTERRUPTED"]
    assert defined == []
