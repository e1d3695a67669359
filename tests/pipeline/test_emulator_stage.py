"""train_emulator end to end on a real MLflow store (SQLite), a tiny Clawpack dataset, a
tiny registered autoencoder and its real latent cache: tracking, rollout scoring,
registration as a forecaster, a fresh process predicting the same trajectory, and a REST
call to `mlflow models serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import torch
import pytest

from pipelines import layout
from pipelines.settings.data import DataConfig
from pipelines.stages import train_emulator
from pipelines.tracking.names import emulator_name
from pipelines.tracking.registry import load_pyfunc
from tests.conftest import params_with, tool_env
from tests.pipeline.conftest import CACHE, free_port, registered_version, served, tiny_emulator_cfg

def test_each_kind_is_tracked_scored_and_registered(trained, workspace):
    client = mlflow.MlflowClient()
    for kind, result in trained.items():
        summary = result.summary
        name = layout.emulator(kind, None if kind == "pixel_solver" else 4)
        assert summary["model"] == str(layout.model_dir(name))
        assert json.loads(layout.emulator_summary(name).read_text())["run_id"] == summary["run_id"]
        assert layout.emulator_rollout(name).read_text().startswith("lead,vrmse,persistence\n4,")
        exported = layout.registered_dir(name)  # the register stage's export of its version
        assert (exported / "MLmodel").is_file() and (exported / "registered.json").is_file()
        assert not layout.checkpoint_dir("euler_mini", name).exists()

        version = client.get_model_version(emulator_name("euler_mini"), str(registered_version(name)))
        tags = version.tags
        assert tags["kind"] == kind and tags["run_id"] == summary["run_id"] and len(tags["data_hash"]) == 32
        if kind == "pixel_solver":
            assert (tags["latent_channels"], tags["compression_rate"], tags["autoencoder_version"]) == ("none", "1", "none")
        else:
            assert (tags["latent_channels"], tags["compression_rate"], tags["autoencoder_version"]) == ("4", "20", "1")
        run = client.get_run(summary["run_id"])
        assert run.data.tags["stage"] == "train_emulator" and run.data.tags["kind"] == kind
        assert {"train/loss", "val/loss", "val/window_mse", "rollout_valid/vrmse_1-20",
                "rollout_valid/persistence_21-100"} <= set(run.data.metrics)
        leads = [m.step for m in client.get_metric_history(run.info.run_id, "rollout_valid/vrmse")]
        assert leads == list(range(4, 101, 4))  # stride 4, 25 forecast states
        assert {"plots/loss_curves.png", "plots/rollout_vrmse.png"} <= {
            a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        if kind != "pixel_solver":
            assert any(d.dataset.name == "euler_mini-latents-c4" for d in run.inputs.dataset_inputs)


def _inputs(data: DataConfig) -> dict[str, np.ndarray]:
    """Two initial states in physical units, The Well's layout (B, K, H, W, C), and cond."""
    from pipelines.data.windows import trajectories

    windows = trajectories(data, "test")
    items = [windows[i] for i in range(2)]
    states = np.stack([windows.normalizer.denormalize(item["x"][:, :1], dim=0).permute(1, 2, 3, 0).numpy()
                       for item in items])
    return {"states": states, "cond": np.stack([item["cond"].numpy() for item in items])}


@pytest.mark.parametrize("kind", ["solver", "diffusion"])
def test_a_fresh_process_forecasts_the_same_trajectory(trained, workspace, tmp_path, kind):
    inputs = _inputs(workspace)
    params = {"horizon": 6, "members": 2, "seed": 3}
    here = trained[kind].forecaster.predict(inputs, params)  # the training process's forecaster
    assert here.shape == (2, 2, 7, 16, 16, 5) and np.isfinite(here).all()
    np.testing.assert_array_equal(here[:, :, 0], inputs["states"][:, None, 0].repeat(2, axis=1))
    if kind == "diffusion":
        assert not np.allclose(here[:, 0], here[:, 1])  # members differ
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = (
        "import sys, numpy as np\n"
        "from pipelines.tracking.registry import load_pyfunc\n"
        "model = load_pyfunc(sys.argv[1])\n"
        "inputs = dict(np.load(sys.argv[2]))\n"
        "np.save(sys.argv[3], model.predict(inputs, params={'horizon': 6, 'members': 2, 'seed': 3}))\n"
    )
    uri = f"models:/euler_mini-emulator/{registered_version(layout.emulator(kind, 4))}"
    env = {**tool_env(), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    result = subprocess.run([sys.executable, "-c", script, uri, str(tmp_path / "inputs.npz"), str(tmp_path / "there.npy")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "there.npy"), here, rtol=1e-5, atol=1e-5)


def test_the_exported_version_loads_without_the_store(trained, workspace, monkeypatch, tmp_path):
    exported = layout.registered_dir("emulator_solver_c4")
    version = json.loads((exported / "registered.json").read_text())["version"]  # the latest solver_c4 trained here
    expected = load_pyfunc(f"models:/euler_mini-emulator/{version}").predict(_inputs(workspace), {"horizon": 2})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    out = load_pyfunc(str(exported)).predict(_inputs(workspace), params={"horizon": 2})
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def _observation_request(workspace: DataConfig, stride: int) -> dict[str, np.ndarray]:
    """An assimilation request in the pyfunc's layout: test trajectory 0's initial state,
    every 5th sensor of :func:`_fully_observed`, its readings at 3 forecast times, one of
    them missing (NaN)."""
    states, cond, sensors, readings, _ = _fully_observed(workspace, stride)
    keep = slice(None, None, 5)
    readings = readings[:, keep].clone()
    readings[1, 0] = float("nan")
    return {"states": states[:, :1].permute(1, 2, 3, 0)[None].numpy(), "cond": cond[None].numpy(),
            "sensor_channel": sensors.channel[keep].numpy(), "sensor_index": sensors.index[keep].numpy(),
            "noise_std": sensors.noise_std[keep].numpy(), "readings": readings.numpy()}


def test_mlflow_models_serve_answers_a_rest_forecast(trained, workspace, tmp_path):
    """A forecast request, and an assimilation request (the same version, with sensor
    readings among the inputs) answered with the analysis the forecaster computes here."""
    from pipelines.serving.assimilator import answer

    port = free_port()
    version = registered_version("emulator_solver_c4")
    env = {**tool_env(), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    forecaster = trained["solver"].forecaster
    observed = _observation_request(workspace, forecaster.stride)

    def post(inputs: dict[str, np.ndarray], params: dict) -> np.ndarray:
        body = json.dumps({"inputs": {k: v.tolist() for k, v in inputs.items()}, "params": params}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return np.asarray(json.loads(response.read())["predictions"])

    with served(["mlflow", "models", "serve", "-m", f"models:/euler_mini-emulator/{version}", "--env-manager", "local",
                 "--host", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}/ping", tmp_path, env,
                tmp_path / "serve.log"):
        inputs = _inputs(workspace)
        predictions = post(inputs, {"horizon": 4})
        analysis = post(observed, {"members": 3, "seed": 1})
    assert predictions.shape == (2, 1, 5, 16, 16, 5)  # (B, M, K + T, H, W, C)
    expected = forecaster.predict(inputs, {"horizon": 4})
    np.testing.assert_allclose(predictions, expected, rtol=1e-4, atol=1e-5)
    assert analysis.shape == (1, 3, 4, 16, 16, 5) and np.isfinite(analysis).all()  # (1, M, 1 + T, H, W, C)
    here = answer(forecaster, observed, {"method": "ensf", "members": 3, "seed": 1})
    np.testing.assert_allclose(analysis, here, rtol=1e-3, atol=1e-4)
    assert not np.allclose(analysis[0, 0], analysis[0, 1])  # an ensemble, not one state repeated


@pytest.mark.parametrize(("change", "expected"), [
    ({"readings": None}, r"needs all of .* missing \['readings'\]"),
    ({"states": lambda r: np.concatenate([r["states"]] * 2)}, r"takes one initial state, states \(1, 1, H, W, 5\)"),
    ({"cond": lambda r: r["cond"][:, :3]}, r"cond \(1, 13\)"),
    ({"sensor_channel": lambda r: r["sensor_channel"] + 5}, r"sensor_channel: values must be channel indices in \[0, 5\)"),
    ({"sensor_channel": lambda r: r["sensor_channel"].astype(float)}, "sensor_channel must be \\(S,\\) integers"),
    ({"sensor_index": lambda r: r["sensor_index"] + 16}, "sensor_index: sensor 0 at \\[16, 16\\] is outside the 16x16 grid"),
    ({"sensor_index": lambda r: r["sensor_index"][:, :1]}, r"sensor_index must be \(S, 2\) integers"),
    ({"noise_std": lambda r: -r["noise_std"]}, "noise_std must be \\(S,\\) and positive"),
    ({"readings": lambda r: r["readings"][:, :4]}, r"readings must be \(T, S\)"),
    ({"params": {"method": "kalman"}}, "param method: 'kalman' is not a method; valid methods are \\['ensf', 'mmps'\\]"),
    ({"params": {"members": 1}}, "param members: an assimilation needs at least 2 members, got 1"),
    ({"params": {"method": "mmps"}}, "MMPS guides a diffusion emulator; this forecaster is a solver"),
])
def test_malformed_assimilation_requests_name_the_input(trained, workspace, change, expected):
    from pipelines.serving.assimilator import answer
    from pipelines.serving.forecaster import PREDICT_PARAMS

    forecaster = trained["solver"].forecaster
    request = _observation_request(workspace, forecaster.stride)
    params = {**PREDICT_PARAMS, "members": 3, **change.pop("params", {})}
    for key, edit in change.items():
        if edit is None:
            del request[key]
        else:
            request[key] = edit(request)
    with pytest.raises(ValueError, match=expected):
        answer(forecaster, request, params)


def test_bad_requests_are_clear_errors(trained, workspace):
    cfg = tiny_emulator_cfg()
    with pytest.raises(ValueError, match="solver: needs --latent-channels"):
        train_emulator.run(cfg, workspace, CACHE, "solver", None, progress=False)
    with pytest.raises(ValueError, match="pixel_solver: takes no --latent-channels"):
        train_emulator.run(cfg, workspace, CACHE, "pixel_solver", 4, progress=False)
    with pytest.raises(FileNotFoundError, match="data/models/autoencoder_c2: not a trained model"):
        train_emulator.run(cfg, workspace, CACHE, "diffusion", 2, progress=False)
    with pytest.raises(ValueError, match="unknown emulator kind 'gan'"):
        train_emulator.run(cfg, workspace, CACHE, "gan", 4, progress=False)
    inputs = _inputs(workspace)
    with pytest.raises(ValueError, match="cond has 3 entries; this forecaster expects 13"):
        trained["solver"].forecaster.predict({"states": inputs["states"], "cond": inputs["cond"][:, :3]})


def test_forecast_names_a_model_that_is_not_registered(trained, workspace, tmp_path):
    from pipelines.stages import forecast

    with pytest.raises(ValueError, match=r"--model 999: cannot load models:/euler_mini-emulator/999 from the Model "
                                         r"Registry at sqlite:.*not found"):
        forecast.run(workspace, "999", split="valid", horizon=2, output=tmp_path / "f")
    assert not list(tmp_path.iterdir())  # nothing written



def _torch_links(site: Path) -> None:
    """Link this interpreter's torch, with every distribution it requires, into ``site``.

    torch is declared by the registered version and installs from the same wheel either
    way; linking it instead of unpacking a second copy saves about 5 GB of disk (a CUDA
    build), which a CI machine may not have. pip then sees torch as installed and installs
    the rest of ``requirements.txt`` as a user's pip would; nothing undeclared is linked.
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = set(), [Requirement("torch")]
    while todo:
        wanted = todo.pop()
        dist = metadata.distribution(wanted.name)
        key = (dist.metadata["Name"].lower(), frozenset(wanted.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra})
                                                 for extra in {"", *wanted.extras}):
                todo.append(requirement)
        for top in {f.parts[0] for f in dist.files or () if f.parts[0] != ".."}:
            source, target = Path(dist.locate_file(top)), site / top
            if source.exists() and not target.exists():
                target.symlink_to(source)


@pytest.fixture(scope="module", autouse=True)
def clean_environment(tmp_path_factory):
    """A virtual environment with nothing but what a registered forecaster declares,
    installed with pip as a user would (torch linked from this interpreter, see
    ``_torch_links``); built in the background while the other tests of this module run."""
    from pipelines.tracking.registry import requirements

    root = tmp_path_factory.mktemp("clean")
    (root / "requirements.txt").write_text("\n".join(requirements()) + "\n")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    _torch_links(Path(site))
    build = subprocess.Popen([str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "-r",
                              str(root / "requirements.txt")], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    yield root, build
    if build.poll() is None:
        os.killpg(build.pid, signal.SIGKILL)


def test_the_registered_forecaster_runs_in_a_clean_environment(clean_environment, trained, workspace, tmp_path):
    """A registered version declares every package its shipped code imports: a virtual
    environment built from its ``requirements.txt`` alone loads it and forecasts what the
    training process does."""
    root, build = clean_environment
    exported = (Path.cwd() / layout.registered_dir("emulator_diffusion_c4")).resolve()
    assert (exported / "requirements.txt").read_text().split() == (root / "requirements.txt").read_text().split()
    assert sorted(p.name for p in (exported / "code" / "pipelines").iterdir() if p.name != "__pycache__") == \
        ["__init__.py", "serving"]  # the runtime only, not the training stack
    inputs, params = _inputs(workspace), {"horizon": 3, "members": 2, "seed": 5}
    np.savez(tmp_path / "inputs.npz", **inputs)
    expected = trained["diffusion"].forecaster.predict(inputs, params)
    output, _ = build.communicate(timeout=900)
    assert build.returncode == 0, output[-3000:]
    script = ("import sys, numpy as np, mlflow\n"
              "inputs = dict(np.load(sys.argv[2]))\n"
              "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
              f"np.save(sys.argv[3], model.predict(inputs, params={params!r}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(root / "venv" / "bin" / "python"), "-c", script, str(exported),
                           str(tmp_path / "inputs.npz"), str(tmp_path / "out.npy")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-4, atol=1e-5)


def _fully_observed(workspace: DataConfig, stride: int, count: int = 3):
    """Test trajectory 0, sensors at every grid point of every field (noise 1e-3 of each
    field's std) and their noise-free readings at the first ``count`` forecast times:
    ``(states (C, T, H, W), cond (P,), sensors, readings (count, S), times)``."""
    from pipelines.evaluation.scoring import Truth
    from pipelines.serving.assimilator import Sensors

    truth = Truth.load(workspace, "test", 1)
    states = truth.states[0]  # (C, T, H, W)
    c, _, h, w = states.shape
    grid = torch.cartesian_prod(torch.arange(h), torch.arange(w))  # (H W, 2)
    channel = torch.arange(c).repeat_interleave(len(grid))
    std = states.std(dim=(1, 2, 3))
    sensors = Sensors(channel, grid.repeat(c, 1), 1e-3 * std[channel])
    times = list(range(stride, states.shape[1], stride))[:count]
    readings = torch.stack([sensors.read(states[:, t][None])[0] for t in times])  # (T, S), noise-free
    return states, truth.cond[0], sensors, readings, times


def _vrmse(forecaster, latents: torch.Tensor, target: torch.Tensor) -> float:
    from pipelines.evaluation.metrics import vrmse

    return float(vrmse(forecaster.from_space(latents).mean(dim=0).movedim(1, 0), target).mean())


def test_latent_assimilation_of_a_fully_observed_state_reaches_the_reconstruction_error(trained, workspace):
    """Every grid point of every field read at each forecast time with almost no noise: the
    analysis (through the real decoder of a registered forecaster) lands within the
    autoencoder's own reconstruction error of the truth. (This 2-step autoencoder barely
    beats the field mean, so skill over the free forecast is shown elsewhere: on an exact
    decoder in tests/models/test_assimilation.py, on the real pipeline by `assimilate`.)"""
    from models.assimilation import ScoreFilter
    from pipelines.serving.assimilator import LatentAssimilator

    forecaster = trained["solver"].forecaster
    states, cond, sensors, readings, times = _fully_observed(workspace, forecaster.stride)
    latents = LatentAssimilator(forecaster, ScoreFilter(steps=20, eps_beta=1.0), members=4).run(
        states[:, 0], cond, sensors, readings, torch.Generator().manual_seed(0)).latents
    target = states[:, times].movedim(1, 0)  # (T, C, H, W)
    analysis = _vrmse(forecaster, latents, target)
    reconstruction = _vrmse(forecaster, forecaster.to_space(states[None, :, times]), target)
    assert torch.isfinite(latents).all()
    assert analysis <= 1.1 * reconstruction, (analysis, reconstruction)


def test_mmps_pulls_a_registered_diffusion_forecast_to_the_readings(trained, workspace):
    """MMPS through a registered diffusion version's real decoder, fully observed: the
    guided draws land nearer the truth than the same draws unguided, within 5 % of the
    autoencoder's reconstruction error (the floor: this tiny decoder barely beats the field
    mean); a solver is refused by name."""
    from pipelines.serving.assimilator import GuidedForecast

    forecaster = trained["diffusion"].forecaster
    states, cond, sensors, readings, times = _fully_observed(workspace, forecaster.stride)
    latents = GuidedForecast(forecaster, iterations=1, members=3).run(states[:, 0], cond, sensors, readings,
                                                                      torch.Generator().manual_seed(0)).latents
    free = forecaster.forecast(states[None, :, :1], cond[None], len(times), 3, seed=0, decode=False)[0, :, :, 1:]
    target = states[:, times].movedim(1, 0)
    guided, unguided = _vrmse(forecaster, latents, target), _vrmse(forecaster, free, target)
    reconstruction = _vrmse(forecaster, forecaster.to_space(states[None, :, times]), target)
    assert latents.shape == free.shape and torch.isfinite(latents).all()
    assert guided < unguided and guided <= 1.05 * reconstruction, (guided, unguided, reconstruction)
    with pytest.raises(ValueError, match="MMPS guides a diffusion emulator; this forecaster is a solver"):
        GuidedForecast(trained["solver"].forecaster)


def test_an_observation_file_is_assimilated_with_a_registered_version(trained, workspace, tmp_path, capsys):
    """`latentops assimilate`: a synthetic observation file and a registered solver version
    in, the analysis in The Well's layout, a figure and a tracked run with the file's hash
    out; a sensor outside the grid and a pixel emulator are refused by name, nothing written."""
    import hashlib

    import h5py

    from pipelines.cli import main
    from pipelines.stages import observe

    params = params_with(tmp_path / "params.yaml", {"data": {"root": workspace.root},
                                                    "assimilate": {"members": 3, "filter": {"steps": 4}}})
    observations = tmp_path / "obs.h5"
    observe.run(workspace, observations, "test", 0, fraction=0.1, every=4, noise=0.1)
    output = tmp_path / "out" / "analysis"
    solver, pixel = registered_version("emulator_solver_c4"), registered_version("emulator_pixel_solver")
    command = ["--params", str(params), "assimilate", "--observations", str(observations), "--output", str(output)]
    assert main([*command, "--model", str(solver)]) == 0
    assert "cycles" in capsys.readouterr().out
    digest = hashlib.sha256(observations.read_bytes()).hexdigest()
    with h5py.File(output.with_suffix(".h5")) as f:
        steps, (h, w, c) = len(f["times"]), f["truth"].shape[1:]
        assert steps >= 1 and f["analysis_mean"].shape == f["analysis_spread"].shape == f["free_mean"].shape == \
            (steps, h, w, c)
        assert np.isfinite(f["analysis_mean"][()]).all() and f.attrs["observations_sha256"] == digest
    assert output.with_suffix(".png").is_file()
    runs = mlflow.search_runs(experiment_names=["euler_mini/assimilate"], output_format="list")
    assert runs[0].data.tags["observations.sha256"] == digest and runs[0].data.tags["model"].endswith(f"/{solver}")

    bad = tmp_path / "bad.csv"
    bad.write_text("time,field,i,j,value,noise_std\n4,density,99,0,1.0,0.1\n")
    for reference, path, expected in ((str(solver), bad, "bad.csv"), (str(pixel), observations, "latent emulator")):
        target = tmp_path / "refused" / "analysis"
        assert main(["--params", str(params), "assimilate", "--observations", str(path), "--output", str(target),
                     "--model", reference]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and expected in error[0], error
        assert not target.parent.exists()
