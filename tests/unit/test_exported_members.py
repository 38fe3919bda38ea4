"""Each module's ``__all__`` is its public surface (as httpx pins its own): every public class and function it
defines is listed, and everything listed exists. A new public name is a decision, not an accident."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
    for package in ("shared", "functions", "agent")
    for path in (ROOT / package).rglob("*.py")
    if path.name != "__main__.py"
}


def _has_content(path: Path) -> bool:
    """A package's ``__init__`` that is only a docstring (a group's map) exports nothing."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


MODULES = sorted(name for name, path in FILES.items() if _has_content(path))


def _defined_public(module: str) -> set[str]:
    tree = ast.parse(FILES[module].read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_")
    }


@pytest.mark.parametrize("module", MODULES)
def test_all_lists_every_public_class_and_function_and_nothing_missing(module: str) -> None:
    loaded = importlib.import_module(module)
    exported = getattr(loaded, "__all__", None)
    assert exported is not None, f"{module} has no __all__"
    assert [name for name in exported if not hasattr(loaded, name)] == []
    assert sorted(_defined_public(module) - set(exported)) == []
