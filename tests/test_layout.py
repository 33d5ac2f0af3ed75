"""The layout's rules, read from the code: imports run down the layers, and run state stays off
Locust's Environment (plumbing.run_state and event hooks carry it)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from tests.helpers import REPO

BASE: set[str] = set()
# Each package and the suite's packages it may import: only those on the layers below.
MAY_IMPORT = {
    "plumbing": BASE,
    "openedx_erb": BASE,
    "stack": {"plumbing"},
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


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The tree of a source file (read once for all the rules below)."""
    return ast.parse(path.read_text(), str(path))


def sources(package: str, root: Path = REPO):
    for path in sorted((root / package).rglob("*.py")):
        yield path, parsed(path)


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


# -- options: declared, validated and read in the module that owns them --------------------------------
# Packages whose modules are Locust plugins (their options go on Locust's parser); bench/ and targets/
# are programs of their own.
PLUGIN_PACKAGES = ("plumbing", "backends", "lifecycle", "monitors", "loadtesting", "generators", "locustfiles")
OPTION_HOLDERS = {"o", "options", "opts", "parsed_options"}  # names an options namespace goes by


def _dest(call: ast.Call) -> str | None:
    """The dest of `add_argument("--name", …)`, or None for another call."""
    if not (isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument" and call.args
            and isinstance(call.args[0], ast.Constant) and str(call.args[0].value).startswith("--")):
        return None
    given = next((k.value.value for k in call.keywords if k.arg == "dest" and isinstance(k.value, ast.Constant)), None)
    return given or call.args[0].value[2:].replace("-", "_")


def _makes_a_parser(func: ast.AST) -> bool:
    """A function building a standalone program's parser (its options are that program's own)."""
    return any(isinstance(n, ast.Call) and (getattr(n.func, "attr", None) or getattr(n.func, "id", None))
               == "ArgumentParser" for n in ast.walk(func))


def option_declarations(root: Path = REPO) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """({option: modules declaring it on Locust's parser}, {module: every option it declares, its
    standalone programs' included})."""
    plugin: dict[str, set[str]] = {}
    every: dict[str, set[str]] = {}
    for package in PLUGIN_PACKAGES:
        for path, tree in sources(package, root):
            name = str(path.relative_to(root))
            standalone = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and _makes_a_parser(f)
                          for n in ast.walk(f)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and (dest := _dest(node)):
                    every.setdefault(name, set()).add(dest)
                    if id(node) not in standalone:
                        plugin.setdefault(dest, set()).add(name)
    return plugin, every


def _holder(node: ast.AST) -> bool:
    """`o`, `options`, `opts`, `parsed_options`, or any of them as an attribute (`self.o`, `env.parsed_options`)."""
    return (isinstance(node, ast.Name) and node.id in OPTION_HOLDERS) or \
        (isinstance(node, ast.Attribute) and node.attr in OPTION_HOLDERS)


def option_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, option) of `o.name`, `options.name`, `….parsed_options.name` and `getattr(o, "name", …)`."""
    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _holder(node.value):
            reads.append((node.lineno, node.attr))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and len(node.args) >= 2 and _holder(node.args[0]) and isinstance(node.args[1], ast.Constant):
            reads.append((node.lineno, str(node.args[1].value)))
    return reads


def cross_option_reads(root: Path = REPO) -> list[tuple[str, int, str]]:
    """(module, line, option) where a module reads a Locust option that another module declares."""
    plugin, every = option_declarations(root)
    found = []
    for package in PLUGIN_PACKAGES:
        for path, tree in sources(package, root):
            name = str(path.relative_to(root))
            found += [(name, line, option) for line, option in option_reads(tree)
                      if option in plugin and option not in every.get(name, set())]
    return found


def test_no_module_reads_an_option_another_declares() -> None:
    """Options are read where they are declared; the others call that module's functions (e.g.
    `monitors.locust_plugin.drain_timeout`) or take what its `from_options(o)` built."""
    found = [f"{module}:{line} reads {option}" for module, line, option in cross_option_reads()]
    assert found == []


def test_each_locust_option_is_declared_once() -> None:
    """Standalone programs (python -m monitors, report, compare …) declare their own; Locust plugins
    declare each option in one module."""
    plugin, _ = option_declarations()
    assert {option: sorted(modules) for option, modules in plugin.items() if len(modules) > 1} == {}
