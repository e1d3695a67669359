"""Fixtures of the stage tests: a tiny registered autoencoder, its latent cache and the three
emulator kinds trained on them, built once for the package in one MLflow store."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines import layout
from pipelines.settings import load_params
from pipelines.settings.autoencoder import AutoencoderModelConfig, TrainAutoencoderConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import EmulatorModelConfig, SamplerConfig, TrainEmulatorConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.settings.score import ScoreConfig
from pipelines.settings.training import OptimConfig, TrainConfig
from pipelines.stages import cache_latents, register
from pipelines.stages import train_autoencoder
from pipelines.stages import train_emulator
from tests.conftest import REPO, VENV_BIN, configured, tool_env

TINY_MODEL = configured(AutoencoderModelConfig, "train_autoencoder.model", patch=2, widths=(8, 16), blocks=(1, 1),
                        attention_heads=2)


def tiny_train(**changes) -> TrainConfig:
    """A short training loop on the CPU, AdamW at 1e-3 warmed up over one step."""
    return configured(TrainConfig, "train_emulator.train", device="cpu",
                      optim=configured(OptimConfig, "train_emulator.train.optim", lr=1e-3, warmup=1), **changes)


def tiny_cfg(steps: int = 6, **train) -> TrainAutoencoderConfig:
    return configured(
        TrainAutoencoderConfig, "train_autoencoder", latent_channels=(4, 2), model=TINY_MODEL,
        train=tiny_train(steps=steps, batch_size=8, val_every=3, val_batches=1, checkpoint_every=3, log_every=1,
                         **train),
    )


@contextlib.contextmanager
def inside(root: Path) -> Iterator[None]:
    """Work in ``root`` with its own MLflow store (for fixtures wider than a test)."""
    saved, uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    try:
        yield
    finally:
        os.chdir(saved)
        os.environ.pop("MLFLOW_TRACKING_URI")
        if uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = uri


TINY = configured(EmulatorModelConfig, "train_emulator.latent", width=12, depth=1, heads=2)
CACHE = configured(CacheLatentsConfig, "cache_latents", batch_size=32)


def tiny_emulator_cfg(steps: int = 4) -> TrainEmulatorConfig:
    return configured(
        TrainEmulatorConfig, "train_emulator", sampler=configured(SamplerConfig, "train_emulator.sampler", steps=3),
        latent=TINY, pixel=dataclasses.replace(TINY, width=24, patch=8),
        train=tiny_train(steps=steps, batch_size=8, val_every=2, val_batches=1, checkpoint_every=2, log_every=1),
        score=configured(ScoreConfig, "train_emulator.score", trajectories=2, members=2,
                         lead_windows=((1, 20), (21, 100))),
    )


@pytest.fixture(scope="package")
def latent_workspace(tmp_path_factory, tiny_dataset):
    """A directory with a SQLite store holding a tiny autoencoder (c = 4), trained and
    registered, and its cache."""
    root = tmp_path_factory.mktemp("emulators")
    data = configured(DataConfig, "data", root=str(tiny_dataset))
    with inside(root):
        train_autoencoder.run(tiny_cfg(steps=2), data, latent_channels=4, progress=False)
        cache_latents.run(CACHE, data, 4, progress=False)
        register.register_models(data)
    return root, data


@pytest.fixture
def workspace(latent_workspace, monkeypatch):
    root, data = latent_workspace
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return data


@pytest.fixture(scope="package")
def trained(latent_workspace):
    """The three kinds, trained once and registered: kind -> Trained."""
    root, data = latent_workspace
    with inside(root):
        out = {kind: train_emulator.run(tiny_emulator_cfg(), data, CACHE, kind, None if kind == "pixel_solver" else 4,
                                        progress=False)
               for kind in ("solver", "diffusion", "pixel_solver")}
        register.register_models(data)
    return out




def registered_version(model: str) -> int:
    """The registered version the ``register`` stage exported for ``model`` (``layout`` name)."""
    return json.loads((layout.registered_dir(model) / "registered.json").read_text())["version"]


def write_params(path: Path, sections: dict[str, object]) -> Path:
    """A params file at ``path``: the repository's params.yaml with ``sections`` (section name ->
    config dataclass) in place of its own."""
    plain = json.loads(json.dumps({k: dataclasses.asdict(v) for k, v in sections.items()}))
    path.write_text(yaml.safe_dump({**load_params(REPO / "params.yaml"), **plain}, sort_keys=False))
    return path


def latentops(cwd: Path, params: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``latentops --params params ARGS`` in ``cwd`` (output and errors together on stdout)."""
    return subprocess.Popen([str(Path(VENV_BIN) / "latentops"), "--params", str(params), *args], cwd=cwd,
                            env=env or tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    """Wait for ``process`` (at most 10 minutes); its output, asserting that it succeeded."""
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out
    return out


def tiny_project(dest: Path) -> Path:
    """A git + DVC copy of the repository's pipeline files (dvc.yaml, params.yaml, MLproject,
    the packages) in ``dest``, with tiny parameters."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "MLproject", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / ".dvc", dest / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    for package in ("pipelines", "models"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["simulate"].update(resolution=16, trajectories={"train": 2, "valid": 1, "test": 1}, workers=1)
    ae = params["train_autoencoder"]
    ae["latent_channels"] = [4, 1]
    ae["model"].update(patch=2, widths=[8, 16], blocks=[1, 1], attention_heads=2)
    ae["train"].update(steps=4, batch_size=8, val_every=2, val_batches=1, checkpoint_every=2, device="cpu")
    emulator = params["train_emulator"]
    emulator["sampler"]["steps"] = 2
    emulator["latent"].update(width=12, depth=1, heads=2)
    emulator["pixel"].update(width=12, depth=1, heads=2, patch=8)
    emulator["train"].update(steps=2, batch_size=8, val_every=2, val_batches=1, checkpoint_every=2, device="cpu")
    emulator["score"].update(trajectories=1, members=2)
    encoder = params["train_obs_encoder"]
    encoder["model"]["hidden"] = 8
    encoder["train"].update(steps=2, batch_size=8, val_every=2, val_batches=1, checkpoint_every=2, device="cpu")
    params["evaluate"].update(trajectories=1, members=2, assimilation_trajectories=1)
    for assimilator in params["register_assimilator"]["assimilators"].values():
        assimilator.update(latent_channels=4, members=3)
        assimilator["filter"]["steps"] = 2
    params["sweep_observations"].update(fractions=[0.05, 0.2], noises=[0.1], trajectories=1)
    # three members of barely trained models are far under-dispersed (spread-skill about 0.13): the
    # calibration rule would refuse every assimilator, and the pipeline test is about the pipeline
    params["promote"]["assimilators"]["spread_skill"] = [0.0, 10.0]
    # two training steps give no skill over a trivial baseline: the skill rule would refuse every
    # emulator (tests/pipeline/test_evaluate_stage.py tests that rule)
    params["promote"]["baselines"] = False
    params["assimilate"].update(trajectories=1, members=3)
    params["assimilate"]["filter"]["steps"] = 2
    params["assimilate"]["enkf"].update(trajectories=1, members=3)
    params["tune"]["sampler"].update(trials=2, steps=[3, 5])
    params["tune"]["sampler"]["score"].update(trajectories=1, members=2, lead_windows=[[1, 8]])
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


@contextlib.contextmanager
def moto_s3(*buckets: str) -> Iterator[str]:
    """moto's S3-compatible server on a free port of localhost with ``buckets`` (any
    credentials are accepted: test/test); yields its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test",
                              region_name="us-east-1")  # pragma: allowlist secret
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3-compatible server with the buckets ``mlflow`` (MLflow's artifacts) and ``dvc``
    (a DVC remote), as the platform's MinIO has; yields its URL."""
    with moto_s3("mlflow", "dvc") as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(command: list[str], ready: str, cwd: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    """Run ``command``, a server, for the block: enter once the URL ``ready`` answers (within
    120 s, else fail with the end of ``log``, where its output goes), stop it afterwards."""
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        try:
            while True:
                try:
                    urllib.request.urlopen(ready, timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"{' '.join(command[:3])} did not start:\n{log.read_text()[-3000:]}")
                    time.sleep(0.5)
            yield
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextlib.contextmanager
def mlflow_server(root: Path, env: dict[str, str], *options: str) -> Iterator[str]:
    """A real ``mlflow server`` (``options``: stores, ``--app-name``...) on a free port of
    localhost, its log in ``root/server.log``; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with served([str(Path(VENV_BIN) / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), *options],
                f"{url}/health", root, env, root / "server.log"):
        yield url


def postgres_bin(name: str) -> str | None:
    """PostgreSQL's program ``name`` (``initdb``, ``pg_ctl``), or ``None`` if not installed."""
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres_cluster(databases: tuple[str, ...] = ("mlflow", "optuna")) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (Debian's package) on a free port of localhost with
    ``databases``, for the block; yields its base URL ``postgresql://latentops@127.0.0.1:<port>``."""
    import psycopg2

    if postgres_bin("initdb") is None:
        raise FileNotFoundError("PostgreSQL's initdb is not installed (.ci/setup installs Debian's postgresql)")
    root = Path(tempfile.mkdtemp(prefix="latentops-pg-"))  # not under pytest's root-only temp dir
    data, port = root / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(_as_postgres([postgres_bin("initdb"), "-D", str(data), "-U", "latentops", "--auth=trust", "-E",
                                 "UTF8"]), check=True, capture_output=True)
    subprocess.run(_as_postgres([postgres_bin("pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                                 f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"]), check=True,
                   capture_output=True)
    try:
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="latentops", dbname="postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            for database in databases:
                cursor.execute(f"CREATE DATABASE {database}")
        connection.close()
        yield f"postgresql://latentops@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
