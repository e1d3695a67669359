"""Each DVC stage's code dependencies, derived from the source: the import closure of the
module its command runs, file by file, collapsed to a directory where every ``.py`` file of
it is in.

A stage's ``cmd`` is ``latentops <command> ...``; ``pipelines.cli`` imports only its own base
modules and, through its one table (``pipelines.cli.COMMANDS``), the one module of that
command. So a stage's code is the closure of ``pipelines.cli`` and of that module: every
project module either imports, at module level or inside a function (``ast``), with the
packages (``__init__``) on the way, which Python runs first. A stage that ships code with the
models it registers (:data:`SHIPPED`) also depends on all of that code.

``python -m pipelines.codedeps`` prints the stages whose ``dvc.yaml`` code deps differ from
their closure; ``--write`` rewrites those lists in place (comments and everything else stay);
``tests/code/test_structure.py`` fails on any difference, missing or superfluous.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import cache
from pathlib import Path

import yaml

__all__ = ["ROOT", "SHIPPED", "closure", "code_deps", "covering", "differences", "files", "imports", "reruns",
           "stage_commands", "stale", "write"]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "pipelines")
#: Code a stage's module copies into what it registers (``pipelines.tracking.registry`` ships
#: ``models/`` and ``pipelines/serving/`` with every version), beyond what it imports.
SHIPPED: dict[str, tuple[str, ...]] = {"pipelines.stages.register": ("models", "pipelines/serving",
                                                                     "pipelines/__init__.py")}
_CODE_DEP = re.compile(r"^(?P<indent>\s*)- (?:models|pipelines)(?:/\S*)?\s*$")


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


def closure(*modules: str) -> set[str]:
    """``modules`` and every project module they import, transitively, with the packages
    (``__init__``) on the way."""
    seen: set[str] = set()
    todo = list(modules)
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
        if directory == ".":
            continue
        members = {p.relative_to(ROOT).as_posix() for p in (ROOT / directory).rglob("*.py")}
        if members and members <= out | {d for d in out if Path(d).suffix == ""}:
            out = {p for p in out if not p.startswith(directory + "/")} | {directory}
    return sorted(out)


def command_module(command: str) -> str:
    """The module that runs ``latentops <command>`` (``pipelines.cli.COMMANDS``)."""
    from pipelines.cli import COMMANDS

    if command not in COMMANDS:
        raise ValueError(f"latentops {command}: not a command; valid commands are {sorted(COMMANDS)}")
    return COMMANDS[command].module


def code_deps(command: str) -> list[str]:
    """The code deps of a stage whose ``cmd`` is ``latentops <command> ...``."""
    module = command_module(command)
    found = files(closure("pipelines.cli", module))
    for shipped in SHIPPED.get(module, ()):
        found |= {p.relative_to(ROOT).as_posix() for p in (ROOT / shipped).rglob("*.py")} if (ROOT / shipped).is_dir() \
            else {shipped}
    return covering(found)


def stage_commands(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, str]:
    """``{stage name in dvc.yaml: its latentops command}``."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        cmd = (stage.get("do") or stage)["cmd"].split()
        if cmd[0] != "latentops":
            raise ValueError(f"dvc.yaml stage {name}: cmd {' '.join(cmd)!r} does not run latentops")
        out[name] = next(word for word in cmd[1:] if not word.startswith("-"))
    return out


def _listed(dvc_yaml: Path) -> dict[str, list[str]]:
    """The code deps ``dvc.yaml`` lists now, by stage."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name: [d for d in (stage.get("do") or stage).get("deps", []) if isinstance(d, str)
                   and d.split("/")[0] in PACKAGES] for name, stage in stages.items()}


def differences(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, tuple[list[str], list[str]]]:
    """``{stage: (missing, superfluous)}`` for every stage whose code deps are not its closure."""
    listed = _listed(dvc_yaml)
    out = {}
    for name, command in stage_commands(dvc_yaml).items():
        expected = code_deps(command)
        missing = sorted(set(expected) - set(listed[name]))
        extra = sorted(set(listed[name]) - set(expected))
        if missing or extra:
            out[name] = (missing, extra)
    return out


def write(dvc_yaml: Path = ROOT / "dvc.yaml") -> list[str]:
    """Rewrite each stage's block of code deps (the ``- models...``/``- pipelines...`` lines of
    its ``deps``, kept together) as its closure; returns the stages changed."""
    commands = stage_commands(dvc_yaml)
    lines = dvc_yaml.read_text().splitlines(keepends=True)
    out: list[str] = []
    stage, changed, i = None, [], 0
    while i < len(lines):
        line = lines[i]
        top = re.match(r"^  (\w+):\s*$", line)
        if top:
            stage = top.group(1)
        match = _CODE_DEP.match(line)
        if match and stage in commands:
            j = i
            while j < len(lines) and _CODE_DEP.match(lines[j]):
                j += 1
            new = [f"{match.group('indent')}- {d}\n" for d in code_deps(commands[stage])]
            if new != lines[i:j]:
                changed.append(stage)
            out += new
            i = j
            continue
        out.append(line)
        i += 1
    dvc_yaml.write_text("".join(out))
    return changed


def _is_code(path: str) -> bool:
    return path.split("/")[0] in PACKAGES


def stale(root: Path = ROOT) -> dict[str, list[str]]:
    """``{stage instance: [what changed]}`` for every stage whose code or params deps differ
    from what ``dvc.lock`` records (or that the lock does not hold): what ``dvc status``
    reports as changed deps, without the data (which a fresh clone does not have)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    out: dict[str, list[str]] = {}
    with Repo(str(root)) as repo:
        locked = set(yaml.safe_load((root / "dvc.lock").read_text()).get("stages", {})) \
            if (root / "dvc.lock").is_file() else set()
        for stage in repo.index.stages:
            if stage.name not in locked:
                out[stage.name] = ["not in dvc.lock"]
                continue
            changed = []
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency) or _is_code(dep.def_path):
                    changed += [f"{path}: {state}" for path, state in dep.status().items()]
            if changed:
                out[stage.name] = changed
    return out


def reruns(root: Path = ROOT) -> dict[str, list[str]]:
    """``{module file: [stage instances]}``: what ``dvc status`` lists after editing that one
    file of ``models/`` or ``pipelines/`` (every stage instance whose code deps cover it)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        deps = {s.name: [d.def_path for d in s.deps if _is_code(d.def_path)] for s in repo.index.stages}
    modules = sorted(p.relative_to(root).as_posix() for package in PACKAGES for p in (root / package).rglob("*.py"))
    return {m: [stage for stage, paths in deps.items() if any(m == d or m.startswith(d.rstrip("/") + "/")
                                                             for d in paths)] for m in modules}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.codedeps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps as the closures")
    parser.add_argument("--lock", action="store_true", help="list the stages dvc.lock records with other code or "
                                                            "params than the workspace's")
    parser.add_argument("--table", action="store_true", help="print how many stage instances an edit of each module "
                                                             "re-runs, as a Markdown table")
    args = parser.parse_args(argv)
    if args.lock:
        found = stale()
        for name, changes in found.items():
            print(f"{name}: {', '.join(changes)}")
        return 1 if found else 0
    if args.table:
        table = reruns()
        print("| module | stage instances |\n|---|---|")
        for module, stages in table.items():
            print(f"| `{module}` | {len(stages)} |")
        print(f"\n{len(table)} modules, {sum(map(len, table.values())) / len(table):.2f} stage instances per edit "
              "on average")
        return 0
    if args.write:
        print("rewrote the code deps of: " + (", ".join(write()) or "none (already the closures)"))
        return 0
    found = differences()
    for name, (missing, extra) in found.items():
        print(f"{name}: missing {missing}, superfluous {extra}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
