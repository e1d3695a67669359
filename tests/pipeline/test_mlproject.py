"""The MLflow Project: mlflow itself parses `MLproject`, and every entry point runs through
`mlflow run . -e <entry> --env-manager local` on a tiny copy of the project, logging into
the run that `mlflow run` opens."""

from __future__ import annotations

import subprocess

import h5py
from mlflow import MlflowClient
from mlflow.projects import _project_spec

from tests.conftest import REPO, tool_env
from tests.pipeline.conftest import tiny_project

ENTRY_POINTS = ("simulate", "train_autoencoder", "cache_latents", "train_emulator", "register", "evaluate", "promote",
                "tune", "forecast")


def test_mlproject_parses_with_mlflow_and_overrides_params():
    project = _project_spec.load_project(str(REPO))
    assert set(project._entry_points) == set(ENTRY_POINTS)
    command = project.get_entry_point("train_autoencoder").compute_command(
        {"latent_channels": "4", "set": "train_autoencoder.train.steps=3"}, storage_dir=None)
    assert command == ("latentops --params params.yaml --set train_autoencoder.train.steps=3 train-autoencoder "
                       "--quiet --latent-channels 4")


def test_container_project_has_the_same_entry_points_in_the_trainer_image():
    local, container = _project_spec.load_project(str(REPO)), _project_spec.load_project(str(REPO / "docker"))
    assert local.docker_env is None  # else MLflow would ignore --env-manager local
    assert container.docker_env["image"] == "latentops-trainer"
    assert set(container._entry_points) == set(local._entry_points)
    for name, entry in local._entry_points.items():
        twin = container.get_entry_point(name)
        assert twin.command == entry.command, name
        assert {k: p.default for k, p in twin.parameters.items()} == {k: p.default for k, p in entry.parameters.items()}
        assert {k: p.type for k, p in twin.parameters.items()} == {  # host paths mean nothing in a container
            k: "string" if p.type == "path" else p.type for k, p in entry.parameters.items()}, name


def test_every_entry_point_runs_through_mlflow_run(tmp_path):
    project = tiny_project(tmp_path / "project")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    env = {**tool_env(), "MLFLOW_TRACKING_URI": uri}

    def mlflow_run(entry: str, **params: str) -> str:
        command = ["mlflow", "run", ".", "-e", entry, "--env-manager", "local", "--experiment-name",
                   f"euler_mini/{entry}"]
        for key, value in params.items():
            command += ["-P", f"{key}={value}"]
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{entry}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    mlflow_run("simulate", workers="1")
    mlflow_run("train_autoencoder", latent_channels="4", set="train_autoencoder.train.steps=3")
    mlflow_run("cache_latents", latent_channels="4")
    mlflow_run("train_emulator", kind="diffusion", latent_channels="4")
    mlflow_run("train_emulator", kind="pixel_solver", latent_channels="none")
    mlflow_run("register", assimilators="none")  # (no solver or observation encoder trained here to bundle)
    mlflow_run("evaluate")
    mlflow_run("promote")
    mlflow_run("tune", study="sampler")
    mlflow_run("forecast", horizon="3", members="2", output="forecasts/f")

    client = MlflowClient(uri, uri)
    for entry in ENTRY_POINTS:
        runs = client.search_runs([client.get_experiment_by_name(f"euler_mini/{entry}").experiment_id],
                                  "tags.`mlflow.project.entryPoint` = '" + entry + "'")
        assert runs and all(run.info.status == "FINISHED" for run in runs), entry
        if entry not in ("simulate", "cache_latents", "register", "forecast"):  # no run of their own (register logs
            # into each model's training run); the others log into the run `mlflow run` opens
            assert runs[0].data.tags.get("stage") == entry, (entry, runs[0].data.tags)
    ae = client.search_runs([client.get_experiment_by_name("euler_mini/train_autoencoder").experiment_id])[0]
    assert ae.data.params["train_autoencoder.train.steps"] == "3"  # --set reached the stage
    assert {v.tags["kind"] for v in client.search_model_versions("name='euler_mini-emulator'")} >= {
        "diffusion", "pixel_solver"}
    assert client.get_model_version_by_alias("euler_mini-emulator", "production")
    with h5py.File(project / "forecasts/f.h5") as f:
        assert f["forecast"].shape[:2] == (2, 4) and f.attrs["model"] == "models:/euler_mini-emulator@production"
