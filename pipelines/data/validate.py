"""``latentops validate-data``: check a dataset directory against The Well's format.

Every problem is reported at once, each naming the file, the HDF5 object (group, dataset
or attribute) and what was expected, so a person can fix a dataset in one pass. Stages call
:func:`ensure_valid` before they read data. Checks follow the_well 1.2.0's reader
(``WellDataset``) and its formatting checker.
"""

from __future__ import annotations

import argparse
import sys
import hashlib
import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from pipelines.data.welldata import BC_TYPES, FIELD_GROUPS, SPLITS, STATS_KEYS, split_files, write_stats
from pipelines.options import section
from pipelines.settings.data import DataConfig

REQUIRED_GROUPS = ("dimensions", "boundary_conditions", "scalars", *FIELD_GROUPS)
REQUIRED_ROOT_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories", "simulation_parameters")
BC_ATTRS = ("bc_type", "associated_dims", "associated_fields", "sample_varying", "time_varying")
FIELD_ATTRS = ("dim_varying", "sample_varying", "time_varying")
FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


@dataclass(frozen=True)
class Problem:
    """One format violation: ``where`` is a file (relative to the dataset root), ``what``
    the object inside it (``/t0_fields/density``, ``/@n_trajectories`` for an attribute)."""

    where: str
    what: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.message}" if self.what else f"{self.where}: {self.message}"


class DataValidationError(ValueError):
    """A dataset directory does not follow The Well's format; lists every problem."""

    def __init__(self, root: str | Path, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{root}: {len(problems)} problem(s) with The Well's format:\n{lines}")


@dataclass
class _FileSummary:
    dataset_name: str | None = None
    resolution: tuple[int, ...] | None = None
    fields: tuple[str, ...] | None = None
    time_varying_fields: dict[str, int] | None = None  # name -> tensor order


def _names(value: Any) -> list[str]:
    """An HDF5 list-of-strings attribute as Python strings (h5py gives bytes or str)."""
    if isinstance(value, (str, bytes)):
        value = [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value).tolist()]


class _FileChecker:
    """Checks one HDF5 file; collects problems instead of raising."""

    def __init__(self, path: Path, rel: str):
        self.path, self.rel = path, rel
        self.problems: list[Problem] = []
        self.summary = _FileSummary()

    def problem(self, what: str, message: str) -> None:
        self.problems.append(Problem(self.rel, what, message))

    def attr(self, obj: h5py.HLObject, name: str) -> Any:
        if name not in obj.attrs:
            self.problem(f"{obj.name.rstrip('/')}/@{name}", "missing attribute")
            return None
        return obj.attrs[name]

    def group(self, f: h5py.File, name: str) -> h5py.Group | None:
        if name not in f:
            self.problem(f"/{name}", "missing group")
            return None
        if not isinstance(f[name], h5py.Group):
            self.problem(f"/{name}", "expected a group, found a dataset")
            return None
        return f[name]

    def run(self) -> None:
        try:
            f = h5py.File(self.path, "r")
        except OSError as error:
            self.problem("", f"not a readable HDF5 file ({error})")
            return
        with f:
            try:
                self.check(f)
            except (OSError, RuntimeError) as error:  # HDF5's errors on a damaged object or chunk
                self.problem("", f"corrupted HDF5 file: reading it failed after the header ({error}); "
                             "re-create or re-download it")

    def check(self, f: h5py.File) -> None:
        for name in REQUIRED_ROOT_ATTRS:
            self.attr(f, name)
        grid_type = f.attrs.get("grid_type")
        if grid_type is not None and _names(grid_type) != ["cartesian"]:
            self.problem("/@grid_type", f"expected 'cartesian', got {grid_type!r}")
        self.summary.dataset_name = _names(f.attrs["dataset_name"])[0] if "dataset_name" in f.attrs else None
        groups = {name: self.group(f, name) for name in REQUIRED_GROUPS}

        n_traj = f.attrs.get("n_trajectories")
        n_traj = int(n_traj) if n_traj is not None else None
        spatial, sizes, n_steps = self.check_dimensions(f, groups["dimensions"])
        if groups["boundary_conditions"] is not None:
            self.check_boundaries(groups["boundary_conditions"], spatial, sizes)
        if groups["scalars"] is not None:
            self.check_scalars(f, groups["scalars"])
        fields: list[str] = []
        varying: dict[str, int] = {}
        for order, group_name in enumerate(FIELD_GROUPS):
            group = groups[group_name]
            if group is None:
                continue
            names = self.attr(group, "field_names")
            for name in _names(names) if names is not None else []:
                fields.append(name)
                if self.check_field(group, name, order, n_traj, n_steps, sizes):
                    varying[name] = order
        self.summary.fields = tuple(fields)
        self.summary.time_varying_fields = varying
        if not varying:
            self.problem("/t*_fields", "no time-varying field: nothing to learn from")

    def check_dimensions(self, f: h5py.File, dims: h5py.Group | None) -> tuple[list[str], tuple[int, ...] | None, int | None]:
        if dims is None:
            return [], None, None
        spatial_attr = self.attr(dims, "spatial_dims")
        spatial = _names(spatial_attr) if spatial_attr is not None else []
        n_dims = f.attrs.get("n_spatial_dims")
        if n_dims is not None and spatial and int(n_dims) != len(spatial):
            self.problem("/@n_spatial_dims", f"is {int(n_dims)} but /dimensions/@spatial_dims lists {spatial}")
        sizes: list[int] = []
        n_steps = None
        for name in ["time", *spatial]:
            if name not in dims:
                self.problem(f"/dimensions/{name}", "missing dataset")
                continue
            dset = dims[name]
            self.attr(dset, "sample_varying")  # (time_varying is optional: WellDataset never reads it)
            if name == "time":
                n_steps = int(dset.shape[-1]) if dset.ndim else None
            else:
                sizes.append(int(dset.shape[-1]) if dset.ndim else 0)
        resolution = tuple(sizes) if len(sizes) == len(spatial) else None
        self.summary.resolution = resolution
        return spatial, resolution, n_steps

    def check_boundaries(self, bcs: h5py.Group, spatial: list[str], sizes: tuple[int, ...] | None) -> None:
        for name, bc in bcs.items():
            where = f"/boundary_conditions/{name}"
            for attr in BC_ATTRS:
                self.attr(bc, attr)
            bc_type = bc.attrs.get("bc_type")
            if bc_type is not None and _names(bc_type)[0].upper() not in BC_TYPES:
                self.problem(f"{where}/@bc_type", f"must be one of {list(BC_TYPES)}, got {bc_type!r}")
            dims = bc.attrs.get("associated_dims")
            unknown_dims = [d for d in _names(dims) if d not in spatial] if dims is not None else []
            if unknown_dims:
                self.problem(f"{where}/@associated_dims", f"{unknown_dims} not in spatial_dims {spatial}")
            if "mask" not in bc:
                self.problem(f"{where}/mask", "missing dataset")
            elif dims is not None and sizes is not None and not unknown_dims:
                lead = int(bool(bc.attrs.get("sample_varying"))) + int(bool(bc.attrs.get("time_varying")))
                expected = tuple(sizes[spatial.index(d)] for d in _names(dims))
                if tuple(bc["mask"].shape[lead:]) != expected:
                    self.problem(f"{where}/mask", f"wrong shape {bc['mask'].shape}, expected {expected} "
                                 "(the sizes of its associated_dims)")

    def check_scalars(self, f: h5py.File, scalars: h5py.Group) -> None:
        names = self.attr(scalars, "field_names")
        for name in _names(names) if names is not None else []:
            if name not in scalars:
                self.problem(f"/scalars/{name}", "listed in /scalars/@field_names but missing")
                continue
            for attr in ("sample_varying", "time_varying"):
                self.attr(scalars[name], attr)
            values = scalars[name][()]
            if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
                self.problem(f"/scalars/{name}", "contains NaN or infinite values")
        params = f.attrs.get("simulation_parameters")
        for name in _names(params) if params is not None else []:
            if name not in f.attrs:
                self.problem(f"/@{name}", "simulation parameter listed in /@simulation_parameters but missing")
            if name not in scalars:
                self.problem(f"/scalars/{name}", "simulation parameter missing from /scalars")

    def check_field(self, group: h5py.Group, name: str, order: int, n_traj: int | None,
                    n_steps: int | None, sizes: tuple[int, ...] | None) -> bool:
        """Check one field; True if it is a time-varying field."""
        where = f"{group.name}/{name}"
        if name not in group:
            self.problem(where, f"listed in {group.name}/@field_names but missing")
            return False
        dset = group[name]
        attrs = {a: self.attr(dset, a) for a in FIELD_ATTRS}
        if dset.dtype not in FLOAT_DTYPES:
            self.problem(where, f"wrong dtype {dset.dtype}, expected float32 or float64")
            return False
        if any(v is None for v in attrs.values()) or sizes is None:
            return False
        expected: list[int | None] = []
        if attrs["sample_varying"]:
            expected.append(n_traj)
        if attrs["time_varying"]:
            expected.append(n_steps)
        dim_varying = np.atleast_1d(attrs["dim_varying"]).astype(bool).tolist()
        if len(dim_varying) != len(sizes):
            self.problem(f"{where}/@dim_varying", f"has {len(dim_varying)} entries, expected {len(sizes)}")
            return False
        expected += [size if vary else 1 for size, vary in zip(sizes, dim_varying)]
        expected += [len(sizes)] * order
        if len(dset.shape) != len(expected) or any(e is not None and s != e for s, e in zip(dset.shape, expected)):
            shown = tuple("?" if e is None else e for e in expected)
            self.problem(where, f"wrong shape {dset.shape}, expected {shown} "
                         "(trajectories, time, *spatial, *components as its attributes say)")
            return False
        # NaN scan one trajectory at a time: bounded memory on large files.
        blocks = range(dset.shape[0]) if attrs["sample_varying"] else [None]
        for b in blocks:
            values = dset[b] if b is not None else dset[()]
            if not np.isfinite(values).all():
                at = f" (first in trajectory {b})" if b is not None else ""
                self.problem(where, f"contains NaN or infinite values{at}")
                break
        return bool(attrs["time_varying"])


def _check_stats(root: Path, varying: dict[str, int], n_dims: int) -> list[Problem]:
    path = root / "stats.yaml"
    if not path.is_file():
        return [Problem("stats.yaml", "", "missing normalisation statistics (The Well's stats.yaml "
                        "beside data/); create it with `latentops stats PATH`")]
    try:
        stats = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        return [Problem("stats.yaml", "", f"not valid YAML: {error}")]
    if not isinstance(stats, dict):
        return [Problem("stats.yaml", "", f"expected a mapping of {list(STATS_KEYS)}, got {type(stats).__name__}")]
    problems = []
    for key in STATS_KEYS:
        if not isinstance(stats.get(key), dict):
            problems.append(Problem("stats.yaml", key, "missing key (a mapping from field name to value)"))
            continue
        for name, order in varying.items():
            if name not in stats[key]:
                problems.append(Problem("stats.yaml", f"{key}.{name}", "missing field"))
                continue
            values = np.atleast_1d(np.asarray(stats[key][name], dtype=np.float64))
            if values.size != n_dims**order:
                problems.append(Problem("stats.yaml", f"{key}.{name}",
                                        f"has {values.size} values, expected {n_dims**order}"))
            elif not np.isfinite(values).all():
                problems.append(Problem("stats.yaml", f"{key}.{name}", "contains NaN or infinite values"))
    return problems


def validate_dataset(root: str | Path, require_stats: bool = True) -> list[Problem]:
    """Every problem with the dataset directory ``root`` (empty list: valid)."""
    root = Path(root)
    if not root.exists():
        return [Problem(str(root), "", "path does not exist")]
    if not root.is_dir():
        return [Problem(str(root), "", "not a directory (expected <root>/data/{train,valid,test}/*.hdf5)")]
    if not (root / "data").is_dir():
        return [Problem("data/", "", "missing directory (expected data/{train,valid,test}/*.hdf5)")]
    problems: list[Problem] = []
    summaries: dict[str, _FileSummary] = {}
    for split in SPLITS:
        directory = root / "data" / split
        files = split_files(root, split)
        if not directory.is_dir():
            problems.append(Problem(f"data/{split}/", "", "missing split directory"))
        elif not files:
            problems.append(Problem(f"data/{split}/", "", "empty split: no *.hdf5 files"))
        for path in files:
            checker = _FileChecker(path, str(path.relative_to(root)))
            checker.run()
            problems += checker.problems
            summaries[checker.rel] = checker.summary
    # Consistency across files, as WellDataset requires within a split and we across all.
    for attribute, label in (("dataset_name", "dataset name"), ("resolution", "resolution"), ("fields", "field names")):
        seen: dict[Any, str] = {}
        for rel, summary in summaries.items():
            value = getattr(summary, attribute)
            if value is not None:
                seen.setdefault(value, rel)
        if len(seen) > 1:
            (a, first), (b, other) = itertools.islice(seen.items(), 2)
            problems.append(Problem(other, "", f"mismatched {label} across files: {b} here, {a} in {first}"))
    if require_stats:
        varying = next((s.time_varying_fields for s in summaries.values() if s.time_varying_fields), {})
        resolution = next((s.resolution for s in summaries.values() if s.resolution), ())
        problems += _check_stats(root, varying, len(resolution) or 2)
    return problems


def ensure_valid(root: str | Path, require_stats: bool = True) -> None:
    """Raise :class:`DataValidationError` listing every problem, if any.

    A dataset found valid is remembered by a stamp named after the path, size and
    modification time of each of its files (:func:`_fingerprint`, in the system's temporary
    directory, never in the dataset): the checks read every value, ~5 s for the built-in
    dataset, and every stage of a ``dvc repro`` calls this; any change to a file, or a new
    or removed file, validates again."""
    stamp = Path(tempfile.gettempdir()) / "latentops-valid" / _fingerprint(Path(root), require_stats)
    if stamp.is_file():
        return
    problems = validate_dataset(root, require_stats)
    if problems:
        raise DataValidationError(root, problems)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()


def _fingerprint(root: Path, require_stats: bool) -> str:
    """SHA-256 of the resolved path, size and modification time (ns) of every file under
    ``root``, and of ``require_stats``."""
    digest = hashlib.sha256(f"{root.resolve()}|{require_stats}".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        info = path.stat()
        digest.update(f"|{path.relative_to(root)}:{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- latentops validate-data, stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Report every problem (file, group/attribute, what was expected) with a The Well dataset "
                          "directory. Exit status 1 if there is any.")
    parser.add_argument("path", nargs="?", help="dataset directory (default: data.root)")
    parser.add_argument("--no-stats", action="store_true", help="do not require stats.yaml")


def main(args: argparse.Namespace) -> int:
    root = args.path or section(args, DataConfig, "data").root
    problems = validate_dataset(root, require_stats=not args.no_stats)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    if problems:
        print(f"{root}: {len(problems)} problem(s); not a valid The Well dataset", file=sys.stderr)
        return 1
    print(f"{root}: OK (The Well format)")
    return 0


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Compute mean/std/rms (and of one-step deltas) per field over a split and write "
                          "PATH/stats.yaml.")
    parser.add_argument("path", help="dataset directory")
    parser.add_argument("--split", default="train", choices=["train", "valid", "test"])


def stats_main(args: argparse.Namespace) -> int:
    ensure_valid(args.path, require_stats=False)
    path = write_stats(args.path, args.split)
    print(f"wrote {path} over the {args.split} split")
    return 0
