"""Locks on the tracking store: one ``promote`` (or ``evaluate``, or first ``tune`` worker
making a study's parent run) at a time per store.

Two people promoting at once would each read the aliases, decide, and move them: the later
write wins and the registry no longer matches either decision. :func:`store_lock` makes such
read-decide-write sections take turns. It is an exclusive ``flock`` on a file named after the
store, so the operating system releases it when its process dies (``SIGKILL`` included) and a
crash never leaves a stale lock behind.

The lock file is beside a SQLite store (``mlflow.db`` -> ``.mlflow.db.promote.lock``), else
under ``~/.cache/latentops/locks/`` keyed by the tracking URI: processes of one machine
take turns, whatever their working directory. Processes on different machines sharing one
server are not serialised by it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pipelines.tracking.runs import tracking_uri

__all__ = ["lock_path", "store_lock"]


def lock_path(name: str, uri: str | None = None) -> Path:
    """The lock file of section ``name`` (``promote``, ``evaluate``, ``tune``) on store ``uri``
    (default: :func:`~pipelines.tracking.runs.tracking_uri`)."""
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///")).resolve()
        return database.with_name(f".{database.name}.{name}.lock")
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "latentops" / "locks" / f"{key}.{name}.lock"


@contextlib.contextmanager
def store_lock(name: str, uri: str | None = None) -> Iterator[Path]:
    """Hold the exclusive lock ``name`` on the tracking store while the block runs; if
    another process holds it, say so on stderr and wait for it."""
    path = lock_path(name, uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{name}: another {name} is running on {uri or tracking_uri()}; waiting for it (lock {path})",
                  file=sys.stderr, flush=True)
            started = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            print(f"{name}: lock acquired after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
