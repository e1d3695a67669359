"""The Well's on-disk format (the_well 1.2.0): writing files and computing ``stats.yaml``.

Layout of a dataset directory::

    <root>/stats.yaml
    <root>/data/{train,valid,test}/*.hdf5

Each HDF5 file holds ``n_trajectories`` trajectories sharing one set of simulation
parameters (constant scalars) and one boundary type, with fields stored as
``(B, T, *spatial)`` (``t0_fields``) and ``(B, T, *spatial, D)`` (``t1_fields``).
The writer below produces files that ``the_well.data.WellDataset`` loads unmodified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pipelines.io import atomic_path, write_yaml

SPLITS: tuple[str, ...] = ("train", "valid", "test")
FIELD_GROUPS: tuple[str, ...] = ("t0_fields", "t1_fields", "t2_fields")
BC_TYPES: tuple[str, ...] = ("WALL", "OPEN", "PERIODIC")  # the_well's BoundaryCondition codes 0, 1, 2
STATS_KEYS: tuple[str, ...] = ("mean", "std", "rms", "mean_delta", "std_delta", "rms_delta")
#: Extra keys (beside The Well's) for strictly positive fields: moments of log(x).
LOG_STATS_KEYS: tuple[str, ...] = ("mean_log", "std_log")


def split_files(root: str | Path, split: str) -> list[Path]:
    """Sorted HDF5 files of one split (``*.hdf5`` and ``*.h5``, as the_well globs)."""
    directory = Path(root) / "data" / split
    return sorted([*directory.glob("*.hdf5"), *directory.glob("*.h5")])


# --------------------------------------------------------------------------- writing


@dataclass
class WellFile:
    """Everything one The Well HDF5 file holds, for a 2-D cartesian dataset.

    ``t0`` maps a scalar field name to ``(B, T, X, Y)``; ``t1`` a vector field name to
    ``(B, T, X, Y, 2)``; ``parameters`` the constant simulation parameters (root attributes
    and ``/scalars`` entries); ``boundary`` is ``"open"``, ``"periodic"`` or ``"wall"``
    on every side.
    """

    dataset_name: str
    time: np.ndarray  # (T,)
    x: np.ndarray  # (X,)
    y: np.ndarray  # (Y,)
    boundary: str
    parameters: Mapping[str, float]
    t0: Mapping[str, np.ndarray]
    t1: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_trajectories(self) -> int:
        return int(next(iter(self.t0.values())).shape[0])


def _str_list(values: Iterable[str]) -> np.ndarray:
    return np.array(list(values), dtype=h5py.string_dtype())


def write_well_file(path: str | Path, data: WellFile, compression: str | None = "gzip") -> None:
    """Write ``data`` to ``path`` in The Well's layout, atomically.

    Fields are chunked one frame per chunk and (optionally) gzip-compressed with the
    shuffle filter: WellDataset reads them through h5py, which decompresses transparently.
    The bytes depend only on the data (HDF5 creation times are not recorded).
    """
    spatial = ("x", "y")
    bc_type = data.boundary.upper()
    if bc_type not in BC_TYPES:
        raise ValueError(f"boundary must be one of {[b.lower() for b in BC_TYPES]}, got {data.boundary!r}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        f.attrs["dataset_name"] = data.dataset_name
        f.attrs["grid_type"] = "cartesian"
        f.attrs["n_spatial_dims"] = len(spatial)
        f.attrs["n_trajectories"] = data.n_trajectories
        f.attrs["simulation_parameters"] = _str_list(data.parameters)
        for name, value in data.parameters.items():
            f.attrs[name] = value

        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = _str_list(spatial)
        for name, values in (("time", data.time), ("x", data.x), ("y", data.y)):
            dset = dims.create_dataset(name, data=np.asarray(values, dtype=np.float32))
            dset.attrs["sample_varying"] = False
            dset.attrs["time_varying"] = name == "time"

        bcs = f.create_group("boundary_conditions")
        for axis, coords in zip(spatial, (data.x, data.y)):
            mask = np.zeros(len(coords), dtype=bool)
            mask[[0, -1]] = True  # the boundary cells of this axis
            bc = bcs.create_group(f"{axis}_{data.boundary.lower()}")
            bc.attrs["associated_dims"] = _str_list([axis])
            bc.attrs["associated_fields"] = _str_list([])
            bc.attrs["bc_type"] = bc_type
            bc.attrs["sample_varying"] = False
            bc.attrs["time_varying"] = False
            bc.create_dataset("mask", data=mask)

        scalars = f.create_group("scalars")
        scalars.attrs["field_names"] = _str_list(data.parameters)
        for name, value in data.parameters.items():
            dset = scalars.create_dataset(name, data=np.float64(value))
            dset.attrs["sample_varying"] = False
            dset.attrs["time_varying"] = False

        for group_name, fields in zip(FIELD_GROUPS, (data.t0, data.t1, {})):
            group = f.create_group(group_name)
            group.attrs["field_names"] = _str_list(fields)
            for name, values in fields.items():
                values = np.asarray(values, dtype=np.float32)
                chunks = (1, 1, *values.shape[2:])
                dset = group.create_dataset(
                    name, data=values, chunks=chunks, compression=compression,
                    shuffle=compression is not None,
                )
                dset.attrs["dim_varying"] = np.ones(len(spatial), dtype=bool)
                dset.attrs["sample_varying"] = True
                dset.attrs["time_varying"] = True


# --------------------------------------------------------------------------- statistics


class _Moments:
    """Streaming first and second moments per component, in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: np.ndarray | float = 0.0
        self.sumsq: np.ndarray | float = 0.0

    def add(self, values: np.ndarray, components: int) -> None:
        flat = values.reshape(-1, components).astype(np.float64)  # (N, D)
        self.count += flat.shape[0]
        self.sum = self.sum + flat.sum(axis=0)
        self.sumsq = self.sumsq + np.square(flat).sum(axis=0)

    def summary(self) -> tuple[list[float], list[float], list[float]]:
        mean = np.asarray(self.sum) / self.count
        meansq = np.asarray(self.sumsq) / self.count
        std = np.sqrt(np.maximum(meansq - mean**2, 0.0))
        return mean.tolist(), std.tolist(), np.sqrt(meansq).tolist()


def _unwrap(values: list[float]) -> float | list[float]:
    return values[0] if len(values) == 1 else values


def compute_stats(root: str | Path, split: str = "train") -> dict[str, dict[str, float | list[float]]]:
    """The Well's normalisation statistics over one split: for every field ``mean``,
    ``std``, ``rms`` of the values and, for time-varying fields, of the one-step
    differences (``*_delta``), per component for vector fields (as lists). Strictly positive scalar
    fields also get ``mean_log`` and ``std_log`` (moments of ``log x``), which the loader's
    log transform uses.

    Reads one trajectory at a time, so memory stays at one trajectory.
    """
    moments: dict[str, dict[str, _Moments]] = {}
    minimum: dict[str, float] = {}
    for path in split_files(root, split):
        with h5py.File(path, "r") as f:
            for order, group_name in enumerate(FIELD_GROUPS):
                for name in f[group_name].attrs["field_names"]:
                    dset = f[group_name][name]
                    varying = bool(dset.attrs["time_varying"])
                    components = 2**order  # 2-D: scalars 1, vectors 2, tensors 4 components
                    m = moments.setdefault(name, {k: _Moments() for k in ("value", "delta", "log")})
                    blocks = range(dset.shape[0]) if dset.attrs["sample_varying"] else [()]
                    for b in blocks:
                        values = dset[b]  # ([T,] X, Y[, D])
                        m["value"].add(values, components)
                        if varying:
                            m["delta"].add(np.diff(values, axis=0), components)
                        minimum[name] = min(minimum.get(name, np.inf), float(values.min()))
                        if order == 0 and minimum[name] > 0:
                            m["log"].add(np.log(values.astype(np.float64)), 1)
    if not moments:
        raise ValueError(f"{Path(root) / 'data' / split}: no fields found to compute statistics")
    stats: dict[str, dict[str, float | list[float]]] = {key: {} for key in (*STATS_KEYS, *LOG_STATS_KEYS)}
    for name, m in moments.items():
        for prefix, moment in (("", m["value"]), ("_delta", m["delta"])):
            if not moment.count:  # constant in time: no deltas
                continue
            mean, std, rms = moment.summary()
            stats[f"mean{prefix}"][name] = _unwrap(mean)
            stats[f"std{prefix}"][name] = _unwrap(std)
            stats[f"rms{prefix}"][name] = _unwrap(rms)
        if minimum[name] > 0 and m["log"].count:
            mean, std, _ = m["log"].summary()
            stats["mean_log"][name] = mean[0]
            stats["std_log"][name] = std[0]
    return {key: value for key, value in stats.items() if value}


def write_stats(root: str | Path, split: str = "train") -> Path:
    """Compute :func:`compute_stats` and write ``<root>/stats.yaml`` atomically."""
    path = Path(root) / "stats.yaml"
    write_yaml(path, compute_stats(root, split))
    return path

