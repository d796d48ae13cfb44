"""The tree is the architecture: each folder is a layer, and imports point one way.

    vad <- server.core <- server.settings <- server.policy <- server.backends
        <- server.runtime <- server.web <- server.logs, server.cli <- streamscribe

``client`` may use ``vad`` and ``server.core`` (caption formats, audio files), never the rest of
the server. Membership is read from the directories: putting a module in ``server/core/`` is
what makes it core, and this test then holds it to the core's rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vad", "server", "client", "streamscribe")

# Lowest first. A module may import project modules of its own layer or a lower one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("vad",),
    ("server.core",),
    ("server.settings",),
    ("server.policy",),
    ("server.backends",),
    ("server.runtime",),
    ("server.web",),
    ("server.logs", "server.cli", "server"),
    ("streamscribe",),
)
CLIENT_MAY_IMPORT = ("vad", "server.core", "client")

# Nothing in the core waits on a socket, a thread or a clock, nor reads configuration.
FORBIDDEN_IN_CORE = {
    "asyncio",
    "threading",
    "socket",
    "starlette",
    "fastapi",
    "uvicorn",
    "httpx",
    "websockets",
    "prometheus_client",
    "pydantic_settings",
    "faster_whisper",
    "ctranslate2",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }


MODULES = project_modules()


def imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Absolute names ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(child) for child in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    return {name for name in imports(path, runtime_only=runtime_only) if name in MODULES}


def layer_of(module: str) -> int:
    best = (-1, -1)  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    return best[1]


def test_every_server_module_sits_in_a_layer():
    unplaced = [m for m in MODULES if m.startswith(("server", "vad")) and layer_of(m) < 0]
    assert not unplaced


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("client")))
def test_imports_point_down_the_layers(module):
    upward = [
        name
        for name in project_imports(MODULES[module])
        if not name.startswith("client") and layer_of(name) > layer_of(module)
    ]
    assert not upward, f"{module} imports from a higher layer: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("client")))
def test_the_client_uses_only_the_core_of_the_server(module):
    outside = [
        name for name in project_imports(MODULES[module]) if not name.startswith(CLIENT_MAY_IMPORT)
    ]
    assert not outside, f"{module} imports {outside}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("server.core")))
def test_the_core_does_no_io(module):
    reached = {name.split(".")[0] for name in imports(MODULES[module])}
    assert not reached & FORBIDDEN_IN_CORE


def test_no_package_imports_one_that_imports_it():
    edges: set[tuple[str, str]] = set()
    for module, path in MODULES.items():
        for name in project_imports(path):
            source, target = module.split(".")[0], name.split(".")[0]
            if source != target:
                edges.add((source, target))
    assert not {(a, b) for a, b in edges if (b, a) in edges}


def test_no_module_imports_itself_through_others():
    graph = {m: project_imports(p, runtime_only=True) - {m} for m, p in MODULES.items()}
    # ``from a import b`` names the package ``a`` too; a package's __init__ is no real edge back.
    graph = {m: {n for n in names if not m.startswith(n + ".")} for m, names in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for name in sorted(graph.get(module, ())):
            if state.get(name) == 1:
                cycles.append([*stack[stack.index(name) :], name])
            elif name not in state:
                visit(name, [*stack, name])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles
