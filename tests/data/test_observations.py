"""Observation files: synthetic observations of a real trajectory, both formats, and one
clear error per malformed file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pipelines.cli import main
from pipelines.data.observations import ObservationError, Observations, read
from pipelines.data.windows import trajectories
from pipelines.settings.data import DataConfig
from pipelines.stages import observe
from tests.conftest import configured, params_with


@pytest.fixture
def data(random_dataset) -> DataConfig:
    return configured(DataConfig, "data", root=str(random_dataset), log_fields=("density",))


def _truth(data: DataConfig, trajectory: int = 0) -> np.ndarray:
    windows = trajectories(data, "test")
    return windows.normalizer.denormalize(windows[trajectory]["x"], dim=0).movedim(1, 0).numpy()  # (T, C, H, W)


def test_observe_reads_the_trajectory_at_the_sensors_with_the_asked_noise(data, tmp_path):
    output = tmp_path / "obs.h5"
    made = observe.run(data, output, "test", 1, sensors=5, fields=["density", "momentum_x"], every=2, noise=0.05,
                       seed=3)
    found = read(output)
    np.testing.assert_array_equal(found.values, made.values)
    assert found.fields == ("density",) * 5 + ("momentum_x",) * 5 and found.dataset == "random"
    assert found.times.tolist() == [0, 2, 4] and len({tuple(p) for p in found.index.tolist()}) == 5
    truth = _truth(data, 1)
    channels = trajectories(data, "test").channels
    expected = truth[found.times][:, found.channel_index(channels), found.index[:, 0], found.index[:, 1]]  # (T, S)
    error = (found.values - expected) / found.noise_std
    assert abs(error.mean()) < 1 and 0.5 < error.std() < 1.5  # noise of the stated size, not more, not less
    for k, field in enumerate(("density", "momentum_x")):
        assert found.noise_std[5 * k] == pytest.approx(0.05 * truth[:, channels.index(field)].std(), rel=1e-6)
    np.testing.assert_array_equal(observe.validate(output, data, "test", 1).values, found.values)


def test_the_cli_observes_and_validates(data, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params_with(params, {"data": {"root": data.root, "log_fields": ["density"]}})
    output = tmp_path / "obs.h5"
    assert main(["--params", str(params), "observe", "--fraction", "0.1", "--every", "3", "--output", str(output)]) == 0
    assert main(["--params", str(params), "validate-observations", str(output)]) == 0
    out = capsys.readouterr().out
    assert "6 sensor position(s)" in out and "OK" in out  # round(0.1 * 64)


def test_a_csv_of_a_few_sensors_reads_with_missing_readings_as_nan(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_text("time,field,i,j,value,noise_std\n0,density,1,2,1.5,0.1\n0,momentum_x,3,3,0.2,0.05\n"
                    "4,density,1,2,1.4,0.1\n4,momentum_x,3,3,,0.05\n")
    found = read(path)
    assert found.times.tolist() == [0, 4] and found.fields == ("density", "momentum_x")
    assert found.index.tolist() == [[1, 2], [3, 3]]
    assert found.values[0].tolist() == [1.5, 0.2] and found.values[1, 0] == 1.4 and np.isnan(found.values[1, 1])


def _h5(tmp_path, **change) -> str:
    good = {"times": np.array([0, 2]), "values": np.ones((2, 3)), "sensors/index": np.array([[0, 0], [1, 2], [7, 7]]),
            "sensors/field": np.array(["density", "density", "momentum_x"], dtype=h5py.string_dtype()),
            "sensors/noise_std": np.full(3, 0.1)}
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.attrs["dataset"] = change.pop("dataset", "random")
        for key, value in {**good, **change}.items():
            if value is not None:
                f[key] = value
    return str(path)


BAD = {
    "outside": (lambda p: _h5(p, **{"sensors/index": np.array([[0, 0], [1, 2], [8, 7]])}), "outside the domain"),
    "negative index": (lambda p: _h5(p, **{"sensors/index": np.array([[0, -1], [1, 2], [7, 7]])}), "outside the domain"),
    "unknown field": (lambda p: _h5(p, **{"sensors/field": np.array(["density", "vorticity", "density"],
                                                                    dtype=h5py.string_dtype())}), "unknown field"),
    "late time": (lambda p: _h5(p, times=np.array([0, 6])), "outside the trajectory"),
    "shape": (lambda p: _h5(p, values=np.ones((2, 4))), "values has shape"),
    "unordered times": (lambda p: _h5(p, times=np.array([2, 0])), "strictly increasing"),
    "zero noise": (lambda p: _h5(p, **{"sensors/noise_std": np.array([0.1, 0.0, 0.1])}), "noise_std must be"),
    "missing key": (lambda p: _h5(p, **{"sensors/field": None}), "missing dataset"),
    "other dataset": (lambda p: _h5(p, dataset="euler_mini"), "observes dataset 'euler_mini'"),
    "infinite": (lambda p: _h5(p, values=np.array([[1.0, np.inf, 1.0], [1.0, 1.0, 1.0]])), "infinite reading"),
    "not hdf5": (lambda p: (p / "junk.h5").write_bytes(b"not an hdf5 file") and str(p / "junk.h5"), "not a readable HDF5"),
    "csv header": (lambda p: (p / "a.csv").write_text("t,f\n0,density\n") and str(p / "a.csv"), "header must be"),
    "csv number": (lambda p: (p / "b.csv").write_text("time,field,i,j,value,noise_std\nzero,density,0,0,1,0.1\n")
                   and str(p / "b.csv"), "line 2"),
    "suffix": (lambda p: (p / "c.txt").write_text("x") and str(p / "c.txt"), "unknown observation format"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_malformed_observation_file_gives_one_clear_error(data, tmp_path, capsys, case):
    make, expected = BAD[case]
    path = make(tmp_path)
    params = tmp_path / "params.yaml"
    params_with(params, {"data": {"root": data.root, "log_fields": ["density"]}})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["--params", str(params), "validate-observations", path]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and expected in error[0] and path in error[0], error
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(("settings", "expected"), [
    ({"sensors": 0}, "between 1 and 64"), ({"sensors": 65}, "between 1 and 64"), ({"every": 0}, "every >= 1"),
    ({"noise": 0.0}, "noise > 0"), ({"fields": ["vorticity"]}, "unknown field"), ({"trajectory": 5}, "--trajectory 5"),
    ({"fraction": 0.0}, "sensor fraction must be in (0, 1]")])
def test_bad_observe_settings_write_nothing(data, tmp_path, settings, expected):
    output = tmp_path / "out" / "obs.h5"
    with pytest.raises(ObservationError, match=expected.replace("(", r"\(").replace("]", r"\]")):
        observe.run(data, output, **settings)
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_observations_refuse_inconsistent_arrays():
    with pytest.raises(ObservationError, match="needs at least one time"):
        Observations(np.array([], dtype=int), np.ones((0, 0)), np.ones((0, 2), dtype=int), (), np.ones(0))
