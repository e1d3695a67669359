"""Tracking core: the MLflow store, and the runs every stage opens through :func:`start_run`
(a stage's run) or :func:`start_child_run` (a trial, a version scored), with their lineage.

- Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cwd>/mlflow.db`` (never a
  ``file:`` store, which MLflow 3 refuses); local artifacts under ``<cwd>/mlartifacts``.
- One experiment per dataset and stage: ``<dataset>/<stage>``.
- Every run is tagged with the git commit and dirty flag, the DVC hash of its input data,
  the stage and the dataset; records every config value as a param, its dataset lineage
  (``mlflow.log_input``), system metrics, and step metrics logged asynchronously.
- A restarted stage passes the run id stored in its checkpoint and continues that run.
- A run is tagged with the host and process that hold it open. The first :func:`configure`
  of a process, and opening a run, mark ``KILLED`` every ``RUNNING`` run (of any experiment,
  of the run's experiment) whose process on this host is gone (killed by a signal that
  cannot be caught, a power cut): no run stays ``RUNNING`` past the next ``latentops``
  command on its host, even when DVC restores the killed stage from its run cache instead of
  running it again. A resumed run loses the mark. Runs opened on other hosts are left alone;
  their process cannot be checked here.
- A tracking server (``http(s)://``) that does not answer fails the first
  :func:`configure` of a process within seconds, naming the URI, instead of after
  MLflow's minutes of retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import mlflow
import psutil
import requests
import yaml
from mlflow.tracking import MlflowClient



def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the repository's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class TrackingUnavailable(ConnectionError):
    """The tracking server named by ``MLFLOW_TRACKING_URI`` does not answer."""


_REACHABLE: set[str] = set()  # server URIs that answered once in this process
_REAPED: set[str] = set()  # stores whose orphaned runs this process has marked


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingUnavailable` naming ``uri`` unless the server answers its
    ``/health`` endpoint within ``timeout`` seconds (any HTTP answer counts: an
    authenticating server may refuse it). Local stores (``sqlite:``, paths) are not checked,
    and a server is checked once per process."""
    if not uri.startswith(("http://", "https://")) or uri in _REACHABLE:
        return
    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as error:
        raise TrackingUnavailable(
            f"the MLflow tracking server {uri} (MLFLOW_TRACKING_URI) did not answer within {timeout:g} s "
            f"({type(error).__name__}); start it (platform/README.md), fix the URI, or unset "
            "MLFLOW_TRACKING_URI to track to the local store mlflow.db") from None
    _REACHABLE.add(uri)


def configure() -> MlflowClient:
    """Point MLflow at :func:`tracking_uri` (registry included), after
    :func:`check_reachable`, and return a client."""
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    if uri not in _REAPED:
        _REAPED.add(uri)
        reap_stale_runs(client, keep=os.environ.get("MLFLOW_RUN_ID"))
    return client


def experiment_name(dataset: str, stage: str) -> str:
    return f"{dataset}/{stage}"


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri().startswith("sqlite:"):
        location = (Path.cwd() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


# --------------------------------------------------------------------------- lineage


def git_state(cwd: str | Path = ".") -> dict[str, str]:
    """``git.commit`` and ``git.dirty`` (tracked files changed), or ``unknown`` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(dirty).lower()}


def data_hash(path: str | Path, lock: str | Path = "dvc.lock") -> tuple[str, str]:
    """``(hash, source)`` of a data directory: the md5 DVC recorded for it in ``dvc.lock``
    (``source = "dvc"``), else a fingerprint of relative paths, sizes and contents'
    first MiB (``source = "fingerprint"``) for data DVC does not track."""
    path = Path(path)
    lock = Path(lock)
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if Path(out["path"]).resolve() == path.resolve() and "md5" in out:
                    return out["md5"], "dvc"
    digest = hashlib.md5()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}:{file.stat().st_size}".encode())
        with file.open("rb") as f:
            digest.update(f.read(1 << 20))
    return digest.hexdigest(), "fingerprint"


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dataclasses/mappings to ``{"a.b.c": value}`` (lists as JSON)."""
    if is_dataclass(config):
        config = asdict(config)
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if is_dataclass(value) or isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return flat


# --------------------------------------------------------------------------- processes

HOST, PID, PID_STARTED = "latentops.host", "latentops.pid", "latentops.pid_started"
ENDED = "latentops.ended"  # why a run was marked KILLED


def process_tags() -> dict[str, str]:
    """Which process holds a run open: host name, pid and the pid's start time (so that a
    reused pid is not taken for the original process)."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), PID_STARTED: f"{psutil.Process(pid).create_time():.2f}"}


def _holder_alive(tags: Mapping[str, str]) -> bool:
    try:
        started = psutil.Process(int(tags[PID])).create_time()
    except (KeyError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return f"{started:.2f}" == tags.get(PID_STARTED)


def reap_stale_runs(client: MlflowClient, experiment_id: str | None = None, keep: str | None = None) -> list[str]:
    """Mark ``KILLED`` each ``RUNNING`` run of ``experiment_id`` (default: every experiment)
    that a process on this host opened and that process is gone, except ``keep`` (the run
    being resumed); tag why (``latentops.ended``). Returns their run ids."""
    host = socket.gethostname()
    experiments = [experiment_id] if experiment_id else [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    stale = [run for run in client.search_runs(experiments, f"attributes.status = 'RUNNING' and "
                                               f"tags.`{HOST}` = '{host}'", max_results=1000)
             if run.info.run_id != keep and not _holder_alive(run.data.tags)]
    for run in stale:
        client.set_tag(run.info.run_id, ENDED,
                       f"process {run.data.tags.get(PID)} on {host} ended without closing the run; marked KILLED "
                       f"by process {os.getpid()} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
        client.set_terminated(run.info.run_id, "KILLED")
    return [run.info.run_id for run in stale]


# --------------------------------------------------------------------------- runs


@contextlib.contextmanager
def start_run(stage: str, dataset: str, config: Mapping[str, Any], data_root: str | Path,
              run_name: str | None = None, run_id: str | None = None,
              tags: Mapping[str, str] | None = None, system_metrics: bool = True) -> Iterator[mlflow.ActiveRun]:
    """Open (or, with ``run_id``, continue) the run of one stage execution.

    ``config`` maps a section name to its config object, e.g. ``{"train_autoencoder": cfg,
    "data": data_cfg}``; every value is logged as a param ``section.key``.
    """
    client = configure()
    experiment_id = _experiment_id(client, experiment_name(dataset, stage))
    project_run = run_id is None and bool(os.environ.get("MLFLOW_RUN_ID"))  # opened by `mlflow run`: log into it
    reap_stale_runs(client, experiment_id, keep=run_id or os.environ.get("MLFLOW_RUN_ID"))
    digest, source = data_hash(data_root)
    all_tags = {"stage": stage, "dataset": dataset, "data.hash": digest, "data.hash_source": source,
                **git_state(), **(tags or {}), **process_tags()}
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id, run_name=run_name,
                          tags=None if run_id else all_tags, log_system_metrics=system_metrics) as run:
        if project_run:
            mlflow.set_tags(all_tags)
        elif run_id is not None:  # resumed: this process holds it now
            mlflow.set_tags(process_tags())
            if ENDED in client.get_run(run_id).data.tags:
                client.delete_tag(run_id, ENDED)
        if run_id is None:
            params: dict[str, Any] = {}
            for section, value in config.items():
                params.update(flatten(value, f"{section}."))
            mlflow.log_params(params)
            log_dataset(data_root, dataset, digest)
            _log_yaml({k: flatten(v) for k, v in config.items()}, "config/resolved.yaml")
        try:
            yield run
        finally:
            mlflow.flush_async_logging()


@contextlib.contextmanager
def start_child_run(parent_run_id: str, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """A run nested under ``parent_run_id`` in the parent's experiment, from any process
    (the parent need not be active here): e.g. an Optuna trial under its study's run, a
    version scored under its evaluation's run."""
    client = configure()
    parent = client.get_run(parent_run_id)
    reap_stale_runs(client, parent.info.experiment_id, keep=parent_run_id)
    all_tags = {"mlflow.parentRunId": parent_run_id, **git_state(), **(tags or {}), **process_tags()}
    with mlflow.start_run(experiment_id=parent.info.experiment_id, run_name=run_name, nested=True,
                          tags=all_tags) as run:
        try:
            yield run
        finally:
            mlflow.flush_async_logging()


def log_dataset(root: str | Path, name: str, digest: str, context: str = "training") -> None:
    """Dataset lineage: the directory as an MLflow dataset input (name, DVC digest, path)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(Path(root).resolve()))
    mlflow.log_input(MetaDataset(source, name=name, digest=digest[:36]), context=context)


def _log_yaml(data: Any, artifact_file: str) -> None:
    mlflow.log_text(yaml.safe_dump(data, sort_keys=False), artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Log a matplotlib figure as a PNG artifact and close it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)
