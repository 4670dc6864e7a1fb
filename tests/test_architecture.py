"""The house keeps its shape (docs/architecture.md): rooms import only the rooms below them,
there is no import circle between modules (lazy imports inside functions count too), security
imports nothing from runner, every room says in one line what it owns, and the architecture
page names every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runner", "notifiers", "security")

# lowest first; a module may import from its own room and any room of a lower rank
ROOMS: tuple[tuple[str, int], ...] = (
    ("security", 0),
    ("runner.errors", 1), ("runner.fsutil", 1), ("runner.eventlog", 1), ("runner.checks", 1),
    ("runner.configuration", 2),
    ("runner.engine", 3),
    ("notifiers", 4),
    ("runner.scheduling", 5),
    ("runner.service", 6),
    ("runner.cli", 7),
    ("runner.__main__", 8),
    ("runner", 1),  # runner/__init__.py: the version only
)
SUBPACKAGES = ("runner.configuration", "runner.engine", "runner.scheduling", "runner.service",
               "runner.cli")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules `path` imports, anywhere in it (a function's lazy import included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known}
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def room_of(module: str) -> tuple[str, int]:
    for room, rank in ROOMS:
        if module == room or module.startswith(room + "."):
            return room, rank
    raise AssertionError(f"{module} is in no room of docs/architecture.md")


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    assert circles(graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_rooms_import_only_rooms_below_them() -> None:
    upward = []
    for module, imported in graph().items():
        room, rank = room_of(module)
        for other in imported:
            other_room, other_rank = room_of(other)
            if other_rank > rank:
                upward.append(f"{module} ({room}) imports {other} ({other_room})")
    assert upward == []


def test_security_imports_nothing_from_runner_or_notifiers() -> None:
    reaching = {(m, o) for m, imported in graph().items() if m.startswith("security")
                for o in imported if not o.startswith("security")}
    assert reaching == set()


@pytest.mark.parametrize("package", SUBPACKAGES + PACKAGES)
def test_every_room_says_in_one_line_what_it_owns(package: str) -> None:
    init = ROOT / package.replace(".", "/") / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert docstring, f"{init} has no docstring"
    first = docstring.splitlines()[0]
    assert first.endswith(".") and ": " in first, f"{init}: the first line says what it owns"


def test_the_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in modules().values():
        relative = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py":
            relative = relative.removesuffix("__init__.py")
        if relative not in page and f"`{path.name}`" not in page:
            missing.append(relative)
    assert missing == []
