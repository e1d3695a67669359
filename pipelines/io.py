"""Atomic outputs: write under a temporary name beside the target, then rename.

A stage killed half-way leaves at most a hidden ``.<name>.tmp-<pid>`` behind, never a
partial file or directory under its final name (``os.replace`` is atomic on POSIX within
one file system). A write that fails because the file system is full (no space, quota, file
size limit) raises :class:`OutputError` naming the output, after removing the partial
temporary, so that the previous version under the final name (a checkpoint, a cache) stays
intact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import yaml


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class OutputError(OSError):
    """An output could not be written because its file system is full; nothing was written
    under its name."""


def _out_of_space(error: BaseException, directory: Path) -> bool:
    """Whether ``error`` comes from a full file system at ``directory``: its errno says so,
    or (libraries that hide the errno, as ``torch.save`` does) a small write there fails."""
    if isinstance(error, OSError) and error.errno in FULL:
        return True
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    probe = directory / f".space-probe-{os.getpid()}"
    try:
        with probe.open("wb") as f:
            f.write(bytes(1 << 16))
            f.flush()
            os.fsync(f.fileno())
    except OSError as failure:
        return failure.errno in FULL
    finally:
        probe.unlink(missing_ok=True)
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def require_space(final: str | Path, needed: int) -> None:
    """Raise :class:`OutputError` before writing ``final`` if its file system has fewer than
    ``needed`` bytes free. Writers whose library cannot survive a full disk call it first
    (HDF5 left with a failed write can crash the process when it exits)."""
    final = Path(final)
    existing = next(p for p in (final, *final.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise _not_written(final, f"it needs about {needed / 2**20:.1f} MiB and its file system has "
                                  f"{free / 2**20:.1f} MiB free")


def _not_written(final: Path, why: str) -> OutputError:
    """The :class:`OutputError` of ``final``, not written because of ``why``."""
    kept = f"the previous {final.name} is intact" if final.exists() else f"nothing was written as {final.name}"
    return OutputError(errno.ENOSPC, f"{final}: not written, {why}; {kept}. Free space there (or point the output "
                                     "elsewhere) and run the command again")


def _discard(path: Path) -> None:
    """Remove a failed temporary, emptying its files first: a library may still hold one
    open (h5py after a failed write does, and flushes it when collected), and only the
    truncation gives its space back while it is open."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    for file in files:
        with contextlib.suppress(OSError):
            os.truncate(file, 0)
    _remove(path)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it replaces ``final`` (a file or
    a whole directory), on any exception it is deleted and ``final`` is left untouched (a
    full file system raises :class:`OutputError`).

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
    except BaseException as error:
        full = _out_of_space(error, final.parent)
        _discard(tmp)
        if full:
            cause = "" if isinstance(error, OutputError) else f" ({type(error).__name__}: {str(error)[:200]})"
            raise _not_written(final, f"the file system is full{cause}") from error
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
