"""Shared fixtures: tiny datasets made by the real writers (Clawpack or The Well's own
dummy writer), small enough for a 2-core machine."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import reduce
from operator import getitem
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import yaml

from pipelines.data.welldata import SPLITS, WellFile, write_stats, write_well_file
from pipelines.settings import from_mapping, load_params
from pipelines.settings.simulate import SimulateConfig, Splits

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)

T = TypeVar("T")


def configured(cls: type[T], key: str, **changes: Any) -> T:
    """``key`` of the repository's params.yaml (a section, or a dotted key inside one such
    as ``"train_emulator.train"``) as ``cls``, with ``changes`` (as :func:`dataclasses.replace`):
    tests start from the one source of settings, the config classes having no defaults."""
    raw = reduce(getitem, key.split("."), load_params(REPO / "params.yaml"))
    return dataclasses.replace(from_mapping(cls, raw, key), **changes)


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes``: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def params_with(path: Path, changes: dict[str, Any]) -> Path:
    """The repository's params.yaml with ``changes`` (sections of keys to set, merged key by
    key), written to ``path``: a complete params file that differs only where a test says."""
    path.write_text(yaml.safe_dump(merged(load_params(REPO / "params.yaml"), changes), sort_keys=False))
    return path


MLFLOW_URIS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, share the cores among the workers (and the tools they start)
    rather than let each one's PyTorch take them all."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: the project's console scripts (latentops, dvc) first
    on PATH, as after `. .venv/bin/activate`, and no MLflow store from outside the test."""
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_URIS}
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture(autouse=True)
def isolated_mlflow_store():
    """Tests never touch the user's MLflow store, and ``mlflow.set_tracking_uri`` (which
    also exports MLFLOW_TRACKING_URI) cannot leak one test's store into the next."""
    saved = {name: os.environ.pop(name, None) for name in MLFLOW_URIS}
    yield
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


def tiny_config(**changes) -> SimulateConfig:
    """A fast Clawpack configuration: 16^2, 2 + 1 + 1 trajectories, one worker."""
    base = configured(SimulateConfig, "simulate", resolution=16, trajectories=Splits(2, 1, 1), workers=1)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small euler_mini made by Clawpack (both boundary types present)."""
    from pipelines.stages import simulate

    root = tmp_path_factory.mktemp("euler") / "euler_tiny"
    simulate.run(tiny_config(trajectories=Splits(4, 2, 2)), root, progress=False)
    return root


def write_random_dataset(root: Path, resolution: int = 8, n_steps: int = 6, files_per_split: int = 1,
                         seed: int = 0) -> Path:
    """A valid The Well directory of random positive data (no solver): the base that the
    malformed-input tests break one way at a time."""
    rng = np.random.default_rng(seed)
    coords = (np.arange(resolution) + 0.5) / resolution
    for split in SPLITS:
        for i in range(files_per_split):
            write_well_file(root / "data" / split / f"random_{i}.hdf5", WellFile(
                dataset_name="random", time=np.arange(n_steps) * 0.1, x=coords, y=coords,
                boundary="periodic", parameters={"gamma": 1.4},
                t0={"density": rng.uniform(0.5, 2.0, (2, n_steps, resolution, resolution))},
                t1={"momentum": rng.normal(size=(2, n_steps, resolution, resolution, 2))},
            ))
    write_stats(root)
    return root


@pytest.fixture
def random_dataset(tmp_path) -> Path:
    return write_random_dataset(tmp_path / "random")


@pytest.fixture
def small_filesystem(tmp_path) -> Iterator[Callable[[str, int], Path]]:
    """``mount(name, size)``: a real file system of ``size`` bytes (a tmpfs) at
    ``tmp_path/name``, unmounted after the test, for what happens when a disk fills up.
    Skips where this process may not mount (it needs root or CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(name: str, size: int) -> Path:
        point = tmp_path / name
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small file system here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "--lazy", str(point)], check=True)
