"""The house drawn from the code: no import circles, the library never imports the app, and every room of the app is
where docs/architecture.md says it is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """``{module: the project modules it imports}``, function-level imports included (they are imports too)."""
    modules = {module_name(path): path for path in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for candidate in names:
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                if candidate:
                    targets.add(candidate)
                    break
        # a package and its own modules (an __init__ re-exporting them) are one thing
        graph[name] = {t for t in targets if not (t.startswith(name + ".") or name.startswith(t + ".") or t == name)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_in_a_circle() -> None:
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_app() -> None:
    leaks = {name: sorted(t for t in targets if t.startswith("getiaction_export"))
             for name, targets in import_graph().items() if name.startswith("getiaction.")}
    assert {name: targets for name, targets in leaks.items() if targets} == {}


def test_every_room_and_top_level_module_of_the_app_is_in_docs_architecture() -> None:
    """The drawing lists each folder (``rooms/``) and each top-level module of the app, and nothing that is gone."""
    app = SRC / "getiaction_export"
    rooms = {p.name + "/" for p in app.iterdir() if p.is_dir() and (p / "__init__.py").is_file() and p.name != "conf"}
    spine = {p.name for p in app.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    drawing = ARCHITECTURE.read_text().split("## How one job's data flows")[0]
    drawn = set(re.findall(r"^  (\w+/)", drawing, re.MULTILINE)) | set(re.findall(r"\b(\w+\.py)\b", drawing))
    assert rooms - drawn == set(), f"rooms missing from docs/architecture.md: {sorted(rooms - drawn)}"
    assert spine - drawn == set(), f"modules missing from docs/architecture.md: {sorted(spine - drawn)}"
    listed_rooms = set(re.findall(r"^  (\w+/)", drawing.split("src/getiaction_export/")[1], re.MULTILINE))
    assert listed_rooms - rooms == set(), f"docs/architecture.md draws rooms that do not exist: {listed_rooms - rooms}"
