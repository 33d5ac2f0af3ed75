"""The layout's rules, read from the code: imports run down the layers, and run state stays off
Locust's Environment (plumbing.run_state and event hooks carry it)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

BASE: set[str] = set()
# Each package and the suite's packages it may import: only those on the layers below.
MAY_IMPORT = {
    "plumbing": BASE,
    "openedx_erb": BASE,
    "stack": BASE,
    "targets": {"plumbing", "openedx_erb"},
    "backends": {"plumbing", "openedx_erb"},
    "lifecycle": {"plumbing"},
    "monitors": {"plumbing", "openedx_erb", "backends", "lifecycle"},
    "loadtesting": {"plumbing", "openedx_erb", "backends", "lifecycle", "monitors"},
    "generators": {"plumbing", "openedx_erb", "backends", "lifecycle", "monitors", "loadtesting"},
    "locustfiles": {"plumbing", "openedx_erb", "backends", "lifecycle", "monitors", "loadtesting", "generators"},
    "bench": {"plumbing", "openedx_erb", "backends", "lifecycle", "monitors", "loadtesting", "generators",
              "locustfiles", "stack", "targets"},
}
SUITE = {*MAY_IMPORT, "tests"}
# Environment attributes Locust documents for users to set.
LOCUST_SETTABLE = {"process_exit_code", "shape_class"}


def sources(package: str):
    for path in sorted((REPO / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & SUITE


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


def test_packages_import_only_the_layers_below() -> None:
    wrong = [f"{path.relative_to(REPO)} imports {sorted(bad)}"
             for package, allowed in MAY_IMPORT.items() for path, tree in sources(package)
             if (bad := imported(tree) - allowed - {package})]
    assert wrong == []


def test_only_tests_import_tests() -> None:
    assert [str(p.relative_to(REPO)) for pkg in MAY_IMPORT for p, tree in sources(pkg) if "tests" in imported(tree)] == []


def _is_environment(node: ast.AST) -> bool:
    """`environment`, `env` or `<anything>.environment`."""
    return (isinstance(node, ast.Name) and node.id in ("environment", "env")) or \
        (isinstance(node, ast.Attribute) and node.attr == "environment")


def test_no_code_keeps_state_on_locusts_environment() -> None:
    found = []
    for package in MAY_IMPORT:
        for path, tree in sources(package):
            for node in ast.walk(tree):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
                found += [f"{where(path, node)} sets environment.{t.attr}" for t in targets
                          if isinstance(t, ast.Attribute) and _is_environment(t.value) and t.attr not in LOCUST_SETTABLE]
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" \
                        and node.args and _is_environment(node.args[0]):
                    found.append(f"{where(path, node)} setattr on the environment")
    assert found == []


def _entry_point_extras(tree: ast.Module) -> list[tuple[int, str]]:
    """What a locustfile holds besides its docstring, its imports and its Locust User classes."""
    from loadtesting.run import USER_BASES

    def is_user(node: ast.ClassDef) -> bool:
        return any((b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")) in USER_BASES
                   for b in node.bases)

    extras = []
    for i, node in enumerate(tree.body):
        docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if docstring or isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.ClassDef) and is_user(node):
            continue
        extras.append((node.lineno, type(node).__name__ + (f" {node.name}" if hasattr(node, "name") else "")))
    return extras


def test_locustfiles_hold_only_entry_points():
    """locustfiles/ is what `locust -f` is given: imports (the generators and plugins, registering their
    options and listeners) and User classes. Options, listeners, run state and helpers live in generators/."""
    found = [f"{path.relative_to(REPO)}:{line} {what}" for path, tree in sources("locustfiles")
             for line, what in _entry_point_extras(tree)]
    assert found == []


def test_the_entry_point_check_finds_library_code():
    tree = ast.parse('"""doc"""\nimport x\nfrom locust import User, events\nLIMIT = 3\n\n'
                     '@events.init.add_listener\ndef _init(environment, **kw):\n    pass\n\n'
                     'class Helper:\n    pass\n\nclass Device(User):\n    pass\n')
    assert _entry_point_extras(tree) == [(4, "Assign"), (7, "FunctionDef _init"), (10, "ClassDef Helper")]
