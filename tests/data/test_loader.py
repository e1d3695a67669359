"""The loader: windows, strides, conditioning and the log-then-standardise normalisation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import yaml

from models.normalizer import FieldNormalizer
from pipelines.data.welldata import split_files
from pipelines.data.windows import WellWindows, normalizer_from_stats
from pipelines.settings import ConfigError
from pipelines.settings.data import DataConfig
from tests.conftest import configured

LOG_FIELDS = ("energy", "density", "pressure")


def test_windows_are_strided_channels_first_and_normalised(tiny_dataset):
    windows = WellWindows.from_config(configured(DataConfig, "data", root=str(tiny_dataset), context=2, horizon=3, stride=4),
                                      "test")
    assert windows.channels == ["energy", "density", "pressure", "momentum_x", "momentum_y"]
    # 101 frames, windows of 5 frames 4 apart span 17 steps: 85 start times per trajectory.
    assert len(windows) == 2 * 85
    item = windows[3]  # trajectory 0 of the first file, start time 3
    assert item["x"].shape == (5, 5, 16, 16)

    path = split_files(tiny_dataset, "test")[0]
    with h5py.File(path, "r") as f:
        steps = [3, 7, 11, 15, 19]
        raw = np.stack([f["t0_fields/energy"][0, steps], f["t0_fields/density"][0, steps],
                        f["t0_fields/pressure"][0, steps], *np.moveaxis(f["t1_fields/momentum"][0, steps], -1, 0)])
        gamma, periodic = float(f.attrs["gamma"]), "x_periodic" in f["boundary_conditions"]
    stats = yaml.safe_load((tiny_dataset / "stats.yaml").read_text())
    expected_density = (np.log(raw[1]) - stats["mean_log"]["density"]) / stats["std_log"]["density"]
    expected_mx = (raw[3] - stats["mean"]["momentum"][0]) / stats["std"]["momentum"][0]
    assert item["x"][1].numpy() == pytest.approx(expected_density, abs=1e-5)
    assert item["x"][3].numpy() == pytest.approx(expected_mx, abs=1e-5)
    physical = windows.normalizer.denormalize(item["x"])
    assert physical.numpy() == pytest.approx(raw, rel=1e-5, abs=1e-6)

    cond = dict(zip(windows.condition_names, item["cond"].tolist()))
    assert cond["gamma"] == pytest.approx(gamma)
    kind = "periodic" if periodic else "open"
    assert all(cond[f"bc_{a}_{s}_{kind}"] == 1.0 for a in (0, 1) for s in ("lo", "hi"))
    assert sum(v for k, v in cond.items() if k.startswith("bc_")) == 4


def test_train_windows_are_approximately_standard(tiny_dataset):
    windows = WellWindows(tiny_dataset, "train", context=1, horizon=0, stride=1, log_fields=LOG_FIELDS)
    x = torch.stack([windows[i]["x"] for i in range(0, len(windows), 7)])  # (N, C, 1, H, W)
    per_channel = x.transpose(0, 1).reshape(5, -1)
    assert per_channel.mean(1).abs().max() < 0.25
    assert (per_channel.std(1) - 1).abs().max() < 0.25


def test_log_moments_derived_from_mean_and_std_when_stats_lack_them():
    rng = np.random.default_rng(0)
    mu, sigma = 0.3, 0.5
    samples = rng.lognormal(mu, sigma, size=1_000_000)
    stats = {"mean": {"rho": float(samples.mean())}, "std": {"rho": float(samples.std())}}
    norm = normalizer_from_stats(stats, [("rho", "rho", 0)], log_fields=["rho"])
    assert norm.mean.item() == pytest.approx(mu, abs=0.01)
    assert norm.std.item() == pytest.approx(sigma, rel=0.02)
    z = norm.normalize(torch.from_numpy(samples[:10_000]).float().view(1, -1))
    assert z.mean().item() == pytest.approx(0.0, abs=0.05) and z.std().item() == pytest.approx(1.0, abs=0.05)


def test_unknown_log_field_is_a_config_error(tiny_dataset):
    with pytest.raises(ConfigError, match=r"data.log_fields: \['temperature'\] not among"):
        WellWindows(tiny_dataset, "train", log_fields=["temperature"])


def test_log_of_a_signed_field_is_refused():
    stats = {"mean": {"u": -0.1}, "std": {"u": 1.0}}
    with pytest.raises(ConfigError, match="only positive fields"):
        normalizer_from_stats(stats, [("u", "u", 0)], log_fields=["u"])


@pytest.mark.parametrize("context, horizon", [(1, 0), (2, 3)])
def test_preloading_whole_trajectories_gives_the_windows_read_one_by_one(tiny_dataset, context, horizon):
    """preload() fills the cache from one read per trajectory; every window (fields,
    conditioning) equals the one the_well reads on its own, and no window is left to read."""
    fields = ["density", "pressure"]
    direct = WellWindows(tiny_dataset, "train", context, horizon, 1, fields)
    preloaded = WellWindows(tiny_dataset, "train", context, horizon, 1, fields, cache=True).preload()
    assert len(preloaded.cache) == len(direct) > 1
    for i in range(len(direct)):
        a, b = direct[i], preloaded[i]
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["cond"], b["cond"]), i
