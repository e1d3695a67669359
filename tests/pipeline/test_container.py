"""The trainer image and the container project for real: `docker/build.sh` builds the image
from a Debian base built here (debootstrap + `docker import`, no registry needed), and
`mlflow run docker -e ...` (once with `--build-image`) runs entry points inside containers on
the CPU, tracked to an MLflow server on the host; the run, its metrics, artifacts and
registered version are read back.

That every image runs as an unprivileged user is checked from the Dockerfiles alone. The
rest needs a Docker engine. Where none answers (CI machines start no `dockerd`), the test skips
and says why. The first build downloads PyTorch's CUDA wheels (minutes); later builds reuse
the dependency layers and take seconds to a minute."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import docker
import pytest
import yaml

from tests.conftest import REPO, tool_env
from tests.pipeline.conftest import mlflow_server

IMAGE = "latentops-trainer:pytest"
TINY = {  # --set overrides: the tiny pipeline of tests/pipeline/conftest.py, over the image's params.yaml
    "simulate": "simulate.resolution=16 simulate.trajectories.train=2 simulate.trajectories.valid=1 "
                "simulate.trajectories.test=1 simulate.workers=1",
    "train_autoencoder": " ".join(f"train_autoencoder.{key}" for key in (
        "model.patch=2", "model.widths=[8,16]", "model.blocks=[1,1]", "model.attention_heads=2", "train.steps=3",
        "train.batch_size=8", "train.val_every=3", "train.val_batches=1", "train.log_every=1", "train.device=cpu")),
}


def docker_engine() -> None:
    """Skip, saying why, unless a Docker engine answers."""
    try:
        docker.from_env().ping()
    except Exception as error:  # no socket, no permission, daemon down: all mean "cannot run here"
        pytest.skip(f"no Docker engine answers ({type(error).__name__}: {error}); start `dockerd` "
                    "(Debian's docker.io) to build the trainer image and run it")


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "platform/mlflow/Dockerfile"])
def test_every_image_runs_as_an_unprivileged_user(dockerfile):
    """No engine needed: the final stage of each image we build switches to a user that is
    neither root nor uid 0, so its containers run unprivileged."""
    lines = (REPO / dockerfile).read_text().splitlines()
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    users = [line.split()[1].split(":")[0] for line in lines[final:] if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), f"{dockerfile}: its final stage runs as {users or 'root'}"


def test_trainer_image_runs_entry_points_tracked_to_the_host(tmp_path):
    docker_engine()
    build = subprocess.run(["bash", "docker/build.sh", "--debootstrap", "--tag", IMAGE], cwd=REPO,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    whoami = subprocess.run(["docker", "run", "--rm", IMAGE, "sh", "-c", "id -un; ls -a; latentops --help"],
                            capture_output=True, text=True)
    assert whoami.returncode == 0, whoami.stderr
    user, *listing = whoami.stdout.split()
    assert user == "latentops" and "simulate" in whoami.stdout  # non-root, the CLI installed
    assert {".venv", "data", "params.yaml"} <= set(listing) and ".git" not in listing  # .dockerignore
    assert ".docker-build" not in listing  # the build's CA bundle stayed in the build stage

    # the container project, pointed at the test's image and a volume of its own
    project = yaml.safe_load((REPO / "docker/MLproject").read_text())
    volume = f"latentops-pytest-{uuid.uuid4().hex[:8]}"
    project["docker_env"] = {"image": IMAGE, "volumes": [f"{volume}:/home/latentops/latentops/data"]}
    project["name"] = "latentops-pytest"  # --build-image tags its image with the project's name
    (tmp_path / "project").mkdir()
    (tmp_path / "project/MLproject").write_text(yaml.safe_dump(project, sort_keys=False))

    root = tmp_path / "server"
    root.mkdir()
    try:
        with mlflow_server(root, tool_env(), "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                           "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts") as url:
            env = {**tool_env(), "MLFLOW_TRACKING_URI": url}
            for entry, params, options in (("simulate", {"workers": "1"}, []),
                                           ("train_autoencoder", {"latent_channels": "4"}, ["--build-image"])):
                command = ["mlflow", "run", str(tmp_path / "project"), "-e", entry, "-A", "network=host", *options,
                           "--experiment-name", f"euler_mini/{entry}", "-P", f"set={TINY[entry]}"]
                command += [arg for key, value in params.items() for arg in ("-P", f"{key}={value}")]
                result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
                assert result.returncode == 0, f"{entry}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"

            from mlflow import MlflowClient

            built = docker.from_env().images.get(project["name"])
            client = MlflowClient(url, url)
            (simulated,) = client.search_runs([client.get_experiment_by_name("euler_mini/simulate").experiment_id])
            assert simulated.data.tags["mlflow.docker.image.uri"] == IMAGE  # without --build-image: the image itself
            experiment = client.get_experiment_by_name("euler_mini/train_autoencoder")
            (run,) = client.search_runs([experiment.experiment_id])
            tags = run.data.tags
            assert run.info.status == "FINISHED" and tags["stage"] == "train_autoencoder"
            assert tags["mlflow.project.env"] == "docker"  # --build-image: an image FROM the trainer image
            assert tags["mlflow.docker.image.uri"] == project["name"] and built.tags == [f"{project['name']}:latest"]
            assert run.data.params["train_autoencoder.train.steps"] == "3"
            assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
            assert "val/vrmse" in run.data.metrics
            png = client.download_artifacts(run.info.run_id, "plots/reconstruction_0.png", str(tmp_path))
            assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # served through the host's server
            (version,) = client.search_model_versions("name='euler_mini-autoencoder'")
            assert version.run_id == run.info.run_id and version.tags["latent_channels"] == "4"
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
        subprocess.run(["docker", "rmi", project["name"]], capture_output=True)
