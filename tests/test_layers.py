"""Imports run down the house, never back up and never in a circle: every package (and top-level module) of
`agent/`, `pipelines/`, `bench/` and `tests/` has a layer, and may import only from layers below its own. The
imports are read from the source with `ast` (including imports inside functions), so a new upward import or a new
package without a layer fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS: list[set[str]] = [
    {"agent.settings", "agent.frames", "agent.text", "agent.models", "agent.pcm"},  # the ground
    {"agent.latency"},
    {"agent.protocols", "agent.speech"},
    {"agent.telephony", "agent.turns"},
    {"agent.tools"},
    {"agent.llm"},
    {"agent.runtime"},
    {"pipelines"},
    {"agent.server", "agent.phone_client", "agent.dial_client", "agent.llm_bench"},
    {"agent.cli", "agent.settings_doc"},  # the roof of the product (and the settings documentation command)
    {"bench"},  # may import the product, never the tests
    {"tests"},
]
LAYER = {unit: index for index, units in enumerate(LAYERS) for unit in units}
TOP_LEVEL = ("agent", "pipelines", "bench", "tests")


def unit_of(module: str) -> str | None:
    """The layered unit a dotted module name belongs to (`agent.server.app` -> `agent.server`)."""
    parts = module.split(".")
    if parts[0] == "agent":
        return ".".join(parts[:2]) if len(parts) > 1 else None  # `agent` itself only names the package
    return parts[0] if parts[0] in TOP_LEVEL else None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every absolute module `path` imports (for `from a import b`, both `a` and `a.b`: b may be a module)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def upward_imports(root: Path = ROOT) -> list[str]:
    found = []
    for top in TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")):
            importer = unit_of(module_name(path, root))
            if importer is None:
                continue
            imported = {unit_of(module) for module in imported_modules(path)} & set(LAYER) - {importer}
            for unit in sorted(imported):
                if LAYER[unit] >= LAYER[importer]:
                    found.append(f"{path.relative_to(root)} ({importer}) imports {unit}")
    return found


def test_every_package_has_a_layer():
    units = {unit_of(module_name(p)) for top in TOP_LEVEL for p in (ROOT / top).rglob("*.py")}
    assert units - {None} <= set(LAYER), f"give these a layer in tests/test_layers.py: {units - {None} - set(LAYER)}"


def test_imports_only_run_down():
    """Only lower layers, so no circle between packages either (a circle would need one import going up)."""
    assert upward_imports() == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself, on a small tree: a carrier module reaching up into the server (inside a function) is
    reported; the server importing the carrier is not."""
    (tmp_path / "agent" / "telephony").mkdir(parents=True)
    (tmp_path / "agent" / "server").mkdir()
    (tmp_path / "agent" / "telephony" / "gate.py").write_text("def f():\n    from agent.server.app import create_app\n")
    (tmp_path / "agent" / "server" / "app.py").write_text("from agent.telephony import gate\n")
    assert upward_imports(tmp_path) == ["agent/telephony/gate.py (agent.telephony) imports agent.server"]
