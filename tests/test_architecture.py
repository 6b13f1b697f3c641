"""The structure drawing of service/, checked (fast: reads the source): imports point down the layers and
never round in a cycle, and a module over 400 lines says why in its docstring.

Layers, lowest first: the core (database, leases, errors, ids, settings, metrics, the composition helpers,
and the caller's identity), then the features in the order service.app.FEATURES builds them (a feature
may use the ones before it), then the app, its CLI and the probes that report on everything."""

import ast
from pathlib import Path

import pytest

from service.app import FEATURES
from tests.support.paths import REPO

SERVICE = REPO / "service"
TOP = {"service.app", "service.cli", "service.health", "service.migrations", "service.middleware"}
IDENTITY = "service.projects.keys"  # who is calling: the core's deps and middleware read it
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The service modules `path` imports at module level (not those under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("service"):
                found.add(sub.module)
                found.update(f"{sub.module}.{a.name}" for a in sub.names)
            elif isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names if a.name.startswith("service"))
    return found


MODULES = {_module(p): p for p in SERVICE.rglob("*.py") if "migrations/versions" not in str(p)}
GRAPH = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
ORDER = [f.name for f in FEATURES if (SERVICE / f.name).is_dir()]


def _layer(module: str) -> tuple[int, str]:
    """(rank, name): the core 0, the features 1.. in build order, the top last."""
    if any(module == t or module.startswith(t + ".") for t in TOP):
        return len(ORDER) + 1, "top"
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in ORDER:
        return ORDER.index(parts[1]) + 1, parts[1]
    return 0, "core"


def test_no_import_points_up_a_layer():
    upward = []
    for module, imported in GRAPH.items():
        rank, name = _layer(module)
        for other in imported:
            other_rank, other_name = _layer(other)
            if other == IDENTITY and name == "core":
                continue
            if other_rank > rank or (other_rank == rank and other_name != name):
                upward.append(f"{module} ({name}) imports {other} ({other_name})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle():
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(GRAPH[module]):
            if state.get(other) == "open":
                cycles.append(" -> ".join(path[path.index(other):] + [other]))
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_long_module_says_why(module):
    path = MODULES[module]
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "Why it is long:" in doc, f"{path.relative_to(REPO)} has {lines} lines and no 'Why it is long:'"


def test_every_feature_package_is_listed():
    packages = {p.parent.name for p in SERVICE.glob("*/__init__.py")} - {"db", "migrations"}
    assert packages == set(ORDER), "a feature package missing from service.app.FEATURES (or a stray one listed)"
