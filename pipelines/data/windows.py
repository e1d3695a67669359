"""Data access: windows of The Well trajectories as normalised, channels-first tensors.

One loader serves the built-in ``euler_mini`` and any real The Well dataset directory
(for example ``euler_multi_quadrants_periodicBC`` fetched with ``the-well-download``): it
reads through ``the_well.data.WellDataset`` in path mode, so whatever the_well can read,
this can.

A sample is a window of ``L = context + horizon`` frames taken every ``stride`` stored
steps, with

    x    (C, L, H, W)  fields, log-transformed where non-negative, then standardised
    cond (P,)          simulation parameters (constant scalars, e.g. gamma) followed by a
                       one-hot of the boundary type of each side of each axis

The log transform of non-negative fields before standardisation follows the LoLA paper
(``z = (log x - mu_log) / sigma_log``); the statistics come from ``stats.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml
from the_well.data import WellDataset
from the_well.data.datasets import TrajectoryMetadata
from the_well.data.augmentation import Augmentation, Compose, RandomAxisFlip, RandomAxisPermute, RandomAxisRoll
from torch import Tensor

from models.normalizer import FieldNormalizer
from pipelines.data.validate import ensure_valid
from pipelines.data.welldata import BC_TYPES, split_files
from pipelines.settings import ConfigError
from pipelines.settings.data import DataConfig


def normalizer_from_stats(stats: dict, channels: Sequence[tuple[str, str, int]],
               log_fields: Sequence[str], min_std: float = 1e-4) -> FieldNormalizer:
    """The :class:`FieldNormalizer` of a The Well ``stats.yaml`` mapping.

    ``channels`` lists ``(channel, field, component)``, e.g. ``("momentum_x",
    "momentum", 0)``. Log channels use ``mean_log``/``std_log`` when present (written by
    ``latentops simulate``/``stats``); otherwise they are derived from ``mean`` and
    ``std`` by log-normal moment matching, ``s^2 = log(1 + std^2/mean^2)``,
    ``m = log(mean) - s^2/2``, which is what a real The Well ``stats.yaml`` allows.
    """
    mean, std, log = [], [], []
    fields = {field for _, field, _ in channels}
    unknown = sorted(set(log_fields) - fields)
    if unknown:
        raise ConfigError(f"data.log_fields: {unknown} not among the dataset's fields {sorted(fields)}")
    for channel, field, component in channels:
        try:
            m = float(np.atleast_1d(stats["mean"][field])[component])
            s = float(np.atleast_1d(stats["std"][field])[component])
        except (KeyError, IndexError, TypeError):
            raise ConfigError(f"stats.yaml: no mean/std for field {field!r} (channel {channel})") from None
        is_log = field in log_fields
        if is_log and field in stats.get("mean_log", {}):
            m, s = float(stats["mean_log"][field]), float(stats["std_log"][field])
        elif is_log:
            if m <= 0:
                raise ConfigError(f"data.log_fields: field {field!r} has mean {m} <= 0 in stats.yaml; "
                                  "only positive fields can be log-transformed")
            var_log = np.log1p((s / m) ** 2)
            m, s = float(np.log(m) - var_log / 2), float(np.sqrt(var_log))
        mean.append(m)
        std.append(max(s, min_std))
        log.append(is_log)
    return FieldNormalizer(
        channels=tuple(c for c, _, _ in channels),
        mean=torch.tensor(mean, dtype=torch.float32),
        std=torch.tensor(std, dtype=torch.float32),
        log=torch.tensor(log, dtype=torch.bool),
    )


class WellWindows(torch.utils.data.Dataset):
    """Windows of ``context + horizon`` frames at time stride ``stride`` from one split of
    a The Well dataset directory, normalised and channels-first.

    Items are ``{"x": (C, L, H, W), "cond": (P,)}`` (float32). ``channels`` and
    ``condition_names`` name the entries of ``C`` and ``P``.
    """

    def __init__(self, root: str | Path, split: str, context: int = 1, horizon: int = 0,
                 stride: int = 1, log_fields: Sequence[str] = (), transform: Augmentation | None = None,
                 cache: bool = False):
        self.root = Path(root)
        self.split = split
        self.cache: dict[int, tuple] | None = {} if cache else None
        self.well = WellDataset(
            path=str(self.root), well_split_name=split,
            n_steps_input=context, n_steps_output=horizon,
            min_dt_stride=stride, max_dt_stride=stride,
            use_normalization=False, return_grid=False, boundary_return_type="padding",
            transform=transform,
        )
        meta = self.well.metadata
        self.spatial_dims = len(meta.spatial_resolution)
        self.channel_fields = [
            (channel, field, component)
            for order in sorted(meta.field_names)
            for field, channels in _group_components(meta.field_names[order], self.well.core_field_names).items()
            for component, channel in enumerate(channels)
        ]
        self.channels = [c for c, _, _ in self.channel_fields]
        stats = yaml.safe_load((self.root / "stats.yaml").read_text())
        self.normalizer = normalizer_from_stats(stats, self.channel_fields, log_fields)
        sides = ("lo", "hi")
        self.condition_names = list(meta.constant_scalar_names) + [
            f"bc_{axis}_{side}_{bc.lower()}"
            for axis in range(self.spatial_dims) for side in sides for bc in BC_TYPES
        ]

    @property
    def dataset_name(self) -> str:
        return self.well.metadata.dataset_name

    def boundary(self, cond: Tensor) -> str:
        """The boundary types of a trajectory's conditioning ``cond (P,)``, lower case and
        joined by ``+`` when its sides differ (``periodic``, ``open``, ``open+wall``)."""
        types = {name.rsplit("_", 1)[1] for name, value in zip(self.condition_names, cond.tolist())
                 if name.startswith("bc_") and value > 0.5}
        return "+".join(sorted(types)) or "unknown"

    @property
    def resolution(self) -> tuple[int, ...]:
        return tuple(self.well.metadata.spatial_resolution)

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str, validate: bool = True) -> WellWindows:
        """The windows of ``split`` as ``data:`` configures them, after validating the dataset
        directory (one clear error listing every format problem)."""
        if validate:
            ensure_valid(cfg.root)
        return cls(cfg.root, split, cfg.context, cfg.horizon, cfg.stride, cfg.log_fields, cache=cfg.cache)

    def __len__(self) -> int:
        return len(self.well)

    def preload(self) -> WellWindows:
        """Fill the ``cache`` with one HDF5 read per trajectory instead of one per window (a
        window's file data is a time slice of its trajectory's): the_well reads some thirty
        HDF5 attributes per read, ~10 ms, so a split of single states loads ~100x faster.
        Windows at time stride 1 only; a no-op otherwise or without ``cache``."""
        well = self.well
        if self.cache is None or well.min_dt_stride != 1 or well.max_dt_stride != 1 or well.restriction_set is not None:
            return self
        length = well.n_steps_input + well.n_steps_output
        for file_idx, path in enumerate(well.files_paths):
            windows, steps = well.n_windows_per_trajectory[file_idx], well.n_steps_per_trajectory[file_idx]
            offset = max(well.file_index_offsets[file_idx], 0)
            with h5py.File(path, "r") as file:
                for sample in range(well.n_trajectories_per_file[file_idx]):
                    read = (file, well.caches[file_idx], sample, 0, steps, 1)
                    fields, constant_fields = well._reconstruct_fields(*read)
                    scalars, constant_scalars = well._reconstruct_scalars(*read)
                    bcs = well._reconstruct_bcs(*read) if well.boundary_return_type is not None else None
                    for t in range(windows):
                        data = {"variable_fields": _time_slice(fields, t, length), "constant_fields": constant_fields,
                                "variable_scalars": _time_slice(scalars, t, length),
                                "constant_scalars": constant_scalars}
                        if bcs is not None:
                            data["boundary_conditions"] = bcs
                        self.cache[offset + sample * windows + t] = (data, file_idx, sample, t, 1)
        return self

    def _well_sample(self, index: int) -> dict[str, Tensor]:
        """``self.well[index]``; with ``cache``, the file reads are kept in memory and only
        the_well's own post-processing (transform included) runs again, so a random
        augmentation still differs at every access."""
        if self.cache is None:
            return self.well[index]
        if index not in self.cache:
            self.cache[index] = self.well._load_one_sample(index)
        data, file_idx, sample_idx, time_idx, dt = self.cache[index]
        data = _copy_dicts(data)  # transforms replace entries in place; tensors are not modified
        meta = TrajectoryMetadata(self.well, file_idx, sample_idx, time_idx, dt)
        data = self.well._preprocess_data(data, meta)  # the steps of WellDataset.__getitem__
        if self.well.transform is not None:
            data = self.well.transform(data, meta)
        data = self.well._postprocess_data(data, meta)
        return self.well._construct_sample(data, meta)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = self._well_sample(index)
        frames = [sample["input_fields"]]
        if "output_fields" in sample:
            frames.append(sample["output_fields"])
        x = torch.cat(frames, dim=0).float()  # (L, H, W, C), The Well's channels-last
        x = x.movedim(-1, 0)  # (C, L, H, W)
        x = self.normalizer.normalize(x, dim=0)
        scalars = sample.get("constant_scalars", torch.zeros(0)).float().reshape(-1)  # (S,)
        codes = sample["boundary_conditions"].long()  # (D, 2), the_well's codes
        bc = torch.nn.functional.one_hot(codes, len(BC_TYPES)).float().reshape(-1)  # (D * 2 * 3,)
        return {"x": x, "cond": torch.cat([scalars, bc])}


def trajectories(data: DataConfig, split: str, augment: bool = False) -> WellWindows:
    """Whole trajectories of a split as single windows: items ``x`` are ``(C, T, H, W)``
    (``T`` the shortest trajectory's length)."""
    lengths = []
    for path in split_files(data.root, split):
        with h5py.File(path, "r") as f:
            lengths.append(f["dimensions/time"].shape[-1])
    return WellWindows(data.root, split, min(lengths), 0, 1, data.log_fields,
                       transform=geometric_augmentation() if augment else None)


def _time_slice(tree: Any, start: int, length: int) -> Any:
    """Every tensor of the nested dicts ``tree`` sliced to ``[start, start + length)`` on
    its first (time) axis."""
    if isinstance(tree, dict):
        return {k: _time_slice(v, start, length) for k, v in tree.items()}
    return tree[start: start + length]


def _copy_dicts(tree: Any) -> Any:
    """Copy the nested dicts of ``tree``, sharing the leaves."""
    return {k: _copy_dicts(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def _group_components(channels: Sequence[str], fields: Sequence[str]) -> dict[str, list[str]]:
    """Group WellDataset channel names (``momentum_x``, ``momentum_y``) by their field
    (``momentum``), in order."""
    groups: dict[str, list[str]] = {}
    for channel in channels:
        field = next(f for f in sorted(fields, key=len, reverse=True) if channel == f or channel.startswith(f + "_"))
        groups.setdefault(field, []).append(channel)
    return groups


def geometric_augmentation() -> Augmentation:
    """The Well's symmetry-preserving augmentations (LoLA): random axis flips (vector
    components change sign), axis permutations, and random rolls of periodic axes."""
    return Compose(RandomAxisFlip(), RandomAxisPermute(), RandomAxisRoll())
