"""Small parts: no class over 300 lines, no function over 80, in the product's code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    path
    for package in ("vad", "server", "client", "streamscribe")
    for path in (ROOT / package).rglob("*.py")
)
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80


def too_long(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        lines = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
        if isinstance(node, ast.ClassDef) and lines > MAX_CLASS_LINES:
            found.append(f"class {node.name}: {lines} lines")
        elif (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and lines > MAX_FUNCTION_LINES
        ):
            found.append(f"def {node.name}: {lines} lines")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_classes_and_functions_stay_small(path):
    assert not too_long(path)
