"""The project's own import graph, read from the source (``ast``): every ``import`` of a
module of ``models`` or ``pipelines``, at module level or inside a function."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "pipelines")


def path_of(module: str) -> Path | None:
    """The file of a project module (``pipelines.stages.evaluate``), or ``None``."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_of(path: Path) -> str:
    parts = path.resolve().relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imports(module: str) -> frozenset[str]:
    """The project modules ``module`` imports directly (``from a.b import c`` counts
    ``a.b.c`` when that is a module, else ``a.b``)."""
    tree = ast.parse(path_of(module).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if path_of(f"{node.module}.{alias.name}") else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES and path_of(name))
    return frozenset(found)


def closure(module: str) -> set[str]:
    """``module`` and every project module it imports, transitively, with the packages
    (``__init__``) on the way, which Python runs first."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix not in seen and path_of(prefix):
                seen.add(prefix)
                todo.extend(imports(prefix))
    return seen


def files(modules: set[str]) -> set[str]:
    return {path_of(m).relative_to(ROOT).as_posix() for m in modules}


def covering(paths: set[str]) -> list[str]:
    """``paths`` with every directory whose ``.py`` files are all in it collapsed to the
    directory: the shortest list of DVC deps that covers them."""
    out = set(paths)
    for directory in sorted({str(Path(p).parent) for p in paths}, key=lambda d: -d.count("/")):
        members = {p.relative_to(ROOT).as_posix() for p in (ROOT / directory).rglob("*.py")}
        if members and members <= out | {d for d in out if Path(d).suffix == ""}:
            out = {p for p in out if not p.startswith(directory + "/")} | {directory}
    return sorted(out)
