"""Windows over latent caches: strides, spans, several files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from pipelines.data.latent import TrajectoryWindows
from tests.conftest import configured


def write_cache(path, n: int, steps: int = 21, seed: int = 0) -> np.ndarray:
    latents = np.random.default_rng(seed).normal(size=(n, steps, 2, 3, 3)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["latents"] = latents
        f["cond"] = np.arange(n * 4, dtype=np.float32).reshape(n, 4) + 100 * seed
    return latents


def test_windows_follow_the_stride(tmp_path):
    latents = write_cache(tmp_path / "train.h5", n=3)
    windows = TrajectoryWindows.from_caches([tmp_path / "train.h5"], length=5, stride=4)
    assert len(windows) == 3 * (21 - 16)
    item = windows[7]  # trajectory 1, start 2
    assert item["x"].shape == (2, 5, 3, 3)  # (c, L, h, w)
    expected = latents[1, [2, 6, 10, 14, 18]].transpose(1, 0, 2, 3)
    assert torch.equal(item["x"], torch.from_numpy(expected))
    assert item["cond"].tolist() == [4.0, 5.0, 6.0, 7.0]


def test_several_files_are_concatenated(tmp_path):
    write_cache(tmp_path / "train.h5", n=2)
    augmented = write_cache(tmp_path / "train_augmented.h5", n=2, seed=1)
    windows = TrajectoryWindows.from_caches([tmp_path / "train.h5", tmp_path / "train_augmented.h5"], length=2, stride=1)
    assert len(windows) == 4 * 20
    last = windows[len(windows) - 1]
    assert torch.equal(last["x"], torch.from_numpy(augmented[1, [19, 20]].transpose(1, 0, 2, 3)))
    assert last["cond"][0] == 104.0


def test_too_long_windows_are_refused(tmp_path):
    write_cache(tmp_path / "train.h5", n=1, steps=9)
    assert len(TrajectoryWindows.from_caches([tmp_path / "train.h5"], length=5, stride=2)) == 1  # exactly one window fits
    write_cache(tmp_path / "short.h5", n=1, steps=8)
    with pytest.raises(ValueError, match="windows of 5 states every 2 steps span 9 steps; the trajectories have 8"):
        TrajectoryWindows.from_caches([tmp_path / "short.h5"], length=5, stride=2)


def test_pixel_windows_from_whole_trajectories_equal_the_wells_windows(tiny_dataset):
    from pipelines.settings.data import DataConfig
    from pipelines.data.windows import WellWindows, trajectories

    data = configured(DataConfig, "data", root=str(tiny_dataset))
    ours = TrajectoryWindows.from_trajectories(trajectories(data, "train"), length=5, stride=4)
    theirs = WellWindows(data.root, "train", 5, 0, 4, data.log_fields)
    assert len(ours) == len(theirs)
    for index in (0, 7, len(ours) - 1):
        torch.testing.assert_close(ours[index]["x"], theirs[index]["x"])
        torch.testing.assert_close(ours[index]["cond"], theirs[index]["cond"])
