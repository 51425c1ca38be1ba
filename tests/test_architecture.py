"""The product's architecture rules (issue #19, DESIGN.md "Which way dependencies point"), read from the source.

Checked with the standard library's ``ast`` only, without importing the product:

- no module over ``MAX_LINES`` lines;
- no import cycle among module-level imports (``from pkg import submodule`` is an edge to the submodule only;
  imports under ``if TYPE_CHECKING:`` do not run and are left out);
- no private (single leading underscore) name imported from another project module;
- DESIGN.md's dependency table, at module and function level;
- every function-level import of a project module carries a comment (on its line or the line above) saying why it
  is not at module level (the cycle it breaks, an optional heavy dependency, the app registry not ready, ...).

A failure names the module, the line and the rule broken.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "core",
    "timeseries",
    "galfriday_site",
    "trading",
    "ingest",
    "kraken_sim",
    "models_registry",
    "reconciliation",
    "experiments",
    "alerting",
    "notifications",
    "dashboard",
)
APPS = tuple(p for p in PACKAGES if p != "core")
MAX_LINES = 800
# Linter and type-checker directives are not reasons.
DIRECTIVE = re.compile(
    r"noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore(\[[^\]]*\])?|pragma:\s*\S+( \S+)?|fmt:\s*\w+"
)
DJANGO_FAMILY = ("django", "rest_framework", "channels", "simple_history", "celery", "django_filters")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the project module (or, for a name, the module that holds it) the statement loads
    names: tuple[str, ...]  # names taken with ``from target import ...`` (empty for ``import target``)
    in_function: bool
    type_checking: bool
    commented: bool

    def where(self) -> str:
        return f"{module_path(self.module)}:{self.line} ({self.module})"


@cache
def modules() -> dict[str, Path]:
    """Every module of the product packages, migrations excluded, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "migrations" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def module_path(module: str) -> str:
    return str(modules()[module].relative_to(ROOT))


def is_package(module: str) -> bool:
    return modules()[module].name == "__init__.py"


def is_project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package(module):
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _commented(lines: list[str], node: ast.stmt, explained: set[int]) -> bool:
    """A real comment (not only a linter or type-checker directive) on the statement's lines or the line above, or
    the statement follows directly an explained import (one comment explains a block of imports); `explained` holds
    the last lines of the imports explained so far."""
    end = node.end_lineno or node.lineno
    if node.lineno - 1 in explained or _has_comment(lines, node.lineno, end):
        explained.add(end)
        return True
    return False


def _has_comment(lines: list[str], start: int, end: int) -> bool:

    def reason(text: str) -> bool:
        if "#" not in text:
            return False
        return bool(DIRECTIVE.sub("", text.split("#", 1)[1]).strip(" ()#"))

    if any(reason(lines[i - 1]) for i in range(start, end + 1)):
        return True
    above = lines[start - 2].strip() if start >= 2 else ""
    return above.startswith("#") and reason(above)


def _walk(module: str, tree: ast.AST, lines: list[str]) -> Iterator[Import]:
    explained: set[int] = set()

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(
                    module, node.lineno, alias.name, (), in_function, type_checking, _commented(lines, node, explained)
                )
            return
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = tuple(alias.name for alias in node.names)
            yield Import(
                module, node.lineno, target, names, in_function, type_checking, _commented(lines, node, explained)
            )
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, in_function, True)
            for child in node.orelse:
                yield from visit(child, in_function, type_checking)
            return
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner, type_checking)

    yield from visit(tree, False, False)


@cache
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for module, path in modules().items():
        source = path.read_text()
        found.extend(_walk(module, ast.parse(source, str(path)), source.splitlines()))
    return tuple(found)


def project_targets(imp: Import) -> list[str]:
    """The project modules an import loads: ``from pkg import sub`` is an edge to ``pkg.sub`` only."""
    if not is_project(imp.target):
        return []
    if not imp.names:
        return [imp.target]
    subs = [f"{imp.target}.{name}" for name in imp.names if f"{imp.target}.{name}" in modules()]
    return subs if len(subs) == len(imp.names) else [*subs, imp.target]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_module_over_the_line_limit() -> None:
    too_long = []
    for module, path in modules().items():
        count = len(path.read_text().splitlines())
        if count > MAX_LINES:
            too_long.append(f"{module_path(module)} ({module}): {count} lines")
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(too_long)


def test_no_import_cycle_among_module_level_imports() -> None:
    graph: dict[str, dict[str, int]] = {m: {} for m in modules()}
    for imp in imports():
        if imp.in_function or imp.type_checking:
            continue
        for target in project_targets(imp):
            if target in modules() and target != imp.module:
                graph[imp.module].setdefault(target, imp.line)

    cycles = _cycles(graph)
    described = []
    for cycle in cycles:
        steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
        described.append("  " + "; ".join(steps))
    assert not cycles, "import cycles among module-level imports:\n" + "\n".join(described)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(_one_cycle(graph, set(component)))
    return components


def _one_cycle(graph: dict[str, dict[str, int]], members: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, for the message."""
    start = min(members)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in graph[node]:
                if child == start:
                    return paths[node]
                if child in members and child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    return sorted(members)


def test_no_private_name_imported_across_modules() -> None:
    private = [
        f"{imp.where()}: imports {name} from {imp.target}"
        for imp in imports()
        if is_project(imp.target) and imp.target != imp.module
        for name in imp.names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private, "private names imported across modules (make them public or move the code):\n" + "\n".join(
        private
    )


ON_TOP = ("alerting", "notifications", "dashboard")
DOMAIN = ("core", "timeseries", "trading", "ingest", "kraken_sim", "models_registry", "reconciliation", "experiments")

# DESIGN.md, "Which way dependencies point": (importing package, forbidden prefixes, exception prefixes allowed).
FORBIDDEN: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("ingest.kraken", (*PACKAGES, *DJANGO_FAMILY), ("ingest.kraken",)),
    ("kraken_sim", (*PACKAGES, *DJANGO_FAMILY), ("kraken_sim",)),
    ("trading", ("models_registry", "experiments"), ()),
    ("ingest", ("models_registry", "experiments"), ()),
    ("models_registry", ("experiments",), ()),
    ("reconciliation", ("models_registry", "experiments"), ()),
    ("core", APPS, ()),
    # The dashboard and alerting sit on top: they read every app, and no domain app imports them.
    *((domain, ON_TOP, ()) for domain in DOMAIN),
    ("notifications", ("dashboard",), ()),
    ("alerting", ("dashboard",), ()),
)


def test_dependency_table_of_design_md() -> None:
    broken = []
    for imp in imports():
        for package, forbidden, allowed in FORBIDDEN:
            if not within(imp.module, package):
                continue
            if any(within(imp.target, ok) for ok in allowed):
                continue
            hit = next((f for f in forbidden if within(imp.target, f)), None)
            if hit is not None:
                level = "function-level" if imp.in_function else "module-level"
                broken.append(f"{imp.where()}: {package} must not import {hit} ({level} import of {imp.target})")
    assert not broken, "DESIGN.md's dependency table broken:\n" + "\n".join(broken)


def test_function_level_imports_say_why() -> None:
    silent = [
        f"{imp.where()}: function-level import of {imp.target}"
        for imp in imports()
        if imp.in_function and is_project(imp.target) and not imp.commented
    ]
    assert not silent, (
        "function-level imports of project modules without a comment saying why (the cycle they break, an optional "
        "heavy dependency, the app registry not ready, ...); move them to module level if nothing stops it:\n"
        + "\n".join(silent)
    )


def test_the_rules_see_the_product() -> None:
    """The walk finds the packages and their imports (a wrong root would make every rule above pass vacuously)."""
    assert {"trading.models", "ingest.kraken.book", "core.audit", "timeseries.base"} <= set(modules())
    assert any(imp.module == "trading.models" and imp.target.startswith("core") for imp in imports())
    assert _cycles({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}) == [["a", "b", "c"]]
    lines = [
        "def f():",
        "    # breaks the cycle x <-> y",
        "    from core import audit",
        "    from core import errors",
        "",
        "    import trading.models  # noqa: E402",
        "from trading import _x",
    ]
    found = list(_walk("core.x", ast.parse("\n".join(lines)), lines))
    assert [(i.target, i.in_function, i.commented) for i in found] == [
        ("core", True, True),
        ("core", True, True),
        ("trading.models", True, False),
        ("trading", False, False),
    ]
