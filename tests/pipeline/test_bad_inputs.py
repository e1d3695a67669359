"""Bad input, one clear error each: every case runs the real ``latentops`` command and checks
a non-zero exit, one error that names the offending file, key or value and what would be
valid, no traceback, and nothing written (no file, no MLflow run, no model version).

One table per area; the malformed-dataset cases of ``tests/data/test_validate.py`` and the
observation-file cases of ``tests/data/test_observations.py`` are not repeated here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import mlflow
import numpy as np
import pytest
import yaml

from pipelines.cli import main
from pipelines.settings.data import DataConfig
from pipelines.stages import observe
from tests.conftest import REPO, params_with, tool_env
from tests.data.test_observations import _h5
from tests.data.test_validate import _edit, _first_file, _replace


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path: what "nothing written" compares."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str, code: int = 2) -> str:
    """Run ``latentops argv`` in-process; assert it exits ``code`` with one error (an ``ERROR``
    line of validate-data, or ``latentops <command>: error:`` with at most one listed problem)
    holding every ``expected`` text, and no traceback. Returns the error output."""
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("ERROR ") + err.count(": error: ") == 1 and err.count("\n  - ") <= 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


# --------------------------------------------------------------------------- data


def _cut(fraction: float) -> Callable[[Path], None]:
    """Truncate the first train file to ``fraction`` of its bytes (an interrupted copy)."""
    def apply(root: Path) -> None:
        path = _first_file(root)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return apply


def _overwrite(start: float, stop: float, byte: int) -> Callable[[Path], None]:
    """Overwrite the bytes of the first train file between fractions ``start`` and ``stop`` of
    its length with ``byte`` (a damaged disk or transfer), its size unchanged."""
    def apply(root: Path) -> None:
        path = _first_file(root)
        data = bytearray(path.read_bytes())
        data[int(len(data) * start): int(len(data) * stop)] = bytes([byte]) * (int(len(data) * stop) - int(len(data) * start))
        path.write_bytes(bytes(data))
    return apply


def _stats(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Edit the parsed stats.yaml and write it back."""
    def apply(root: Path) -> None:
        stats = yaml.safe_load((root / "stats.yaml").read_text())
        edit(stats)
        (root / "stats.yaml").write_text(yaml.safe_dump(stats))
    return apply


def _rename_field(f: h5py.File) -> None:
    f["t0_fields"].move("density", "rho")  # the listed name no longer matches the stored one


def _attrs(name: str, **values: object) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f[name].attrs.update(values)
    return edit


def _inf(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values[0, 1, 2, 3, 0] = np.inf
    return values


DATA: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    # case: (how to break the random dataset, command, where the error points, what it says)
    "truncated HDF5": (_cut(0.5), "stats", "data/train/random_0.hdf5", "truncated file"),
    "corrupted data chunk": (_overwrite(0.5, 0.55, 0xAB), "validate-data", "data/train/random_0.hdf5",
                             "corrupted HDF5 file"),
    "corrupted object headers": (_overwrite(0.67, 0.99, 0x00), "stats", "data/train/random_0.hdf5",
                                 "corrupted HDF5 file"),
    "overwritten signature": (_overwrite(0.0, 0.01, 0x00), "validate-data", "data/train/random_0.hdf5",
                              "not a readable HDF5 file"),
    "field stored under another name": (_edit("train", _rename_field), "validate-data", "/t0_fields/density",
                                        "listed in /t0_fields/@field_names but missing"),
    "field missing from stats.yaml": (_stats(lambda s: s["mean"].pop("density")), "validate-data",
                                      "stats.yaml: mean.density", "missing field"),
    "unknown boundary type": (_edit("valid", _attrs("boundary_conditions/x_periodic", bc_type="MIRROR")),
                              "stats", "/boundary_conditions/x_periodic/@bc_type",
                              "must be one of ['WALL', 'OPEN', 'PERIODIC'], got 'MIRROR'"),
    "non-cartesian grid": (_edit("train", _attrs("/", grid_type="polar")), "validate-data", "/@grid_type",
                           "expected 'cartesian', got 'polar'"),
    "spatial dims disagree": (_edit("test", _attrs("/", n_spatial_dims=3)), "validate-data", "/@n_spatial_dims",
                              "is 3 but /dimensions/@spatial_dims lists ['x', 'y']"),
    "dim_varying of a 3-D field": (_edit("train", _attrs("t0_fields/density", dim_varying=[True, True, True])),
                                   "validate-data", "/t0_fields/density/@dim_varying", "has 3 entries, expected 2"),
    "infinite vector component": (_edit("train", _replace("t1_fields/momentum", _inf)), "stats", "/t1_fields/momentum",
                                  "contains NaN or infinite values (first in trajectory 0)"),
    "NaN scalar parameter": (_edit("test", _replace("scalars/gamma", lambda v: np.float64(np.nan))), "validate-data",
                             "/scalars/gamma", "contains NaN or infinite values"),
    "NaN normalisation std": (_stats(lambda s: s["std"].update(density=float("nan"))), "validate-data",
                              "stats.yaml: std.density", "contains NaN or infinite values"),
    "stats.yaml not YAML": (lambda root: (root / "stats.yaml").write_text("mean: [density: 1\n"), "validate-data",
                            "stats.yaml", "not valid YAML"),
    "vector stats of a scalar size": (_stats(lambda s: s["rms"].update(momentum=1.0)), "validate-data",
                                      "stats.yaml: rms.momentum", "has 1 values, expected 2"),
    "another dataset's file": (_edit("train", _attrs("/", dataset_name="euler_mini")), "validate-data",
                               "mismatched dataset name across files",
                               "random here, euler_mini in data/train/random_0.hdf5"),
    "simulation parameter missing": (_edit("valid", lambda f: f.attrs.__delitem__("gamma")), "stats", "/@gamma",
                                     "simulation parameter listed in /@simulation_parameters but missing"),
    "a file instead of a directory": (lambda root: shutil.rmtree(root) or root.write_text("data"), "validate-data",
                                      "random", "not a directory (expected <root>/data/{train,valid,test}/*.hdf5)"),
}


@pytest.mark.parametrize("case", list(DATA))
def test_bad_data(case: str, random_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    breaker, command, where, message = DATA[case]
    breaker(random_dataset)
    before = snapshot(random_dataset.parent)
    refused([command, str(random_dataset)], capsys, where, message, code=1 if command == "validate-data" else 2)
    assert snapshot(random_dataset.parent) == before  # stats.yaml untouched, nothing beside it


# --------------------------------------------------------------------------- params


PARAMS: dict[str, tuple[str | dict | None, list[str], list[str]]] = {
    # case: (params.yaml text, or a mapping: the repository's with these keys changed, None = no
    # file; options and command; what the error says)
    "misspelt section": ("simulat:\n  resolution: 16\n", ["simulate"],
                         ["params.yaml: simulat: unknown section", "did you mean 'simulate'?"]),
    "misspelt key": ("simulate:\n  resolutoin: 16\n", ["simulate"],
                     ["simulate.resolutoin: unknown key; valid keys are", "did you mean 'resolution'?"]),
    "misspelt nested key": ("train_autoencoder:\n  train:\n    stpes: 5\n", ["train-autoencoder", "--latent-channels", "4"],
                            ["train_autoencoder.train.stpes: unknown key", "did you mean 'steps'?"]),
    "text for an integer": ("data:\n  context: one\n", ["observe"], ["data.context: expected an integer, got 'one'"]),
    "number for a mapping": ("simulate:\n  trajectories: 5\n", ["simulate"],
                             ["simulate.trajectories: expected a mapping, got 5"]),
    "text for a boolean": ("data:\n  cache: 'yes'\n", ["observe"], ["data.cache: expected true or false, got 'yes'"]),
    "list for a number": ("simulate:\n  dt: [0.1]\n", ["simulate"], ["simulate.dt: expected a number, got [0.1]"]),
    "zero stride": ({"data": {"stride": 0}}, ["observe"], ["data.stride: must be >= 1, got 0"]),
    "dropout above 1": ({"train_autoencoder": {"model": {"dropout": 1.5}}}, ["train-autoencoder", "--latent-channels", "4"],
                        ["train_autoencoder.model.dropout: must be in [0, 1), got 1.5"]),
    "unknown optimizer": ("train_emulator:\n  train:\n    optim:\n      optimizer: sgd\n",
                          ["train-emulator", "--kind", "solver", "--latent-channels", "4"],
                          ["train_emulator.train.optim.optimizer: must be one of ['psgd', 'adamw', 'muon'], got 'sgd'"]),
    "missing params file": (None, ["simulate"], ["params.yaml: parameters file not found", "--params PATH"]),
    "invalid YAML": ("simulate:\n  resolution: [16\n", ["simulate"], ["params.yaml: not valid YAML"]),
    "binary params file": ("\udcff\udcfe", ["simulate"], ["params.yaml: not valid YAML", "utf-8"]),
    "a list, not sections": ("- simulate\n- data\n", ["simulate"],
                             ["params.yaml: expected a mapping of stage sections, got list"]),
    "a section that is a number": ("data: 3\n", ["observe"], ["params.yaml: data: expected a mapping, got int"]),
    "--set without a value": ("", ["--set", "data.stride", "observe"],
                              ["--set data.stride: expected SECTION.KEY=VALUE"]),
    "--set misspelt section": ("", ["--set", "dta.stride=2", "observe"],
                               ["--set dta.stride=2: dta: unknown section", "did you mean 'data'?"]),
    "--set misspelt key": ("", ["--set", "data.strid=2", "observe"],
                           ["data.strid: unknown key", "did you mean 'stride'?"]),
    "--set text for an integer": ("", ["--set", "data.stride=fast", "observe"],
                                  ["data.stride: expected an integer, got 'fast'"]),
    "--set out of range": ({}, ["--set", "simulate.cfl=2", "simulate"], ["simulate.cfl: must be in (0, 1], got 2.0"]),
    "--set under a number": ("data:\n  stride: 4\n", ["--set", "data.stride.every=2", "observe"],
                             ["params.yaml: data.stride.every: data.stride is 4, not a mapping with keys to set"]),
}


@pytest.mark.parametrize("case", list(PARAMS))
def test_bad_params(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    text, argv, expected = PARAMS[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    if isinstance(text, dict):
        params_with(tmp_path / "params.yaml", text)
    elif text is not None:
        (tmp_path / "params.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
    before = snapshot(tmp_path)
    refused(["--params", "params.yaml", *argv, "--output" if argv[-1] in ("simulate", "observe") else "--quiet",
             *(["out"] if argv[-1] in ("simulate", "observe") else [])], capsys, *expected)
    assert snapshot(tmp_path) == before  # no output, no mlflow.db, no checkpoint


def test_apply_params_with_a_misspelt_key_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("train_emulator:\n  sampler:\n    stesp: 12\n")
    before = snapshot(tmp_path)
    refused(["--params", str(params), "apply-params", str(tuned)], capsys,
            f"{tuned} would make {params} invalid", "train_emulator.sampler.stesp: unknown key", "did you mean 'steps'?")
    assert snapshot(tmp_path) == before


def test_a_bad_params_file_in_a_subprocess_exits_2_without_traceback(tmp_path: Path) -> None:
    params_with(tmp_path / "params.yaml", {"simulate": {"resolution": 4}})
    result = subprocess.run(["latentops", "--params", "params.yaml", "simulate", "--output", "out"], cwd=tmp_path,
                            env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "latentops simulate: error: params.yaml: simulate.resolution: must be >= 8, got 4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# --------------------------------------------------------------------------- observations


def _text(name: str, content: bytes) -> Callable[[Path], str]:
    def make(directory: Path) -> str:
        (directory / name).write_bytes(content)
        return str(directory / name)
    return make


def _damaged(start: float, stop: float) -> Callable[[Path], str]:
    """A valid observation file with the bytes between fractions ``start`` and ``stop`` zeroed,
    or cut there when ``stop`` is 1."""
    def make(directory: Path) -> str:
        path = Path(_h5(directory))
        data = bytearray(path.read_bytes())
        a, b = int(len(data) * start), int(len(data) * stop)
        path.write_bytes(bytes(data[:a]) if stop == 1 else bytes(data[:a] + bytes(b - a) + data[b:]))
        return str(path)
    return make


def _group(key: str) -> Callable[[Path], str]:
    def make(directory: Path) -> str:
        path = _h5(directory, **{key: None})
        with h5py.File(path, "r+") as f:
            f.create_group(key)
        return path
    return make


CSV = "time,field,i,j,value,noise_std\n"

OBSERVATIONS: dict[str, tuple[Callable[[Path], str], str]] = {
    # case: (observation file of the random dataset's test trajectory 0, what the error says)
    "sensor outside the grid": (lambda d: _h5(d, **{"sensors/index": np.array([[0, 0], [8, 2], [7, 7]])}),
                                "sensor 1 at grid index [8, 2] is outside the domain of [8, 8] points"),
    "CSV sensor outside the grid": (_text("far.csv", f"{CSV}0,density,2,12,1.0,0.1\n".encode()),
                                    "sensor 0 at grid index [2, 12] is outside the domain of [8, 8] points"),
    "unknown channel": (lambda d: _h5(d, **{"sensors/field": np.array(["density", "pressure", "density"],
                                                                       dtype=h5py.string_dtype())}),
                        "unknown field(s) ['pressure']; the dataset's fields are ['density', 'momentum_x', 'momentum_y']"),
    "CSV unknown channel": (_text("energy.csv", f"{CSV}0,energy,1,1,1.0,0.1\n".encode()),
                            "unknown field(s) ['energy']"),
    "negative noise": (lambda d: _h5(d, **{"sensors/noise_std": np.array([0.1, -0.2, 0.1])}),
                       "sensor 1: noise_std must be a number > 0, got -0.2"),
    "CSV negative noise": (_text("noise.csv", f"{CSV}0,density,1,1,1.0,-0.1\n".encode()),
                           "sensor 0: noise_std must be a number > 0, got -0.1"),
    "CSV sensor with two noise levels": (_text("two.csv", f"{CSV}0,density,1,1,1.0,0.1\n2,density,1,1,1.2,0.2\n".encode()),
                                         "line 3: sensor ('density', 1, 1) has two noise_std values, 0.1 and 0.2"),
    "readings of a fourth sensor": (lambda d: _h5(d, values=np.ones((2, 4))),
                                    "values has shape (2, 4); expected (times, sensors) = (2, 3)"),
    "3-D sensor indices": (lambda d: _h5(d, **{"sensors/index": np.zeros((3, 3), dtype=int)}),
                           "sensors/index has shape (3, 3); expected (sensors, 2) = (3, 2)"),
    "missing file": (lambda d: str(d / "nowhere.h5"), "no such observation file"),
    "truncated HDF5": (_damaged(0.5, 1), "not a readable HDF5 file, truncated or corrupted"),
    "corrupted HDF5": (_damaged(0.67, 0.99), "not a readable HDF5 file, truncated or corrupted"),
    "fractional times": (lambda d: _h5(d, times=np.array([0.5, 2.5])), "times: expected integers, got dtype float64"),
    "text readings": (lambda d: _h5(d, values=np.array([["1.0"] * 3] * 2, dtype=h5py.string_dtype())),
                      "values: expected numbers, got dtype object"),
    "readings as a group": (_group("values"), "values: expected a dataset of numbers, found a group"),
    "binary CSV": (_text("binary.csv", b"\xff\xfe\x00\x01"), "not a UTF-8 text CSV file"),
    "CSV with only the header": (_text("empty.csv", CSV.encode()), "no readings (only the header)"),
}


@pytest.mark.parametrize("case", list(OBSERVATIONS))
def test_bad_observations(case: str, random_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """``latentops assimilate`` reads the observation file before it loads a model: the file's
    error comes first, and no analysis, figure or MLflow run is made."""
    make, expected = OBSERVATIONS[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    params_with(work / "params.yaml", {"data": {"root": str(random_dataset), "log_fields": ["density"]}})
    path = make(work)
    before = snapshot(work)
    refused(["assimilate", "--model", "1", "--observations", path, "--output", "analysis"], capsys, path, expected)
    assert snapshot(work) == before


@pytest.mark.parametrize(("options", "expected"), [
    (["--noise", "-1"], "need every >= 1 and noise > 0, got every=4, noise=-1.0"),
    (["--trajectory", "9"], "--trajectory 9: the test split has trajectories 0..1"),
])
def test_bad_observe_options_write_nothing(options: list[str], expected: str, random_dataset: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    params = params_with(tmp_path / "params.yaml", {"data": {"root": str(random_dataset), "log_fields": ["density"]}})
    refused(["--params", str(params), "observe", *options, "--output", str(tmp_path / "obs.h5")], capsys, expected)
    assert not (tmp_path / "obs.h5").exists()


# --------------------------------------------------------------------------- registry


EMULATOR = "euler_mini-emulator"


@pytest.fixture
def store(trained: dict, workspace: DataConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> mlflow.MlflowClient:
    """A copy of the stage tests' MLflow store (its artifacts stay where they are) in
    ``tmp_path``, the working directory, with a params.yaml on the tiny dataset and an
    observation file of its test trajectory 0 (``obs.h5``): the registry mistakes made here
    leave the shared store alone."""
    shared = Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    shutil.copy(shared, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params_with(tmp_path / "params.yaml", {"data": {"root": workspace.root}})
    observe.run(workspace, tmp_path / "obs.h5", fraction=0.1)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _copy(client: mlflow.MlflowClient, trained: dict, kind: str, name: str = EMULATOR) -> tuple[str, Path]:
    """A new version of ``name`` holding a copy (under the working directory) of the files of
    the ``kind`` emulator's version: (its version number, the copy)."""
    copy = Path(f"copy_{kind}")
    (registered,) = client.search_model_versions(f"name='{EMULATOR}' and tags.run_id='{trained[kind].summary.run_id}'")
    version = registered.version  # what the register stage made of that training run
    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{EMULATOR}/{version}",
                                        dst_path=str(copy), tracking_uri=client._tracking_client.tracking_uri)
    if name not in {m.name for m in client.search_registered_models()}:
        client.create_registered_model(name)
    return str(client.create_model_version(name, str(copy.resolve())).version), copy


def _deleted_alias(client: mlflow.MlflowClient, trained: dict) -> str:
    version, _ = _copy(client, trained, "solver")
    client.set_registered_model_alias(EMULATOR, "gone", version)
    client.delete_model_version(EMULATOR, version)
    return "gone"


def _other_dataset(client: mlflow.MlflowClient, trained: dict) -> str:
    version, _ = _copy(client, trained, "solver", "other_set-emulator")
    return f"models:/other_set-emulator/{version}"


def _removed_files(client: mlflow.MlflowClient, trained: dict) -> str:
    version, copy = _copy(client, trained, "solver")
    shutil.rmtree(copy)
    return version


def _modified_files(client: mlflow.MlflowClient, trained: dict) -> str:
    version, copy = _copy(client, trained, "solver")
    emulator = copy / "artifacts" / "emulator.safetensors"
    data = bytearray(emulator.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    emulator.write_bytes(bytes(data))
    return version


def _exported(name: str) -> Callable[[mlflow.MlflowClient, dict], str]:
    """A directory exported (as the training stages do) from version 1 of ``name``."""
    def make(client: mlflow.MlflowClient, trained: dict) -> str:
        Path("exported").mkdir()
        Path("exported", "registered.json").write_text(json.dumps({"name": name, "version": 1, "run_id": ""}))
        return "exported"
    return make


def _given(reference: str) -> Callable[[mlflow.MlflowClient, dict], str]:
    return lambda client, trained: reference


COMMANDS = {"forecast": ["--horizon", "2", "--output", "out"],
            "assimilate": ["--observations", "obs.h5", "--output", "out"]}

REGISTRY: dict[str, tuple[Callable[[mlflow.MlflowClient, dict], str], str, list[str]]] = {
    # case: (what --model names, set up in the copied store; command; what the error says)
    "alias of a deleted version": (_deleted_alias, "forecast",
                                   ["--model gone: cannot load models:/euler_mini-emulator@gone",
                                    "alias gone not found", "euler_mini-emulator has versions [1, 2, 3] and aliases []"]),
    "another dataset's version": (_other_dataset, "assimilate",
                                  ["models:/other_set-emulator/1 is a version of other_set-emulator",
                                   "needs a version of euler_mini-emulator or euler_mini-assimilator"]),
    "a version whose files were removed": (_removed_files, "forecast",
                                           ["--model 4: cannot load models:/euler_mini-emulator/4",
                                            "euler_mini-emulator version 4 is registered, but its files at",
                                            "copy_solver are missing"]),
    "a version whose files were modified": (_modified_files, "forecast",
                                            ["--model 4: refusing to load models:/euler_mini-emulator/4",
                                             "emulator.safetensors (artifact 'emulator') was modified after it "
                                             "was logged; "
                                             "expected sha256"]),
    "unknown version": (_given("99"), "assimilate", ["--model 99: cannot load models:/euler_mini-emulator/99",
                                                      "has versions [1, 2, 3]"]),
    "no production version yet": (_given("production"), "forecast",
                                  ["--model production: cannot load models:/euler_mini-emulator@production",
                                   "aliases []", "no version holds @production: `latentops promote` refused every "
                                                 "candidate so far; metrics/promotion.json says why"]),
    "unknown alias": (_given("staging"), "forecast",
                      ["--model staging: cannot load models:/euler_mini-emulator@staging", "alias staging not found"]),
    "an autoencoder for an emulator": (_given("models:/euler_mini-autoencoder/1"), "forecast",
                                       ["models:/euler_mini-autoencoder/1 is a version of euler_mini-autoencoder",
                                        "needs a version of euler_mini-emulator"]),
    "an assimilator for a forecast": (_given("models:/euler_mini-assimilator@production"), "forecast",
                                      ["is a version of euler_mini-assimilator", "needs a version of euler_mini-emulator"]),
    "a URI without a version": (_given(f"models:/{EMULATOR}"), "forecast",
                                [f"--model models:/{EMULATOR}: cannot load models:/{EMULATOR} from the Model Registry",
                 "euler_mini-emulator has versions [1, 2, 3] and aliases []; give one of them"]),
    "a directory that is no model": (_given("."), "forecast", ["--model .: cannot load .", "MLmodel"]),
    "another dataset's exported version": (_exported("other_set-emulator"), "forecast",
                                           ["exported is a version of other_set-emulator",
                                            "needs a version of euler_mini-emulator"]),
}


@pytest.mark.parametrize("case", list(REGISTRY))
def test_bad_model_references(case: str, store: mlflow.MlflowClient, trained: dict,
                              capsys: pytest.CaptureFixture[str]) -> None:
    setup, command, expected = REGISTRY[case]
    reference = setup(store, trained)
    before = (snapshot(Path.cwd()), _runs(store), _versions(store))
    refused([command, "--model", reference, *COMMANDS[command]], capsys, *expected)
    after = (snapshot(Path.cwd()), _runs(store), _versions(store))
    assert after[1:] == before[1:] and not Path("out.h5").exists() and not Path("out.png").exists()
    # (MLflow notes the registered name in a local version's own directory when it loads it)
    assert {k: v for k, v in after[0].items() if not k.endswith(("mlflow.db", "/registered_model_meta"))} == \
        {k: v for k, v in before[0].items() if not k.endswith(("mlflow.db", "/registered_model_meta"))}


def test_an_untrained_autoencoder_caches_nothing(store: mlflow.MlflowClient,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    refused(["cache-latents", "--latent-channels", "4"], capsys,
            "data/models/autoencoder_c4: not a trained model (no model.json)", "dvc repro train_autoencoder")
    assert not Path("data").exists()


def _runs(client: mlflow.MlflowClient) -> int:
    """Runs in every experiment of the store."""
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


def _versions(client: mlflow.MlflowClient) -> list[tuple[str, str]]:
    """Every registered (name, version) of the store."""
    return sorted((v.name, v.version) for v in client.search_model_versions())
