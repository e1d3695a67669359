"""Stage train_obs_encoder on the tiny latent workspace: an observation encoder trained with
the shared loop, calibrated and saved; the register stage registers it with its lineage and
exports it; the latent EnSF's
encoder route with it assimilates without decoding and estimates an unknown gamma."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

from pipelines import layout
from pipelines.settings.obs_encoder import TrainObsEncoderConfig
from pipelines.settings.sensors import SensorLayoutConfig, SensorsConfig
from pipelines.stages import register, train_obs_encoder
from pipelines.tracking import registry
from tests.conftest import configured
from tests.pipeline.conftest import CACHE, registered_version, tiny_train

SENSORS = SensorsConfig({"few": configured(SensorLayoutConfig, "sensors.layouts.sparse", fraction=0.05,
                                           fields=("density", "pressure"), every=4)})


def _cfg(steps: int = 4) -> TrainObsEncoderConfig:
    return configured(TrainObsEncoderConfig, "train_obs_encoder", length=5,
                      train=tiny_train(steps=steps, batch_size=4, val_every=2, val_batches=1, checkpoint_every=2,
                                       log_every=1))


@pytest.fixture(scope="module")
def encoder(latent_workspace):
    from tests.pipeline.conftest import inside

    root, data = latent_workspace
    with inside(root):
        summary = train_obs_encoder.run(_cfg(), SENSORS, data, CACHE, "few", 4, progress=False)
        register.register_models(data)
    return summary


def test_the_encoder_is_registered_with_its_layout_and_lineage(encoder, workspace):
    assert encoder.finished and encoder["model"] == str(layout.model_dir(layout.obs_encoder("few", 4)))
    assert encoder["latent_rmse"] > 0 and encoder["parameter_mae"] >= 0
    client = registry.configure()
    registered = registered_version(layout.obs_encoder("few", 4))
    version = client.get_model_version("euler_mini-obs-encoder", str(registered))
    assert version.run_id == encoder["run_id"]  # registered into its training run
    autoencoder = registered_version(layout.autoencoder(4))
    assert version.tags["layout"] == "few" and version.tags["autoencoder_version"] == str(autoencoder)
    assert version.tags["data_hash"] and version.tags["parameters"] == "gamma"
    assert json.loads(version.tags["layout_settings"])["fields"] == ["density", "pressure"]
    loaded = registry.load_exported_obs_encoder(layout.registered_dir(layout.obs_encoder("few", 4)))
    assert loaded.parameters == ("gamma",) and loaded.version == registered and loaded.autoencoder_version == autoencoder
    points = len(loaded.layout["points"])  # 5 % of the 16^2 grid, two fields each
    assert points == round(0.05 * 16 * 16) and loaded.model.sensors == 2 * points
    whitening = loaded.model.latent_whitening  # calibrated: not the identity it starts as
    assert torch.isfinite(whitening).all() and not torch.equal(whitening, torch.eye(len(whitening)))
    run = mlflow.get_run(version.run_id)
    assert run.data.metrics["calibration/latent_rmse"] == pytest.approx(encoder["latent_rmse"], abs=1e-5)
    assert layout.obs_encoder_curve(layout.obs_encoder("few", 4)).read_text().startswith("step,latent_mse")


def test_an_unknown_layout_is_named(workspace):
    from pipelines.settings import ConfigError

    with pytest.raises(ConfigError, match=r"--layout: no sensor layout 'dense'; sensors.layouts has \['few'\]"):
        train_obs_encoder.run(_cfg(), SENSORS, workspace, CACHE, "dense", 4, progress=False)


def test_the_encoder_route_estimates_gamma_without_decoding(encoder, trained, workspace):
    """The encoder route on a registered solver: gamma unknown (NaN), estimated with the
    state; the decoder is never called; without an encoder an unknown gamma is refused."""
    from pipelines.data.observations import layout_of
    from pipelines.evaluation.scoring import Truth
    from pipelines.serving.assimilator import LatentAssimilator
    from pipelines.evaluation.twin import readings
    from models.assimilation import ScoreFilter

    forecaster = trained["solver"].forecaster
    loaded = registry.load_exported_obs_encoder(layout.registered_dir(layout.obs_encoder("few", 4)))
    truth = Truth.load(workspace, "test", 1)
    sensors_layout = layout_of("few", SENSORS.layouts["few"], truth.channels, tuple(truth.states.shape[-2:]))
    observations = sensors_layout.observe(truth.states[0].movedim(1, 0).numpy(), truth.channels, 0)
    sensors, values = readings(observations, truth.channels, forecaster.stride, 6)
    cond = truth.cond[0].clone()
    gamma = forecaster.condition_names.index("gamma")
    cond[gamma] = float("nan")
    assimilator = LatentAssimilator(forecaster, ScoreFilter(steps=4, min_spread=0.6), 4, loaded.model, ("gamma",))
    assimilator.decode = None  # the encoder route must not decode
    analysis = assimilator.run(truth.states[0, :, 0], cond, sensors, values, torch.Generator().manual_seed(0))
    assert analysis.latents.shape[:3] == (4, 4, 6) and torch.isfinite(analysis.latents).all()
    estimates = analysis.cond[:, :, gamma]  # (N, T)
    mean, spread = loaded.model.parameter_mean[0], loaded.model.parameter_std[0]
    assert torch.isfinite(estimates).all() and ((estimates - mean).abs() <= 3 * spread + 1e-5).all()
    assert estimates.std(dim=0).max() > 0  # members carry their own gamma
    others = [k for k in range(len(cond)) if k != gamma]
    assert torch.equal(analysis.cond[:, :, others], truth.cond[0, others].expand(4, 6, -1))  # known ones kept
    with pytest.raises(ValueError, match=r"cond: \['gamma'\] unknown \(NaN\).*goes through the decoder"):
        LatentAssimilator(forecaster, ScoreFilter(steps=2), 4).run(truth.states[0, :, 0], cond, sensors, values)
