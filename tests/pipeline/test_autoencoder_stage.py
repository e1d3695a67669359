"""train_autoencoder, register and cache_latents end to end on a real MLflow store (SQLite) and
a small Clawpack dataset: tracking, the trained model's files, registration (once per training
run), a registry round trip in a fresh process, resumption into the same run, and latent caches
equal to the registered encoder's output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import mlflow
import numpy as np
import pytest
import torch

from pipelines import layout
from pipelines.data.latent import read_cache
from pipelines.recipes import artifact
from pipelines.settings import ConfigError
from pipelines.settings.autoencoder import AutoencoderModelConfig, TrainAutoencoderConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.stages import cache_latents, register
from pipelines.stages import train_autoencoder
from pipelines.tracking.names import autoencoder_name
from pipelines.tracking.registry import load_autoencoder
from tests.conftest import configured, params_with, tool_env
from tests.pipeline.conftest import TINY_MODEL, tiny_cfg

@pytest.fixture
def workspace(tmp_path, monkeypatch, tiny_dataset):
    """A working directory with its own SQLite MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # short runs still sample
    return configured(DataConfig, "data", root=str(tiny_dataset))


def test_train_track_register_and_round_trip(workspace, tmp_path):
    summary = train_autoencoder.run(tiny_cfg(), workspace, latent_channels=4, progress=False)
    assert (tmp_path / "mlflow.db").is_file()
    trained_dir = layout.model_dir(layout.autoencoder(4))
    assert summary["model"] == str(trained_dir)
    assert summary["compression_rate"] == pytest.approx(5 * 4**2 / 4)  # C f^2 / c = 20
    assert json.loads(Path("metrics/autoencoder/c4.json").read_text())["run_id"] == summary["run_id"]
    assert Path("metrics/autoencoder/c4_curve.csv").read_text().startswith("step,val_loss,val_vrmse\n3,")
    assert not layout.checkpoint_dir("euler_mini", layout.autoencoder(4)).exists()
    # training saves weights and what rebuilds them; it registers nothing
    assert sorted(p.name for p in trained_dir.iterdir()) == [artifact.EXAMPLE, artifact.MODEL, artifact.WEIGHTS]
    assert not mlflow.MlflowClient().search_model_versions(f"name='{autoencoder_name('euler_mini')}'")

    assert register.register_models(workspace) == [
        {"name": "autoencoder_c4", "registered_model": "euler_mini-autoencoder", "version": 1, "registered": True}]
    exported = layout.registered_dir(layout.autoencoder(4))
    assert (exported / "MLmodel").is_file()
    assert json.loads((exported / "registered.json").read_text()) == {
        "name": "euler_mini-autoencoder", "version": 1, "run_id": summary["run_id"]}
    again = register.register_models(workspace)  # the same training run: the same version, not a second
    assert [(r["version"], r["registered"]) for r in again] == [(1, False)]

    client = mlflow.MlflowClient()
    run = client.get_run(summary["run_id"])
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["stage"] == "train_autoencoder" and tags["dataset"] == "euler_mini"
    assert tags["git.commit"] and tags["git.dirty"] in {"true", "false", "unknown"}
    assert len(tags["data.hash"]) == 32
    assert params["train_autoencoder.train.steps"] == "6" and params["data.root"] == workspace.root
    assert params["latent_channels"] == "4"
    assert {"train/loss", "val/vrmse", "val/vrmse_median", "val/vrmse/density"} <= set(metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/vrmse")] == [3, 6]
    assert any(k.startswith("system/") for k in metrics), "system metrics are logged"
    gpu_metrics = {k for k in metrics if k.startswith("system/gpu_")}
    for gpu in range(torch.cuda.device_count()):  # every device's utilisation and memory (nvidia-ml-py)
        assert {f"system/gpu_{gpu}_utilization_percentage", f"system/gpu_{gpu}_memory_usage_megabytes"} <= gpu_metrics
    if not torch.cuda.is_available():
        assert not gpu_metrics  # on a CPU: none, and no error
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/loss_curves.png", "plots/reconstruction_0.png"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/resolved.yaml"]
    assert run.inputs.dataset_inputs[0].dataset.name == "euler_mini"
    assert run.inputs.dataset_inputs[0].dataset.digest == tags["data.hash"][:36]

    version = client.get_model_version(autoencoder_name("euler_mini"), "1")
    assert version.tags["latent_channels"] == "4" and version.tags["compression_rate"] == "20"
    assert version.tags["data_hash"] == tags["data.hash"] and version.tags["run_id"] == run.info.run_id

    # Registry round trip: a fresh process loads models:/euler_mini-autoencoder/1.
    loaded = load_autoencoder("euler_mini", 1)
    states = torch.from_numpy(np.stack([_first_state(workspace.root, i) for i in range(3)]))  # (3, C, H, W)
    here = loaded.decode(loaded.encode(states)).numpy()
    np.save(tmp_path / "states.npy", states.numpy())
    script = (
        "import numpy as np, torch\n"
        "from pipelines.tracking.registry import load_autoencoder\n"
        "ae = load_autoencoder('euler_mini', 1)\n"
        "x = torch.from_numpy(np.load('states.npy'))\n"
        "np.save('there.npy', ae.decode(ae.encode(x)).numpy())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "there.npy"), here, rtol=1e-6, atol=1e-6)
    assert np.isfinite(here).all() and here.shape == states.shape


def _first_state(root: str, t: int) -> np.ndarray:
    """Frame ``t`` of the first train trajectory, (C, H, W), physical units."""
    path = sorted((Path(root) / "data" / "train").glob("*.hdf5"))[0]
    with h5py.File(path, "r") as f:
        scalars = [f[f"t0_fields/{n}"][0, t] for n in ("energy", "density", "pressure")]
        return np.stack([*scalars, *np.moveaxis(f["t1_fields/momentum"][0, t], -1, 0)]).astype(np.float32)


def test_interrupted_run_resumes_the_same_mlflow_run(workspace):
    cfg = tiny_cfg(steps=6)
    partial = train_autoencoder.run(cfg, workspace, latent_channels=2, progress=False, stop_at=3)
    assert partial.finished is False and partial.step == 3
    assert layout.checkpoint_dir("euler_mini", layout.autoencoder(2)).is_dir()
    summary = train_autoencoder.run(cfg, workspace, latent_channels=2, progress=False)
    assert summary.run_id == partial.run_id
    assert summary["steps"] == 6
    client = mlflow.MlflowClient()
    steps = [m.step for m in client.get_metric_history(summary["run_id"], "train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]
    runs = client.search_runs([client.get_experiment_by_name("euler_mini/train_autoencoder").experiment_id])
    assert len(runs) == 1


def test_cached_latents_equal_the_registered_encoder(workspace):
    summary = train_autoencoder.run(tiny_cfg(steps=3), workspace, latent_channels=4, progress=False)
    cfg = configured(CacheLatentsConfig, "cache_latents", batch_size=16, augmented_copies=1)
    output = cache_latents.run(cfg, workspace, 4, progress=False)  # the autoencoder the stage saved
    assert output == Path("data/latents/c4")
    assert sorted(p.name for p in output.iterdir()) == ["test.h5", "train.h5", "train_augmented.h5", "valid.h5"]

    latents, cond, attrs = read_cache(output / "train.h5")
    assert latents.shape == (4, 101, 4, 4, 4)  # (N, T, c, h, w): 16^2 / 4 = 4^2
    assert cond.shape == (4, 13)
    assert attrs["autoencoder"] == "autoencoder_c4" and attrs["autoencoder_run_id"] == summary["run_id"]
    assert attrs["data_hash"] == summary["data_hash"] and attrs["latent_channels"] == 4

    (registered,) = register.register_models(workspace)
    encoder = load_autoencoder("euler_mini", registered["version"])  # the registered version encodes the same
    path = sorted((Path(workspace.root) / "data" / "train").glob("*.hdf5"))[0]
    with h5py.File(path, "r") as f:
        fields = [f[f"t0_fields/{n}"][0] for n in ("energy", "density", "pressure")]
        states = np.stack([*fields, *np.moveaxis(f["t1_fields/momentum"][0], -1, 0)], axis=1)  # (T, C, H, W)
    expected = encoder.encode(torch.from_numpy(states.astype(np.float32))).numpy()
    np.testing.assert_allclose(latents[0], expected, rtol=1e-5, atol=1e-5)
    assert np.abs(latents).max() <= TINY_MODEL.bound

    augmented, augmented_cond, _ = read_cache(output / "train_augmented.h5")
    assert augmented.shape == latents.shape
    assert not np.allclose(augmented, latents)  # flipped / permuted / rolled copies
    np.testing.assert_array_equal(augmented_cond[:, 0], cond[:, 0])  # same gamma, trajectory by trajectory


def test_bad_config_fails_at_start_naming_the_key(workspace, tmp_path):
    from pipelines.settings import load_section

    params = tmp_path / "bad.yaml"
    for section, message in [
        ({"latent_channels": [16, -4]}, "train_autoencoder.latent_channels[1]: must be >= 1, got -4"),
        ({"train": {"optim": {"optimizer": "sgd"}}}, "train_autoencoder.train.optim.optimizer: must be one of ['psgd', 'adamw', 'muon'], got 'sgd'"),
        ({"model": {"widths": [8, 16], "blocks": [1]}}, "train_autoencoder.model.blocks: needs one entry per level"),
    ]:
        params_with(params, {"train_autoencoder": section})
        with pytest.raises(ConfigError, match=".*" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
            load_section(TrainAutoencoderConfig, "train_autoencoder", params)
    # 16^2 data and a 32x downsampling: refused before any training, naming the key.
    cfg = configured(TrainAutoencoderConfig, "train_autoencoder", model=configured(
        AutoencoderModelConfig, "train_autoencoder.model", patch=8, widths=(8, 8, 8), blocks=(1, 1, 1), attention_heads=2))
    with pytest.raises(ConfigError, match=r"train_autoencoder.model.patch: downsampling .* = 32 does not divide the data's resolution \[16, 16\]"):
        train_autoencoder.run(cfg, workspace, latent_channels=4, progress=False)
    assert not Path("mlflow.db").exists()


def test_a_missing_registered_version_is_a_clear_error(workspace):
    with pytest.raises(ValueError, match="euler_mini-autoencoder version 7 is not in the Model Registry"):
        load_autoencoder("euler_mini", 7)


def test_the_stage_under_torchrun_tracks_and_saves_once(tmp_path, tiny_dataset):
    """Two gloo processes train one autoencoder: rank 0 alone opens the run (every step
    logged once), checkpoints and saves the trained model."""
    params_with(tmp_path / "params.yaml", {
        "data": {"root": str(tiny_dataset)},
        "train_autoencoder": {"model": {"patch": 2, "widths": [8, 16], "blocks": [1, 1], "attention_heads": 2},
                              "train": {"steps": 6, "batch_size": 8, "val_every": 3, "val_batches": 1,
                                        "checkpoint_every": 3, "log_every": 1, "device": "cpu",
                                        "optim": {"optimizer": "psgd", "lr": 1e-3}}}})
    job = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2",
                          "-m", "pipelines.cli", "train-autoencoder", "--latent-channels", "4", "--quiet"],
                         cwd=tmp_path, env=tool_env(), capture_output=True, text=True)
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stdout.count("saved to data/models/autoencoder_c4") == 1, job.stdout + job.stderr[-2000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)  # the registry too: another test may have set a global one
    (run,) = client.search_runs([client.get_experiment_by_name("euler_mini/train_autoencoder").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3, 4, 5, 6]
    assert not client.search_model_versions("name='euler_mini-autoencoder'")  # the register stage's job
    assert (tmp_path / "data/models/autoencoder_c4" / artifact.MODEL).is_file()
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").rglob("*.pt"))
