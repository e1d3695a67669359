"""Observations: sparse, noisy sensor readings of a trajectory, as data.

A sensor reads one field (a channel name of the dataset, e.g. ``density`` or
``momentum_x``) at one grid point ``(i, j)`` (indices along the dataset's ``x`` and ``y``
axes); readings come at stored time steps ``times`` of the trajectory. Two file formats:

- **HDF5** (``.h5``, ``.hdf5``), written by ``latentops observe``::

    times       (T,)   int     stored time steps observed, increasing
    values      (T, S) float   readings in physical units; NaN = missing
    sensors/
      index     (S, 2) int     grid indices (i, j)
      field     (S,)   str     the field each sensor reads
      noise_std (S,)   float   standard deviation of its noise, physical units, > 0
    attrs: dataset (the dataset's name), format ("latentops-observations/1")

- **CSV** (``.csv``), for a handful of sensors: one reading per row, with the header
  ``time,field,i,j,value,noise_std``. A sensor is a distinct ``(field, i, j)``; a sensor
  without a reading at some time has NaN there.

:func:`read` parses either (one :class:`ObservationError` naming the file and the
problem); :meth:`Observations.check` checks them against a trajectory (fields, grid, length);
:func:`place` draws a sensor layout's grid points (:func:`layout_of`: a configured layout
made concrete on a dataset, :class:`Layout`), and :func:`sample` synthetic observations of a
trajectory by them, for twin experiments.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import h5py
import numpy as np

from models.checks import outside, require
from pipelines.io import atomic_path

if TYPE_CHECKING:
    import torch

    from pipelines.settings.sensors import SensorLayoutConfig

__all__ = ["FORMAT", "Layout", "ObservationError", "Observations", "layout_of", "noise_std", "place", "read",
           "read_checked", "sample", "sensor_count"]

Array = TypeVar("Array", np.ndarray, "torch.Tensor")

FORMAT = "latentops-observations/1"
CSV_HEADER = ("time", "field", "i", "j", "value", "noise_std")


class ObservationError(ValueError):
    """An observation file or its settings are malformed."""


@dataclass(frozen=True)
class Observations:
    """``S`` sensors read at ``T`` times (see the module docstring for shapes)."""

    times: np.ndarray  # (T,) int
    values: np.ndarray  # (T, S) float, NaN = missing
    index: np.ndarray  # (S, 2) int
    fields: tuple[str, ...]  # (S,)
    noise_std: np.ndarray  # (S,) float
    dataset: str = ""

    def __post_init__(self) -> None:
        t, s = len(self.times), len(self.fields)
        bad = lambda: int(np.flatnonzero(~(self.noise_std > 0))[0])  # noqa: E731
        require([
            (self.values.shape == (t, s),
             f"values has shape {self.values.shape}; expected (times, sensors) = ({t}, {s})"),
            (lambda: self.index.shape == (s, 2),
             f"sensors/index has shape {self.index.shape}; expected (sensors, 2) = ({s}, 2)"),
            (lambda: self.noise_std.shape == (s,), f"sensors/noise_std has shape {self.noise_std.shape}; expected ({s},)"),
            (lambda: t != 0 and s != 0, f"needs at least one time and one sensor, got {t} time(s) and {s} sensor(s)"),
            (lambda: not np.any(np.diff(self.times) <= 0), lambda: f"times must be strictly increasing, got {self.times.tolist()}"),
            (lambda: bool(np.isfinite(self.noise_std).all() and (self.noise_std > 0).all()),
             lambda: f"sensor {bad()}: noise_std must be a number > 0, got {self.noise_std[bad()]}"),
            (lambda: not np.isinf(self.values).any(), "values: infinite reading (use NaN for a missing one)"),
        ], ObservationError)

    def check(self, channels: Sequence[str], resolution: Sequence[int], steps: int) -> None:
        """Fail unless every sensor reads one of ``channels`` inside the grid ``resolution``
        and every time is one of the trajectory's ``steps`` stored steps."""
        unknown = sorted(set(self.fields) - set(channels))
        if unknown:
            raise ObservationError(f"unknown field(s) {unknown}; the dataset's fields are {list(channels)}")
        away = np.flatnonzero(outside(self.index, resolution))
        if away.size:
            k = int(away[0])
            raise ObservationError(f"sensor {k} at grid index {self.index[k].tolist()} is outside the domain "
                                   f"of {list(resolution)} points ({away.size} sensor(s) outside)")
        late = self.times[(self.times < 0) | (self.times >= steps)]
        if late.size:
            raise ObservationError(f"time(s) {late.tolist()} outside the trajectory's stored steps 0..{steps - 1}")

    def channel_index(self, channels: Sequence[str]) -> np.ndarray:
        """``(S,)``: each sensor's channel position in ``channels``."""
        return np.array([list(channels).index(f) for f in self.fields])

    def request(self, channels: Sequence[str], stride: int, steps: int) -> dict[str, np.ndarray]:
        """The sensors and readings as a registered model's assimilation inputs
        (``pipelines.serving.assimilator.OBSERVATION_INPUTS``): ``readings (steps, S)`` at the
        stored steps ``stride, 2 stride, ..., steps stride`` (NaN where nothing was read)."""
        values = np.full((steps, len(self.fields)), np.nan, dtype=np.float32)
        for row, t in enumerate(self.times.tolist()):
            if t > 0 and t % stride == 0 and t // stride <= steps:
                values[t // stride - 1] = self.values[row]
        return {"sensor_channel": self.channel_index(channels).astype(np.int64),
                "sensor_index": self.index.astype(np.int64), "noise_std": self.noise_std.astype(np.float32),
                "readings": values}

    def write(self, path: str | Path) -> Path:
        """Write the HDF5 format, atomically."""
        path = Path(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"], f.attrs["dataset"] = FORMAT, self.dataset
            f["times"], f["values"] = self.times.astype(np.int64), self.values.astype(np.float64)
            group = f.create_group("sensors")
            group["index"], group["noise_std"] = self.index.astype(np.int64), self.noise_std.astype(np.float64)
            group["field"] = np.array(self.fields, dtype=h5py.string_dtype())
        return path


#: The HDF5 format's datasets and the kind of values each holds (numpy dtype kinds).
H5_DATASETS = {"times": "iu", "values": "iuf", "sensors/index": "iu", "sensors/field": "SOU", "sensors/noise_std": "iuf"}
KIND_NAMES = {"iu": "integers", "iuf": "numbers", "SOU": "strings"}


def _h5_array(f: h5py.File, key: str) -> np.ndarray:
    """The dataset ``key`` of ``f`` (one of :data:`H5_DATASETS`), checked to hold its kind of
    values: integers as int64, numbers as float64, strings as ``str``."""
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise ObservationError(f"{key}: expected a dataset of {KIND_NAMES[H5_DATASETS[key]]}, found a group")
    values = np.atleast_1d(node[()])
    if values.dtype.kind not in H5_DATASETS[key]:
        raise ObservationError(f"{key}: expected {KIND_NAMES[H5_DATASETS[key]]}, got dtype {values.dtype}")
    if values.dtype.kind in "SOU":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()], dtype=object)
    return values.astype(np.int64 if H5_DATASETS[key] == "iu" else np.float64)


def _read_h5(path: Path) -> Observations:
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in H5_DATASETS if k not in f]
            if missing:
                raise ObservationError(f"missing dataset(s) {missing}")
            arrays = {key: _h5_array(f, key) for key in H5_DATASETS}
            dataset = str(f.attrs.get("dataset", ""))
    except (OSError, KeyError, RuntimeError) as error:  # HDF5's errors on a damaged file or object
        raise ObservationError(f"not a readable HDF5 file, truncated or corrupted ({error})") from None
    return Observations(arrays["times"], arrays["values"], arrays["sensors/index"], tuple(arrays["sensors/field"]),
                        arrays["sensors/noise_std"], dataset)


def _read_csv(path: Path) -> Observations:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as error:
        raise ObservationError(f"not a UTF-8 text CSV file ({error})") from None
    if not rows or tuple(c.strip() for c in rows[0]) != CSV_HEADER:
        raise ObservationError(f"the header must be {','.join(CSV_HEADER)}, got {','.join(rows[0]) if rows else 'nothing'}")
    readings, sensors, times, noise = [], {}, set(), {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(CSV_HEADER):
            raise ObservationError(f"line {number}: expected {len(CSV_HEADER)} columns, got {len(row)}")
        try:
            time, field, i, j = int(row[0]), row[1].strip(), int(row[2]), int(row[3])
            value, std = float(row[4]) if row[4].strip() else float("nan"), float(row[5])
        except ValueError as error:
            raise ObservationError(f"line {number}: {error}") from None
        key = (field, i, j)
        if noise.setdefault(key, std) != std:
            raise ObservationError(f"line {number}: sensor {key} has two noise_std values, {noise[key]} and {std}")
        sensors.setdefault(key, len(sensors))
        times.add(time)
        readings.append((time, key, value))
    if not readings:
        raise ObservationError("no readings (only the header)")
    order = sorted(times)
    values = np.full((len(order), len(sensors)), np.nan)
    for time, key, value in readings:
        values[order.index(time), sensors[key]] = value
    keys = list(sensors)
    return Observations(np.array(order), values, np.array([[i, j] for _, i, j in keys]), tuple(k[0] for k in keys),
                        np.array([noise[k] for k in keys]))


READERS = {".h5": _read_h5, ".hdf5": _read_h5, ".csv": _read_csv}


def read(path: str | Path) -> Observations:
    """Parse an observation file (format by suffix: :data:`READERS`)."""
    path = Path(path)
    if path.suffix not in READERS:
        raise ObservationError(f"{path}: unknown observation format {path.suffix!r}; use one of {sorted(READERS)}")
    if not path.is_file():
        raise ObservationError(f"{path}: no such observation file")
    try:
        return READERS[path.suffix](path)
    except ObservationError as error:
        raise ObservationError(f"{path}: {error}") from None


def read_checked(path: str | Path, dataset: str, channels: Sequence[str], resolution: Sequence[int],
                 steps: int) -> Observations:
    """:func:`read` ``path``, then check it against a trajectory of ``dataset`` (its fields,
    grid and number of stored steps); every error names the file."""
    observations = read(path)
    if observations.dataset and observations.dataset != dataset:
        raise ObservationError(f"{path}: observes dataset {observations.dataset!r}, not {dataset!r}")
    try:
        observations.check(channels, resolution, steps)
    except ObservationError as error:
        raise ObservationError(f"{path}: {error}") from None
    return observations


def sensor_count(fraction: float, shape: Sequence[int]) -> int:
    """``fraction`` of the grid points of a grid of ``shape``, at least one."""
    if not 0 < fraction <= 1:
        raise ObservationError(f"the sensor fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * int(np.prod(shape))))


def place(sensors: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """``sensors`` grid points of a grid of ``shape`` ``(H, W)``, drawn without replacement
    from ``seed``: the grid indices ``(sensors, 2)`` of a sensor layout."""
    h, w = shape
    if not 1 <= sensors <= h * w:
        raise ObservationError(f"sensors: need between 1 and {h * w} grid points, got {sensors}")
    points = np.random.default_rng(seed).choice(h * w, size=sensors, replace=False)
    return np.stack(np.unravel_index(points, (h, w)), axis=1)


def noise_std(field_std: Array, noise: float) -> Array:
    """The sensors' noise standard deviation: ``noise`` times the standard deviation
    ``field_std`` of the field each reads over the trajectory, floored at ``1e-12`` (NumPy
    arrays or torch tensors alike, of any shape)."""
    return noise * field_std.clip(min=1e-12)


def sample(states: np.ndarray, channels: Sequence[str], fields: Sequence[str], index: np.ndarray, every: int,
           noise: float, seed: int = 0, dataset: str = "") -> Observations:
    """Synthetic observations of a trajectory ``states (T, C, H, W)`` (physical units) by
    sensors at the grid points ``index (P, 2)`` (:func:`place`), each reading every field of
    ``fields``, at stored steps ``0, every, 2 every, ...``, with Gaussian noise (drawn from
    ``seed``) of standard deviation ``noise`` times the field's standard deviation over the
    trajectory."""
    t = states.shape[0]
    if every < 1 or noise <= 0:
        raise ObservationError(f"need every >= 1 and noise > 0, got every={every}, noise={noise}")
    unknown = sorted(set(fields) - set(channels))
    if unknown:
        raise ObservationError(f"unknown field(s) {unknown}; the dataset's fields are {list(channels)}")
    rng = np.random.default_rng(seed)
    times = np.arange(0, t, every)
    chans = [list(channels).index(f) for f in fields]
    truth = states[times][:, chans][:, :, index[:, 0], index[:, 1]]  # (T', F, P)
    std = np.array([states[:, k].std() for k in chans])  # (F,)
    sensor_std = np.repeat(noise_std(std, noise), len(index))  # (F P,)
    values = truth.reshape(len(times), -1) + sensor_std * rng.standard_normal((len(times), len(chans) * len(index)))
    return Observations(times, values, np.tile(index, (len(chans), 1)),
                        tuple(f for f in fields for _ in range(len(index))), sensor_std, dataset)


@dataclass(frozen=True)
class Layout:
    """A sensor layout made concrete on a dataset: sensors at the grid points ``points (P,
    2)``, each reading the fields ``fields`` (channel positions ``channels``). Its ``S = F P``
    sensors are ordered field by field, as ``pipelines.data.observations.sample`` writes
    them: sensor ``s`` reads channel ``channel[s]`` at ``index[s]``."""

    name: str
    points: np.ndarray  # (P, 2)
    fields: tuple[str, ...]  # (F,)
    channels: tuple[int, ...]  # (F,)
    every: int
    noise: float

    @property
    def index(self) -> np.ndarray:
        return np.tile(self.points, (len(self.fields), 1))  # (S, 2)

    @property
    def channel(self) -> np.ndarray:
        return np.repeat(np.array(self.channels), len(self.points))  # (S,)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "points": self.points.tolist(), "fields": list(self.fields), "every": self.every,
                "noise": self.noise}

    @classmethod
    def from_dict(cls, data: dict, channels: Sequence[str]) -> Layout:
        """The layout of :meth:`to_dict` on a dataset with ``channels``."""
        fields = tuple(data["fields"])
        unknown = sorted(set(fields) - set(channels))
        if unknown:
            raise ObservationError(f"sensor layout {data['name']}: unknown field(s) {unknown}; the dataset's fields "
                                   f"are {list(channels)}")
        return cls(data["name"], np.asarray(data["points"], dtype=np.int64).reshape(-1, 2), fields,
                   tuple(list(channels).index(f) for f in fields), int(data["every"]), float(data["noise"]))

    def observe(self, states: np.ndarray, channels: Sequence[str], seed: int, dataset: str = "") -> Observations:
        """Synthetic observations of the trajectory ``states (T, C, H, W)`` by this layout
        (:func:`sample`), its noise drawn from ``seed``."""
        return sample(states, channels, self.fields, self.points, self.every, self.noise, seed, dataset)


def layout_of(name: str, cfg: SensorLayoutConfig, channels: list[str], resolution: tuple[int, ...]) -> Layout:
    """The sensors of layout ``cfg`` (named ``name``) on a dataset with ``channels`` at ``resolution``."""
    fields = tuple(cfg.fields) or tuple(channels)
    unknown = sorted(set(fields) - set(channels))
    if unknown:
        raise ObservationError(f"sensors.layouts.{name}.fields: unknown field(s) {unknown}; the dataset's fields are "
                         f"{channels}")
    points = place(sensor_count(cfg.fraction, resolution), resolution, cfg.seed)
    return Layout(name, points, fields, tuple(channels.index(f) for f in fields), cfg.every, cfg.noise)
