"""The test suite keeps the layout tests/README.md describes: the library is tests/support/ and
nothing else is imported across files; a fixture name means one thing; tests/runner/ and the
other in-process directories never start `restic-runner` as a process."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# What `make test-fast` runs: in-process tests only (tools such as restic may run; the
# `restic-runner` command may not).
IN_PROCESS = ("runner", "security", "notifiers/unit")
PROCESS_METHODS = ("cli", "popen", "run_json")  # a Workspace's ways to start the command


def python_files() -> Iterator[Path]:
    yield from sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def where(path: Path) -> str:
    return str(path.relative_to(TESTS.parent))


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def test_only_tests_support_is_imported_across_files() -> None:
    """No test module or conftest.py is imported by another file (lazy imports included)."""
    wrong = [f"{where(path)}:{line}: imports {module}"
             for path in python_files()
             for line, module in imported_modules(ast.parse(path.read_text()))
             if module.split(".")[0] == "tests" and module != "tests.support"
             and not module.startswith("tests.support.")]
    assert not wrong, "\n".join(wrong)


def test_tests_support_has_no_fixtures_and_no_tests() -> None:
    """The library is plain code: fixtures live in conftest.py files, tests in test modules."""
    wrong = []
    for path in sorted((TESTS / "support").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and (node.name.startswith("test_")
                                                      or _is_fixture(node)):
                wrong.append(f"{where(path)}:{node.lineno}: {node.name}")
    assert not wrong, "\n".join(wrong)


def _is_fixture(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def _fixture_name(node: ast.FunctionDef) -> str:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return node.name


def test_a_fixture_name_means_one_thing() -> None:
    """A fixture name is defined once, or the same way everywhere it is defined (a test never
    gets another fixture than its neighbour's under the same name)."""
    definitions: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and _is_fixture(node):
                body = ast.dump(ast.Module(body=node.body, type_ignores=[]))
                shape = f"{ast.dump(node.args)}{body}{ast.dump(node.decorator_list[0])}"
                definitions[_fixture_name(node)][shape].append(f"{where(path)}:{node.lineno}")
    different = {name: sorted(place for places in shapes.values() for place in places)
                 for name, shapes in definitions.items() if len(shapes) > 1}
    assert not different, "\n".join(f"{name}: {', '.join(places)}"
                                    for name, places in sorted(different.items()))


def test_in_process_directories_never_start_restic_runner() -> None:
    """tests/runner/, tests/security/ and tests/notifiers/unit/ run the code in the test's own
    process: no `restic-runner` command (`RUNNER`, a `Workspace`'s `cli`, `popen` or
    `run_json`). Tests of the command as a process belong in tests/e2e/."""
    wrong = []
    for directory in IN_PROCESS:
        for path in sorted((TESTS / directory).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                runner = isinstance(node, ast.Name) and node.id == "RUNNER"
                command = isinstance(node, ast.Attribute) and node.attr in PROCESS_METHODS
                if runner or command:
                    wrong.append(f"{where(path)}:{node.lineno}")
    assert not wrong, "restic-runner started as a process in:\n" + "\n".join(wrong)
