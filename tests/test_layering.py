"""The sans-I/O core imports no I/O, and imports only point one way: vad <- core <- edges."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = [
    "errors",
    "options",
    "transcription",
    "events",
    "agreement",
    "prompt",
    "quality",
    "session",
    "protocol",
]
FORBIDDEN_IN_CORE = {
    "asyncio",
    "socket",
    "fastapi",
    "starlette",
    "uvicorn",
    "websockets",
    "httpx",
    "faster_whisper",
    "ctranslate2",
    "threading",
    "av",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def closure(module: str) -> set[str]:
    """Every project module reachable from ``module`` through imports."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / name.replace(".", "/") / "__init__.py"
        if not path.exists():
            continue
        todo.extend(imported_modules(path))
    return seen


@pytest.mark.parametrize("module", [f"server.{name}" for name in CORE])
def test_core_module_reaches_no_io(module):
    reached = {name.split(".")[0] for name in closure(module)}
    assert not reached & FORBIDDEN_IN_CORE
    assert not any(
        name.startswith(
            (
                "server.app",
                "server.stream_endpoint",
                "server.scheduler",
                "server.backends",
                "server.cli",
                "client",
            )
        )
        for name in closure(module)
    )


def test_vad_imports_nothing_from_server_or_client():
    for path in (ROOT / "vad").glob("*.py"):
        assert not {m.split(".")[0] for m in imported_modules(path)} & {"server", "client"}
