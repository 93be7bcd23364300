"""The layers point one way, and no two modules import each other (directly or round a circle)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rules", "storage", "scheduler", "handlers", "bot")
WEB_AND_CLI = ("bot.app", "bot.webhook", "bot.dispatch", "bot.api", "bot.cli", "bot.context", "bot.router",
               "bot.dialogs", "bot.guards", "handlers", "flask")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (TYPE_CHECKING-only imports left out)."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name, tree = _module_name(path), ast.parse(path.read_text(encoding="utf-8"))
            found: set[str] = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    node.body = []
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                    found.update(f"{node.module}.{alias.name}" for alias in node.names)
            graph[name] = found
    return graph


GRAPH = _imports()


def _project(names: set[str]) -> set[str]:
    return {n for n in names if n in GRAPH}


def test_rules_import_nothing_else_of_the_project():
    for module, imported in GRAPH.items():
        if module.split(".")[0] == "rules":
            assert {n.split(".")[0] for n in _project(imported)} <= {"rules"}, module


@pytest.mark.parametrize("lower", ["storage", "scheduler"])
def test_lower_layers_never_import_the_web_or_cli_side(lower: str):
    for module, imported in GRAPH.items():
        if module.split(".")[0] == lower:
            upward = {n for n in imported if n.startswith(WEB_AND_CLI)}
            assert not upward, f"{module} imports {sorted(upward)}"


def test_storage_imports_only_rules_and_storage():
    for module, imported in GRAPH.items():
        if module.split(".")[0] == "storage":
            assert {n.split(".")[0] for n in _project(imported)} <= {"rules", "storage"}, module


def test_no_import_cycles():
    edges = {m: {n for n in _project(imported) if n != m} for m, imported in GRAPH.items()}
    # A package's __init__ gathering its own modules is not a cycle of the modules with it.
    for module in list(edges):
        edges[module] = {n for n in edges[module] if not module.startswith(n + ".")}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in edges.get(module, ()):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [module, nxt]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
