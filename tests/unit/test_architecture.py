"""The layout's rules (docs/architecture.md), checked on the source so a break fails here.

- ``producer_tasks`` never imports ``orchestrator_bridge`` (dependencies run one way);
- ``orchestrator_bridge.protocol`` imports nothing of ours outside itself;
- the CLI entry module and the protocol load neither Celery, kombu nor the SDKs;
- no module is over 400 lines, no function over 60;
- only ``producer_tasks.state`` talks to Redis (no ``import redis``, no ``.redis`` client);
- no import cycles (not even behind ``TYPE_CHECKING``), no imports after the first function
  or class of a module;
- every third-party package the code imports is declared in ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("producer_tasks", "orchestrator_bridge")
MAX_LINES = 400
HEAVY = ("celery", "kombu", "openai", "anthropic")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    found = {
        module_name(p): p
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if p.name != "__main__.py"  # entry scripts: they run, nobody imports them
    }
    found["celeryconfig"] = ROOT / "celeryconfig.py"
    return found


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, *, runtime_only: bool = False) -> Iterator[tuple[ast.stmt, str]]:
    """Every (import statement, imported name); ``runtime_only`` skips TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text(), str(path))
    known = sources()

    def walk(node: ast.AST) -> Iterator[ast.stmt]:
        for child in ast.iter_child_nodes(node):
            if runtime_only and is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            yield from walk(child)

    for node in walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                yield node, candidate if candidate in known else node.module


def test_producer_tasks_never_imports_the_bridge() -> None:
    offending = [
        f"{name}: {imported}"
        for name, path in sources().items()
        if name.startswith("producer_tasks")
        for _, imported in imports(path)
        if imported.split(".")[0] == "orchestrator_bridge"
    ]
    assert offending == []


def test_the_protocol_is_a_leaf() -> None:
    ours = {*PACKAGES, "celeryconfig"}
    offending = [
        f"{name}: {imported}"
        for name, path in sources().items()
        if name.startswith("orchestrator_bridge.protocol")
        for _, imported in imports(path)
        if imported.split(".")[0] in ours and not imported.startswith("orchestrator_bridge.protocol")
    ]
    assert offending == []


@pytest.mark.parametrize(
    "module", ["orchestrator_bridge.cli", "orchestrator_bridge.protocol", "producer_tasks.settings"]
)
def test_light_modules_load_no_heavy_dependency(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert loaded == "", f"importing {module} loads {loaded}"


def test_no_module_is_over_the_limit() -> None:
    long = {
        name: n for name, path in sources().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_only_the_state_layer_talks_to_redis() -> None:
    offending = []
    for name, path in sources().items():
        if name.startswith("producer_tasks.state") or name == "celeryconfig":
            continue
        offending += [f"{name}: import {i}" for _, i in imports(path) if i.split(".")[0] == "redis"]
        tree = ast.parse(path.read_text())
        offending += [
            f"{name}:{node.lineno}: .redis"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "redis"
        ]
    assert offending == []


def test_no_import_cycles() -> None:
    """Not even behind ``TYPE_CHECKING``: a cycle there is the same tangle of concepts."""
    known = sources()
    graph = {name: {i for _, i in imports(path) if i in known and i != name} for name, path in known.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


MAX_FUNCTION_LINES = 60


def test_no_function_is_over_the_limit() -> None:
    """Product code: no function or method over 60 lines (docstring included)."""
    long = {}
    for name, path in sources().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = length
    assert long == {}


def test_imports_stand_at_the_top() -> None:
    late = []
    for name, path in sources().items():
        seen_definition = False
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                seen_definition = True
            elif seen_definition and isinstance(node, ast.Import | ast.ImportFrom):
                late.append(f"{name}:{node.lineno}")
    assert late == []


# import name -> distribution, where the two differ
DISTRIBUTIONS = {"yaml": "pyyaml", "prometheus_client": "prometheus-client", "typing_extensions": "typing-extensions"}


def test_every_imported_package_is_declared() -> None:
    """``pip install .`` must bring everything the product imports (prometheus_client, httpx2
    and httpcore2 used to arrive only through other packages)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(text).name.lower() for text in project["dependencies"]}
    declared |= {Requirement(text).name.lower() for text in project["optional-dependencies"]["local"]}
    stdlib = set(sys.stdlib_module_names)
    ours = {"producer_tasks", "orchestrator_bridge", "celeryconfig"}
    missing = set()
    for path in sources().values():
        for _, name in imports(path):
            top = name.split(".")[0]
            if top and top not in stdlib and top not in ours and top != "__future__":
                distribution = DISTRIBUTIONS.get(top, top).replace("_", "-").lower()
                if distribution not in declared:
                    missing.add(top)
    assert missing == set(), "imported but not declared in pyproject.toml's dependencies"
