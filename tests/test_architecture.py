"""The layers of docs/architecture.md, checked over the import graph of pipeline/ and dashboard/.

Imports under `if TYPE_CHECKING:` are annotations only and are ignored; imports inside functions count,
because a deferred import is still a dependency (and the usual way to hide a circle).
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "dashboard")

BASE = {
    f"pipeline.{name}"
    for name in (
        "config",
        "errors",
        "logs",
        "columns",
        "ranges",
        "lazy",
        "schemas",
        "models",
        "outage",
        "rollups",
        "actors",
    )
}

# Which layer may import which: a layer imports itself and the layers listed, never one above it.
ALLOWED: dict[str, set[str]] = {
    "base": {"base"},
    "http": {"base"},
    "sources": {"base", "http"},
    "simulator": {"base"},
    # Alert channels: http only for its redaction helpers (the channels POST with requests themselves).
    "alerts": {"base", "http"},
    "store": {"base"},
    "migrations": {"base", "store"},
    "services": {"base", "sources", "store", "alerts"},
    "ingestion": {"base", "http", "sources", "store", "services"},
    # The Parquet export: reads the store, writes files.
    "export": {"base", "store", "services"},
    # The read-only REST API: the same store and services the dashboard reads through.
    "api": {"base", "store", "services"},
    # The Prometheus exporter: reads the store and services on every scrape.
    "metrics": {"base", "store", "services"},
    "runtime": {
        "base", "http", "sources", "store", "services", "ingestion", "simulator", "alerts", "export", "api",
        "metrics",
    },
    # The dashboard drives the local simulator's control API (SimulatorControl) in its Simulator panel,
    # shown only with SIMULATED_DATA.
    "dashboard": {"base", "store", "services", "ingestion", "runtime", "simulator"},
}

# The one part of http/ that alerts/ may use: its redaction helpers (alerts are not API traffic, so they
# do not go through the source client with its rate limits and error rules).
ALERTS_HTTP = {"pipeline.http.redact"}

# The only modules that may speak SQLAlchemy: the store, the table definitions and their column types,
# and the migrations.
SQL_OWNERS = ("pipeline.store", "pipeline.models", "pipeline.columns", "pipeline.migrations")
# Settings validate DATABASE_URL with SQLAlchemy's own URL parser (and its parse error); no query API.
URL_PARSING = {("pipeline.config", "sqlalchemy.engine"), ("pipeline.config", "sqlalchemy.exc")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = modules()


def layer(module: str) -> str:
    if module in BASE or module == "pipeline":
        return "base"
    if module == "pipeline.database":
        return "store"  # the seed's facade over store/
    if module == "dashboard" or module.startswith("dashboard."):
        return "dashboard"
    top = module.split(".")[1]
    if top not in ALLOWED:
        raise AssertionError(f"{module}: not in any layer; add it to docs/architecture.md and to ALLOWED")
    return top


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (its `else` branch still counts)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield child
        yield from _nodes(child)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every runtime import in the file, project modules and third-party."""
    for node in _nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                yield node.lineno, candidate if candidate in MODULES else node.module


def project_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        graph[module] = {target for _, target in imports(path) if target in MODULES and target != module}
    return graph


def test_every_module_has_a_layer():
    unplaced = []
    for module in MODULES:
        try:
            layer(module)
        except AssertionError as exc:
            unplaced.append(str(exc))
    assert unplaced == []


def test_no_import_goes_up_a_layer():
    wrong = []
    for module, path in MODULES.items():
        own = layer(module)
        for line, target in imports(path):
            if target in MODULES and (there := layer(target)) != own and there not in ALLOWED[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {there} ({target})")
    assert wrong == []


def test_the_import_graph_has_no_circles():
    try:
        graphlib.TopologicalSorter(project_graph()).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_only_the_store_speaks_sqlalchemy():
    speakers = []
    for module, path in MODULES.items():
        if module.startswith(SQL_OWNERS):
            continue
        for line, target in imports(path):
            if (target == "sqlalchemy" or target.startswith("sqlalchemy.")) and (
                module,
                target,
            ) not in URL_PARSING:
                speakers.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert speakers == []


def test_the_checks_see_type_checking_blocks_and_deferred_imports(tmp_path):
    """The rules above are only as good as the import scan: prove it on a module with both cases."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy import Connection\n"
        "else:\n"
        "    import json\n"
        "def later():\n"
        "    from pipeline.store import queries\n"
    )
    found = [target for _, target in imports(sample)]
    assert "sqlalchemy" not in found
    assert "json" in found
    assert "pipeline.store.queries" in found


def test_alerts_use_http_only_for_redaction():
    wrong = []
    for module, path in MODULES.items():
        if layer(module) != "alerts":
            continue
        for line, target in imports(path):
            if target in MODULES and layer(target) == "http" and target not in ALERTS_HTTP:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: alerts imports {target}")
    assert wrong == []
