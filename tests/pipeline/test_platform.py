"""The team platform for real: a tiny stage tracked to an MLflow server (basic
authentication, artifacts served through it) on a real PostgreSQL (Debian's package,
started here) with artifacts on a local S3-compatible server (moto's); everything read
back through the MLflow client. Also: `platform/compose.yaml` validates."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, params_with, tool_env
from tests.pipeline.conftest import mlflow_server as server, postgres_bin, postgres_cluster

ADMIN_PASSWORD = "test-only-password"  # pragma: allowlist secret


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster with databases ``mlflow`` and ``optuna``; yields its base URL."""
    if postgres_bin("initdb") is None:
        pytest.skip("PostgreSQL is not installed (.ci/setup installs Debian's postgresql)")
    with postgres_cluster() as url:
        yield url


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def mlflow_server(postgres, s3, tmp_path_factory) -> Iterator[str]:
    """`mlflow server` with basic auth on PostgreSQL, artifacts proxied to S3; yields its URL."""
    root = tmp_path_factory.mktemp("server")
    auth = root / "auth.ini"
    auth.write_text((REPO / "platform/mlflow/auth.ini").read_text().replace(
        "sqlite:////var/lib/mlflow/basic_auth.db", f"sqlite:///{root / 'basic_auth.db'}"))
    env = {**tool_env(), **S3_ENV, "MLFLOW_S3_ENDPOINT_URL": s3, "MLFLOW_AUTH_CONFIG_PATH": str(auth),
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret"}  # pragma: allowlist secret
    with server(root, env, "--app-name", "basic-auth", "--backend-store-uri", f"{postgres}/mlflow",
                "--artifacts-destination", "s3://mlflow/artifacts", "--serve-artifacts") as url:
        yield url


def test_a_stage_tracks_to_the_platform_server_on_postgres_and_s3(mlflow_server, postgres, s3, tiny_dataset, tmp_path):
    import boto3
    import psycopg2
    from mlflow import MlflowClient

    from tests.pipeline.conftest import tiny_cfg

    params = tmp_path / "params.yaml"
    ae = tiny_cfg(steps=4)
    params_with(params, {
        "data": {"root": str(tiny_dataset)},
        "train_autoencoder": {"model": {"patch": 2, "widths": [8, 16], "blocks": [1, 1], "attention_heads": 2},
                              "train": {"steps": ae.train.steps, "batch_size": 8, "val_every": 2, "val_batches": 1,
                                        "checkpoint_every": 2, "log_every": 1, "device": "cpu",
                                        "optim": {"optimizer": "psgd", "lr": 1e-3}}},
    })
    credentials = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    env = {**tool_env(), "MLFLOW_TRACKING_URI": mlflow_server, **credentials}
    wrong = subprocess.run(["latentops", "--params", str(params), "train-autoencoder", "--latent-channels", "4",
                                "--quiet"], cwd=tmp_path, env={**env, "MLFLOW_TRACKING_PASSWORD": "wrong"},  # pragma: allowlist secret
                               capture_output=True, text=True)
    assert wrong.returncode != 0 and "401" in wrong.stdout + wrong.stderr  # authentication is on
    for path in ("/api/2.0/mlflow/experiments/search?max_results=1", "/", "/ajax-api/2.0/mlflow/runs/search"):
        with pytest.raises(urllib.error.HTTPError) as refused:  # no credentials at all: nothing is served
            urllib.request.urlopen(f"{mlflow_server}{path}", timeout=30)
        assert refused.value.code == 401, path
    for command in (["train-autoencoder", "--latent-channels", "4"], ["register", "--assimilators", "none"]):
        result = subprocess.run(["latentops", "--params", str(params), *command, "--quiet"], cwd=tmp_path, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr

    os.environ.update(credentials)
    try:
        client = MlflowClient(mlflow_server, mlflow_server)
        experiment = client.get_experiment_by_name("euler_mini/train_autoencoder")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED" and run.data.tags["stage"] == "train_autoencoder"
        assert run.data.params["train_autoencoder.train.steps"] == "4"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3, 4]
        assert "val/vrmse" in run.data.metrics
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert "plots/reconstruction_0.png" in plots
        local = client.download_artifacts(run.info.run_id, "plots/reconstruction_0.png", str(tmp_path))
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (version,) = client.search_model_versions("name='euler_mini-autoencoder'")
        assert version.run_id == run.info.run_id and version.tags["latent_channels"] == "4"
    finally:
        for name in credentials:
            os.environ.pop(name, None)

    # where it all went: rows in PostgreSQL, objects in S3, the registered model exported locally
    with psycopg2.connect(f"{postgres}/mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchone()[0] == 1
    connection.close()
    objects = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test").list_objects_v2(Bucket="mlflow")["Contents"]  # pragma: allowlist secret
    keys = [o["Key"] for o in objects]
    assert any(k.endswith("plots/reconstruction_0.png") for k in keys) and any(k.endswith("MLmodel") for k in keys)
    assert (tmp_path / "data/registry/autoencoder_c4/MLmodel").is_file()


def test_optuna_studies_live_in_the_platform_postgres(postgres):
    import optuna

    from pipelines.stages.tune import open_storage

    storage = open_storage(f"{postgres}/optuna", heartbeat=5)
    study = optuna.create_study(study_name="platform", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=3)
    assert len(optuna.load_study(study_name="platform", storage=f"{postgres}/optuna").trials) == 3


def test_the_compose_file_validates():
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose (Debian's package) is not installed: .ci/setup installs it")
    result = subprocess.run([compose, "-f", "compose.yaml", "--env-file", ".env.example", "config", "--services"],
                            cwd=REPO / "platform", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"secrets-check", "postgres", "s3", "s3-init", "mlflow", "optuna-dashboard"}
    resolved = yaml.safe_load(subprocess.run([compose, "-f", "compose.yaml", "--env-file", ".env.example", "config"],
                                             cwd=REPO / "platform", capture_output=True, text=True, check=True).stdout)
    for service in ("postgres", "s3"):  # the stores (and so everything after them) wait for the check
        assert resolved["services"][service]["depends_on"]["secrets-check"]["condition"] == \
            "service_completed_successfully"
    missing = subprocess.run([compose, "-f", "compose.yaml", "config"], cwd=REPO / "platform",
                             env={k: v for k, v in os.environ.items()
                                  if not k.startswith(("POSTGRES_", "S3_", "MLFLOW_"))},
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "set POSTGRES_PASSWORD in .env" in missing.stderr  # no secret has a default


def _example_secrets() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (REPO / "platform" / ".env.example").read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.mark.parametrize(("change", "message"), [
    ({}, "POSTGRES_PASSWORD is still the placeholder of .env.example"),
    ({"MLFLOW_ADMIN_PASSWORD": ""}, "MLFLOW_ADMIN_PASSWORD is empty"),
    ({"S3_SECRET_KEY": "short-pw"}, "S3_SECRET_KEY has 8 characters; use at least 12"),  # pragma: allowlist secret
])
def test_the_platform_refuses_default_empty_or_short_secrets(change, message):
    """``secrets-check`` (what compose runs before the stores start), run by the same shell
    script: the example's placeholders, an empty and a short secret are refused by name."""
    strong = {name: f"{name.lower()}-a-long-random-value" for name in
              ("POSTGRES_PASSWORD", "S3_SECRET_KEY", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY")}
    env = {"PATH": os.environ["PATH"], **(_example_secrets() if not change else {**strong, **change})}
    refused = subprocess.run(["sh", "check-secrets.sh"], cwd=REPO / "platform", env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and message in refused.stderr, refused.stderr
    accepted = subprocess.run(["sh", "check-secrets.sh"], cwd=REPO / "platform", env={"PATH": os.environ["PATH"], **strong},
                              capture_output=True, text=True)
    assert accepted.returncode == 0 and "every secret is set" in accepted.stdout
