"""No `Any` at a seam: outside `stylize_server.engine` (where TensorFlow's
untyped values live), no module imports `Any` from typing or writes it in an
annotation, so mypy checks what crosses between job, wire, serving and http.

The check reads the source with `ast`: `from typing import Any` (or
typing_extensions, or under another name), `typing.Any` however typing is
imported, and `Any` in an annotation, a string annotation included. It is
run on the server's modules and on samples of each form, so that it is seen
to fail.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SERVER = ROOT / "server" / "stylize_server"
TYPING_MODULES = ("typing", "typing_extensions")


def _typing_any(node: ast.AST, typing_aliases: set[str]) -> bool:
    """Whether `node` is `typing.Any` (typing under any of its names)."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "Any"
        and isinstance(node.value, ast.Name)
        and node.value.id in typing_aliases
    )


def _names_any(node: ast.expr, typing_aliases: set[str]) -> bool:
    """Whether the annotation `node` mentions Any (as a name, typing's attribute, or inside a string)."""
    for part in ast.walk(node):
        if (isinstance(part, ast.Name) and part.id == "Any") or _typing_any(part, typing_aliases):
            return True
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            try:
                inner = ast.parse(part.value, mode="eval").body
            except SyntaxError:
                continue
            if _names_any(inner, typing_aliases):
                return True
    return False


def _annotations(tree: ast.AST) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.AnnAssign, ast.arg)) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            found.append(node.returns)
    return found


def any_uses(source: str, name: str) -> list[str]:
    """`name:line: what` for every use of typing's Any in `source`."""
    tree = ast.parse(source, filename=name)
    typing_aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name in TYPING_MODULES
    }
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in TYPING_MODULES:
            if any(alias.name == "Any" for alias in node.names):
                uses.append(f"{name}:{node.lineno}: imports Any from {node.module}")
        elif _typing_any(node, typing_aliases):
            assert isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            uses.append(f"{name}:{node.lineno}: uses {node.value.id}.Any")
    for annotation in _annotations(tree):
        if _names_any(annotation, typing_aliases):
            uses.append(f"{name}:{annotation.lineno}: Any in the annotation {ast.unparse(annotation)!r}")
    return sorted(set(uses), key=lambda use: int(use.split(":")[1]))


def test_no_module_outside_the_engine_uses_any() -> None:
    paths = [p for p in sorted(SERVER.rglob("*.py")) if "engine" not in p.relative_to(SERVER).parts[:1]]
    assert len(paths) > 40 and SERVER / "wire" / "convert.py" in paths
    assert SERVER / "engine" / "objective.py" not in paths
    uses = [use for path in paths for use in any_uses(path.read_text(), str(path.relative_to(ROOT)))]
    assert not uses, "Any outside engine/ (type it: object, a TypeVar, a union):\n" + "\n".join(uses)


def test_the_check_finds_every_form_of_any() -> None:
    sample = (
        "from typing import TYPE_CHECKING, Any as Whatever\n"  # 1
        "import typing\n"
        "import typing_extensions as te\n"
        "def f(x: typing.Any) -> None: ...\n"  # 4
        "def g() -> te.Any: ...\n"  # 5
        "y: 'dict[str, Any]' = {}\n"  # 6
        "async def h(*args: list[Any], **kw: int) -> None: ...\n"  # 7
        "Alias = typing.Any\n"  # 8
        "from typing_extensions import Any\n"  # 9
    )
    lines = sorted({int(use.split(":")[1]) for use in any_uses(sample, "sample.py")})
    assert lines == [1, 4, 5, 6, 7, 8, 9]
    assert any_uses(sample, "sample.py")[0] == "sample.py:1: imports Any from typing"


def test_the_check_leaves_other_anys_alone() -> None:
    sample = (
        '"""Any value: a docstring may say Any."""\n'
        "from google.protobuf import any_pb2\n"
        "box = any_pb2.Any()  # a protobuf Any message\n"
        "def f(box: any_pb2.Any, items: list[object]) -> bool:\n"
        "    return any(items)\n"
    )
    assert any_uses(sample, "sample.py") == []
