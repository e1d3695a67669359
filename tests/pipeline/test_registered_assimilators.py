"""Assimilators as registered models on the tiny latent workspace: the register stage
bundles an exported emulator, a filter, a sensor layout and (encoder route) an observation
encoder, with their lineage; evaluate scores each new version once with the twin experiment;
promote gates them with their own production alias and refuses a worse one, saying why; the
alias loads in a fresh process and assimilates a file written by `latentops observe`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipelines import layout
from pipelines.settings.assimilation import AssimilatorConfig, FilterConfig, RegisterAssimilatorConfig
from pipelines.settings.evaluation import EvaluateConfig, GateConfig, PromoteConfig
from pipelines.settings.obs_encoder import TrainObsEncoderConfig
from pipelines.settings.sensors import SensorLayoutConfig, SensorsConfig
from pipelines.stages import evaluate, promote, register, train_obs_encoder
from pipelines.tracking import registry
from tests.conftest import VENV_BIN, configured, params_with, tool_env
from tests.pipeline.conftest import CACHE, inside, tiny_train

NAME = "euler_mini-assimilator"
SENSORS = SensorsConfig({"few": configured(SensorLayoutConfig, "sensors.layouts.sparse", fraction=0.05,
                                           fields=("density", "pressure"), every=4)})
FILTER = configured(FilterConfig, "assimilate.filter", steps=2)
ENSF = "register_assimilator.assimilators.ensf_solver"  # the decoder route's settings
ASSIMILATORS = RegisterAssimilatorConfig({
    "ensf": configured(AssimilatorConfig, ENSF, kind="solver", latent_channels=4, layout="few", members=3,
                       filter=FILTER),
    "encoded": configured(AssimilatorConfig, ENSF, kind="solver", latent_channels=4, layout="few", encoder=True,
                          members=3, filter=dataclasses.replace(FILTER, min_spread=0.6)),
    # members scattered over the whole latent range at every analysis: a far worse ensemble mean
    "wild": configured(AssimilatorConfig, ENSF, kind="solver", latent_channels=4, layout="few", members=3,
                       filter=dataclasses.replace(FILTER, min_spread=50.0))})
EVAL = configured(EvaluateConfig, "evaluate", trajectories=2, members=3, lead_windows=((1, 20), (21, 100)), batch=2,
                  assimilation_trajectories=2)
GATE = configured(PromoteConfig, "promote", assimilators=configured(GateConfig, "promote.assimilators",
                                                                    metric="vrmse_21-100", spread_skill=(0, 100)))


@pytest.fixture(scope="module")
def registered(latent_workspace, trained):
    """The encoder of layout ``few`` trained, then ``ensf`` and ``encoded`` registered."""
    root, data = latent_workspace
    encoder_cfg = configured(TrainObsEncoderConfig, "train_obs_encoder", length=5, train=tiny_train(
        steps=4, batch_size=4, val_every=2, val_batches=1, checkpoint_every=2, log_every=1))
    with inside(root):
        train_obs_encoder.run(encoder_cfg, SENSORS, data, CACHE, "few", 4, progress=False)
        register.register_models(data)
        return {name: register.register_assimilator(ASSIMILATORS, name, SENSORS, data) for name in ("ensf", "encoded")}


def test_a_version_bundles_its_parts_with_their_lineage(registered, workspace):
    ensf, encoded = registered["ensf"], registered["encoded"]
    assert ensf["registered"] and encoded["registered"] and ensf["version"] != encoded["version"]
    emulator = json.loads((layout.registered_dir(layout.emulator("solver", 4)) / registry.REGISTERED).read_text())
    client = registry.configure()
    tags = client.get_model_version(NAME, str(encoded["version"])).tags
    emulator_tags = client.get_model_version(emulator["name"], str(emulator["version"])).tags
    assert tags["emulator"] == f"models:/euler_mini-emulator/{emulator['version']}" and tags["route"] == "encoder"
    assert tags["autoencoder_version"] == emulator_tags["autoencoder_version"]
    assert tags["data_hash"] == emulator_tags["data_hash"] != ""
    assert json.loads(tags["layout_settings"])["fields"] == ["density", "pressure"] and tags["layout"] == "few"
    encoder = registry.load_exported_obs_encoder(layout.registered_dir(layout.obs_encoder("few", 4)))
    assert tags["obs_encoder_version"] == str(encoder.version) and tags["parameters"] == "gamma"
    assert "obs_encoder_version" not in client.get_model_version(NAME, str(ensf["version"])).tags
    assert (layout.registered_dir(layout.assimilator("encoded")) / registry.REGISTERED).is_file()

    again = register.register_assimilator(ASSIMILATORS, "ensf", SENSORS, workspace)  # nothing changed: not registered again
    assert not again["registered"] and again["version"] == ensf["version"]
    with pytest.raises(ValueError, match=r"--name: no assimilator 'dense'; .* has \['encoded', 'ensf', 'wild'\]"):
        register.register_assimilator(ASSIMILATORS, "dense", SENSORS, workspace)


def test_evaluated_once_promoted_and_a_worse_one_refused(registered, workspace, tmp_path):
    first = evaluate.run(EVAL, workspace, progress=False)
    labels = {f"assimilator_c4_v{registered[n]['version']}" for n in ("ensf", "encoded")}
    assert labels <= set(first["evaluated"]) | set(first["skipped"]) and labels <= {r.label for r in first["results"]}
    again = evaluate.run(EVAL, workspace, progress=False)
    assert again["evaluated"] == []  # a second run scores nothing
    results = {r.label: r for r in again["results"]}
    encoded = results[f"assimilator_c4_v{registered['encoded']['version']}"].card
    ensf = results[f"assimilator_c4_v{registered['ensf']['version']}"].card
    for card in (encoded, ensf):
        assert {"vrmse_1-20", "vrmse_21-100", "crps_21-100", "spread_skill_21-100", "seconds_per_cycle"} <= set(card.estimates)
        assert len(card.trajectories["vrmse_21-100"]) == EVAL.assimilation_trajectories
    assert "gamma_error" in encoded.estimates and "gamma_error" not in ensf.estimates
    assert encoded.get("gamma_error").low <= encoded.value("gamma_error") <= encoded.get("gamma_error").high

    decision = promote.run(GATE, EVAL, workspace)["assimilator"]
    assert decision.promoted and "there is no production version yet" in decision.reason
    client = registry.configure()
    production = int(client.get_model_version_by_alias(NAME, "production").version)
    assert production == decision.candidate.version
    assert json.loads(Path(layout.PROMOTION).read_text())["assimilator"]["candidate"]["version"] == production

    wild = register.register_assimilator(ASSIMILATORS, "wild", SENSORS, workspace)
    assert evaluate.run(EVAL, workspace, progress=False)["evaluated"] == [f"assimilator_c4_v{wild['version']}"]
    refused = promote.run(GATE, EVAL, workspace)["assimilator"]
    assert not refused.promoted and "already production" in refused.reason
    assert "is not the lowest of the versions that pass the gate" in refused.rejected[f"v{wild['version']}"]
    assert int(client.get_model_version_by_alias(NAME, "production").version) == production

    # The alias loads in a fresh process and assimilates a file written by `latentops observe`.
    params = params_with(tmp_path / "params.yaml", {"data": {"root": workspace.root}, "assimilate": {"members": 3}})
    env = {**tool_env(), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    latentops = str(Path(VENV_BIN) / "latentops")
    observations = tmp_path / "observations.h5"
    for command in (["observe", "--fraction", "0.05", "--fields", "density", "pressure", "--output",
                     str(observations)],
                    ["assimilate", "--model", f"models:/{NAME}@production", "--observations", str(observations),
                     "--output", str(tmp_path / "analysis")]):
        result = subprocess.run([latentops, "--params", str(params), *command], cwd=tmp_path, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    assert f"assimilate: models:/{NAME}@production" in result.stdout
    with h5py.File(tmp_path / "analysis.h5") as f:
        assert np.isfinite(f["analysis_mean"][()]).all() and f.attrs["model"] == f"models:/{NAME}@production"
        assert f.attrs["members"] == 3


@pytest.fixture(scope="module")
def decent(tmp_path_factory, tiny_dataset):
    """A workspace of its own, with an autoencoder good enough for sensors to help (c = 16,
    widths 16 and 32: validation VRMSE about 0.6, where the shared tiny one's is above 1), a
    solver on its latents and the decoder-route assimilator ``ensf`` of it."""
    import dataclasses

    from pipelines.settings.data import DataConfig
    from pipelines.stages import cache_latents, train_autoencoder, train_emulator
    from tests.pipeline.conftest import tiny_cfg, tiny_emulator_cfg

    root, data = tmp_path_factory.mktemp("decent"), configured(DataConfig, "data", root=str(tiny_dataset))
    base = tiny_cfg(steps=300)
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, widths=(16, 32)), train=dataclasses.replace(
        base.train, val_every=150, checkpoint_every=300, optim=dataclasses.replace(base.train.optim, lr=3e-3)))
    assimilators = RegisterAssimilatorConfig({"ensf": configured(AssimilatorConfig, ENSF, kind="solver", latent_channels=16,
                                                                 layout="few", members=3,
                                                                 filter=dataclasses.replace(FILTER, steps=8))})
    with inside(root):
        train_autoencoder.run(cfg, data, latent_channels=16, progress=False)
        cache_latents.run(CACHE, data, 16, progress=False)
        train_emulator.run(tiny_emulator_cfg(steps=200), data, CACHE, "solver", 16, progress=False)
        register.register_models(data)
        register.register_assimilator(assimilators, "ensf", SENSORS, data)
    return root, data


def test_skill_improves_with_sensor_density(decent, monkeypatch):
    """The sweep on tiny settings, fixed seed: for every noise level, the analysis VRMSE does
    not grow as the (nested) sensor layouts get denser, and at every density it grows with the
    noise; the grid is written, plotted and tracked. An encoder-route assimilator is refused."""
    from pipelines.settings.assimilation import SweepObservationsConfig
    from pipelines.stages import sweep_observations

    root, data = decent
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    cfg = configured(SweepObservationsConfig, "sweep_observations", assimilator="ensf", fractions=(0.02, 0.2, 0.8),
                     noises=(0.05, 1.0), trajectories=2, lead_windows=((1, 20), (21, 40)))
    outcome = sweep_observations.run(cfg, data, progress=False)
    for window in ("1-20", "21-40"):
        vrmse = np.array(outcome["vrmse"][window])  # (fractions, noises)
        assert vrmse.shape == (3, 2) and np.isfinite(vrmse).all()
        assert (np.diff(vrmse, axis=0) < 0).all(), (window, vrmse)  # denser: better, at every noise level
        assert (vrmse[:, 0] < vrmse[:, 1]).all(), (window, vrmse)  # noisier: worse, at every density

    summary = json.loads(Path(layout.SWEEP).read_text())
    assert [c["sensors"] for c in summary["cells"]] == [5, 5, 51, 51, 205, 205]  # of 16 x 16 points
    assert all(c["vrmse_21-40"][1] <= c["vrmse_21-40"][0] <= c["vrmse_21-40"][2] for c in summary["cells"])
    assert Path(layout.SWEEP_CURVES, "noise_0.05.csv").read_text().startswith("fraction,vrmse_1-20,vrmse_21-40\n0.02,")
    assert Path(layout.SWEEP_FIGURE).stat().st_size > 10_000
    client = registry.configure()
    run = client.search_runs([client.get_experiment_by_name("euler_mini/sweep_observations").experiment_id])[0]
    assert run.data.tags["model"] == outcome["model"] and "vrmse_21-40/f0.8_n0.05" in run.data.metrics


def test_the_sweep_refuses_the_encoder_route(registered, workspace):
    from pipelines.settings.assimilation import SweepObservationsConfig
    from pipelines.stages import sweep_observations

    with pytest.raises(ValueError, match="assimilates through its observation encoder.*encoder: false"):
        sweep_observations.run(configured(SweepObservationsConfig, "sweep_observations", assimilator="encoded", trajectories=1), workspace, progress=False)
