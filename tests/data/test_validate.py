"""``latentops validate-data``: The Well's own dummy data passes; each malformed input gives
one clear error naming the file, the object and what was expected."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from the_well.utils.dummy_data import write_dummy_data

from pipelines.cli import main
from pipelines.data.validate import DataValidationError, ensure_valid, validate_dataset
from pipelines.data.welldata import SPLITS
from pipelines.data.windows import WellWindows
from tests.conftest import REPO, configured, tool_env, write_random_dataset


def test_the_wells_dummy_data_passes_and_loads(tmp_path):
    root = tmp_path / "dummy"
    for split in SPLITS:
        (root / "data" / split).mkdir(parents=True)
        write_dummy_data(str(root / "data" / split / "dummy.hdf5"))
    assert main(["stats", str(root)]) == 0
    assert validate_dataset(root) == []
    assert main(["validate-data", str(root)]) == 0

    windows = WellWindows(root, "train", context=2, horizon=3, stride=2)
    item = windows[0]
    assert windows.channels == ["field_x", "field_y"]  # the dummy's one t1 field
    assert item["x"].shape == (2, 5, 32, 32)  # (C, L, H, W)
    assert windows.condition_names[:2] == ["a", "b"]
    assert item["cond"].shape == (2 + 12,)
    assert item["cond"][:2].tolist() == pytest.approx([0.25, 0.75])
    assert item["x"].isfinite().all()


def _first_file(root: Path, split: str = "train") -> Path:
    return next((root / "data" / split).glob("*.hdf5"))


def _edit(split: str, edit: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        with h5py.File(_first_file(root, split), "r+") as f:
            edit(f)
    return apply


def _replace(name: str, values: Callable[[np.ndarray], np.ndarray]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        old = f[name]
        attrs = dict(old.attrs)
        new_values = values(old[()])
        del f[name]
        new = f.create_dataset(name, data=new_values)
        new.attrs.update(attrs)
    return edit


def _nan(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values[1, 2, 3, 4] = np.nan
    return values


def _empty_split(root: Path) -> None:
    for path in (root / "data" / "valid").glob("*.hdf5"):
        path.unlink()


def _other_resolution(root: Path) -> None:
    other = write_random_dataset(root.parent / "coarse", resolution=4)
    shutil.copy(_first_file(other), root / "data" / "train" / "random_coarse.hdf5")


def _not_hdf5(root: Path) -> None:
    (root / "data" / "test" / "broken.hdf5").write_text("not an HDF5 file")


MALFORMED: dict[str, tuple[Callable[[Path], None] | None, str, str]] = {
    # case: (how to break the dataset, where the error points, what it says)
    "missing group": (_edit("train", lambda f: f.__delitem__("boundary_conditions")),
                      "/boundary_conditions", "missing group"),
    "missing attribute": (_edit("train", lambda f: f.attrs.__delitem__("n_trajectories")),
                          "/@n_trajectories", "missing attribute"),
    "missing bc attribute": (_edit("valid", lambda f: f["boundary_conditions/x_periodic"].attrs.__delitem__("bc_type")),
                             "/boundary_conditions/x_periodic/@bc_type", "missing attribute"),
    "wrong dtype": (_edit("train", _replace("t0_fields/density", lambda v: v.astype(np.int32))),
                    "/t0_fields/density", "wrong dtype int32, expected float32 or float64"),
    "wrong shape": (_edit("test", _replace("t1_fields/momentum", lambda v: v[:, :-1])),
                    "/t1_fields/momentum", "wrong shape (2, 5, 8, 8, 2), expected (2, 6, 8, 8, 2)"),
    "NaN values": (_edit("train", _replace("t0_fields/density", _nan)),
                   "/t0_fields/density", "contains NaN or infinite values (first in trajectory 1)"),
    "empty split": (_empty_split, "data/valid/", "empty split: no *.hdf5 files"),
    "mismatched resolution": (_other_resolution, "random_coarse.hdf5", "mismatched resolution across files: (4, 4) here, (8, 8)"),
    "missing stats.yaml": (lambda root: (root / "stats.yaml").unlink(), "stats.yaml", "missing normalisation statistics"),
    "not an HDF5 file": (_not_hdf5, "data/test/broken.hdf5", "not a readable HDF5 file"),
    "path does not exist": (lambda root: shutil.rmtree(root), "random", "path does not exist"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_input_gives_one_clear_error(case, random_dataset, capsys):
    assert validate_dataset(random_dataset) == []  # the base is valid
    breaker, where, message = MALFORMED[case]
    breaker(random_dataset)
    problems = validate_dataset(random_dataset)
    assert len(problems) == 1, [str(p) for p in problems]
    text = str(problems[0])
    assert where in text and message in text, text

    assert main(["validate-data", str(random_dataset)]) == 1
    err = capsys.readouterr().err
    assert err.count("ERROR ") == 1 and message in err and "Traceback" not in err

    with pytest.raises(DataValidationError, match="1 problem"):
        ensure_valid(random_dataset)


def test_cli_in_a_subprocess_exits_1_without_traceback(random_dataset):
    _edit("train", lambda f: f.__delitem__("t1_fields"))(random_dataset)
    result = subprocess.run(["latentops", "validate-data", str(random_dataset)], cwd=REPO, env=tool_env(),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "/t1_fields: missing group" in result.stderr
    assert "Traceback" not in result.stderr


def test_several_problems_are_reported_together(random_dataset):
    _edit("train", lambda f: f.attrs.__delitem__("grid_type"))(random_dataset)
    _empty_split(random_dataset)
    problems = [str(p) for p in validate_dataset(random_dataset)]
    assert len(problems) == 2
    assert any("/@grid_type: missing attribute" in p for p in problems)
    assert any("empty split" in p for p in problems)


def test_loader_refuses_an_invalid_dataset(random_dataset):
    from pipelines.settings.data import DataConfig

    (random_dataset / "stats.yaml").unlink()
    with pytest.raises(DataValidationError, match="stats.yaml"):
        WellWindows.from_config(configured(DataConfig, "data", root=str(random_dataset), log_fields=()), "train")


def test_stats_command_refuses_a_broken_dataset(random_dataset, capsys):
    _edit("train", _replace("t0_fields/density", _nan))(random_dataset)
    assert main(["stats", str(random_dataset)]) == 2
    assert "contains NaN" in capsys.readouterr().err


def test_boundary_mask_must_match_its_axis(random_dataset):
    def shrink(f: h5py.File) -> None:
        del f["boundary_conditions/y_periodic/mask"]
        f["boundary_conditions/y_periodic"].create_dataset("mask", data=np.zeros(3, dtype=bool))
    _edit("test", shrink)(random_dataset)
    (problem,) = validate_dataset(random_dataset)
    assert "/boundary_conditions/y_periodic/mask: wrong shape (3,), expected (8,)" in str(problem)


def test_a_valid_dataset_is_checked_once_until_a_file_changes(tiny_dataset, tmp_path, monkeypatch):
    """Stages call ensure_valid on every run: a dataset found valid is not read again, but
    any changed file (here one overwritten with NaNs) is checked again and refused."""
    import pipelines.data.validate as validate

    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    monkeypatch.setattr(validate.tempfile, "gettempdir", lambda: str(tmp_path / "stamps"))
    ensure_valid(root)
    calls = []
    monkeypatch.setattr(validate, "validate_dataset", lambda *a: calls.append(a) or [])
    ensure_valid(root)
    assert calls == []
    monkeypatch.undo()
    monkeypatch.setattr(validate.tempfile, "gettempdir", lambda: str(tmp_path / "stamps"))
    path = sorted((root / "data" / "train").glob("*.hdf5"))[0]
    with h5py.File(path, "r+") as f:
        name = next(n for n in f["t0_fields"] if isinstance(f["t0_fields"][n], h5py.Dataset))
        f["t0_fields"][name][...] = np.nan
    with pytest.raises(DataValidationError, match="NaN|infinite|non-finite"):
        ensure_valid(root)
