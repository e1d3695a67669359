"""Atomic outputs: nothing half-written under the final name."""

from __future__ import annotations

import pytest

from pipelines.io import atomic_path


def test_file_replaced_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_directory_replaced_whole(tmp_path):
    target = tmp_path / "dataset"
    (target / "data").mkdir(parents=True)
    (target / "data" / "stale.hdf5").write_text("stale")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            (tmp / "data").mkdir(parents=True)
            raise KeyboardInterrupt
    assert (target / "data" / "stale.hdf5").exists()
    with atomic_path(target) as tmp:
        (tmp / "data").mkdir(parents=True)
        (tmp / "data" / "fresh.hdf5").write_text("fresh")
    assert sorted(p.name for p in (target / "data").iterdir()) == ["fresh.hdf5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
