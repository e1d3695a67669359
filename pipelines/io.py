"""Atomic outputs: write under a temporary name beside the target, then rename.

A stage killed half-way leaves at most a hidden ``.<name>.tmp-<pid>`` behind, never a
partial file or directory under its final name (``os.replace`` is atomic on POSIX within
one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import yaml


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it replaces ``final`` (a file or
    a whole directory), on any exception it is deleted and ``final`` is left untouched.

    >>> with atomic_path("out.txt") as tmp:
    ...     tmp.write_text("done")
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir():
            _remove(final)  # os.replace cannot overwrite a non-empty directory
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def write_yaml(path: str | Path, data: object) -> None:
    """Write ``data`` as block-style YAML, atomically."""
    write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: object) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")
