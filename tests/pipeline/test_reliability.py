"""Faults, on a real SQLite MLflow store, real processes and a real small file system: a run
whose process was SIGKILLed is marked KILLED by the next process on its host (never RUNNING
forever), a live one is left alone, SIGTERM ends a stage's run FAILED with nothing half-written, an
unreachable tracking server fails a command at once naming its URI, a disk that fills up
during a latent cache write fails it clearly with the previous cache intact, and a
registration that fails leaves no version without its tags."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.exceptions import MlflowException

from models.autoencoder import Autoencoder
from models.normalizer import FieldNormalizer
from pipelines.cli import main
from pipelines.settings.data import DataConfig
from pipelines.tracking import registry
from pipelines.tracking import runs as tracking
from tests.conftest import configured, tool_env
from tests.pipeline.conftest import CACHE, free_port, tiny_cfg, write_params

HOLD_A_RUN = """
import os, signal, sys, time
from pipelines.tracking import runs
with runs.start_run("train_autoencoder", "faults", {}, sys.argv[1], run_name=sys.argv[2], system_metrics=False):
    print("open", flush=True)
    if sys.argv[2] == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)
"""


def _open_run(root: Path, name: str) -> subprocess.Popen:
    """A process that opens a run named ``name`` in the store of ``root`` (``killed``: then
    SIGKILLs itself), once it has said so."""
    env = {**tool_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    process = subprocess.Popen([sys.executable, "-c", HOLD_A_RUN, str(root), name], cwd=root, env=env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "open"
    return process


def _run(client: mlflow.MlflowClient, name: str) -> mlflow.entities.Run:
    experiment = client.get_experiment_by_name("faults/train_autoencoder").experiment_id
    (run,) = client.search_runs([experiment], f"attributes.run_name = '{name}'")
    return run


def test_a_killed_process_run_is_marked_killed_and_a_live_one_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = tracking.configure()
    killed = _open_run(tmp_path, "killed")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert _run(client, "killed").info.status == "RUNNING"  # what MLflow alone leaves behind
    # the next latentops process on this host, whatever it does (here it opens no run at all)
    subprocess.run([sys.executable, "-c", "from pipelines.tracking import runs; runs.configure()"], cwd=tmp_path,
                   env={**tool_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}, check=True)
    alive = _open_run(tmp_path, "alive")
    try:
        reaped = _run(client, "killed")
        assert reaped.info.status == "KILLED" and reaped.info.end_time
        assert f"process {killed.pid} on " in reaped.data.tags["latentops.ended"]
        with tracking.start_run("train_autoencoder", "faults", {}, tmp_path, run_name="next", system_metrics=False):
            pass
        assert _run(client, "alive").info.status == "RUNNING"  # its process still holds it
    finally:
        alive.kill()
        alive.wait()
    assert tracking.reap_stale_runs(client, _run(client, "alive").info.experiment_id) == [_run(client, "alive").info.run_id]
    assert _run(client, "alive").info.status == "KILLED"


def test_sigterm_ends_the_stage_run_failed_and_writes_nothing(random_dataset, tmp_path):
    """``kill`` (SIGTERM, as a scheduler or ``docker stop`` sends it) in the middle of
    training: exit status 143, the run FAILED (not RUNNING), no exported model."""
    params = write_params(tmp_path / "params.yaml", {"data": configured(DataConfig, "data", root=str(random_dataset), log_fields=()),
                                                     "train_autoencoder": tiny_cfg(steps=100_000)})
    env = {**tool_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--params", str(params), "train-autoencoder",
                                "--latent-channels", "4", "-q"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    deadline = time.monotonic() + 300
    while not (tmp_path / "checkpoints").exists():  # training has started once it checkpoints
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 143, out
    experiment = client.get_experiment_by_name(f"{random_dataset.name}/train_autoencoder")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert not (tmp_path / "data" / "models").exists()
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_an_unreachable_tracking_server_fails_at_once_naming_the_uri(random_dataset, monkeypatch, capsys):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    code = main(["--set", f"data.root={random_dataset} data.log_fields=[]", "promote", "--dry-run"])
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and f"the MLflow tracking server {uri} (MLFLOW_TRACKING_URI) did not answer" in err, err
    assert "Traceback" not in err
    print(f"failed after {seconds:.1f} s")  # MLflow's own retries would take minutes


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_full_disk_fails_the_latent_cache_clearly_and_keeps_the_previous_one(workspace, small_filesystem, tmp_path,
                                                                            capsys):
    previous = Path(CACHE.output) / "c4"
    size = sum(p.stat().st_size for p in previous.rglob("*") if p.is_file())
    disk = small_filesystem("disk", size * 3 // 2)  # the cache fits once, not twice
    shutil.copytree(previous, disk / "c4")
    before = _digests(disk / "c4")
    params = write_params(tmp_path / "params.yaml", {"data": workspace,
                                                    "cache_latents": dataclasses.replace(CACHE, output=str(disk))})
    code = main(["--params", str(params), "cache-latents", "--latent-channels", "4", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and f"{disk / 'c4'}: not written, it needs about" in err and "MiB free; the previous c4 is intact" \
        in err, err
    assert "Traceback" not in err
    assert _digests(disk / "c4") == before and sorted(p.name for p in disk.iterdir()) == ["c4"]


def test_a_registration_that_fails_leaves_no_version_without_its_tags(tmp_path, monkeypatch):
    """The store refuses one lineage tag (a value over MLflow's 100 000 characters): the
    version and its tags are created in one request, so no version appears at all."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = Autoencoder(2, 4, patch=2, widths=(8, 16), blocks=(1, 1), attention_heads=2)
    normalizer = FieldNormalizer(("a", "b"), torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.bool))
    example = torch.randn(1, 2, 8, 8)
    tags = {"data_hash": "abc", "kind": "autoencoder"}
    with tracking.start_run("train_autoencoder", "faults", {}, tmp_path, system_metrics=False):
        good = registry.register_autoencoder(model, normalizer, example, "faults", tags)
        assert good.tags == tags and good.run_id == mlflow.active_run().info.run_id
        with pytest.raises(MlflowException):
            registry.register_autoencoder(model, normalizer, example, "faults", {**tags, "notes": "x" * 100_001})
    client = tracking.configure()
    versions = client.search_model_versions("name = 'faults-autoencoder'")
    assert [(v.version, v.tags) for v in versions] == [(good.version, tags)]


def test_a_run_resumed_after_registering_gets_its_version_back(tmp_path, monkeypatch):
    """Killed between registering and exporting, a training run resumes and finishes again:
    the version its run registered comes back, no second version is made."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = Autoencoder(2, 4, patch=2, widths=(8, 16), blocks=(1, 1), attention_heads=2)
    normalizer = FieldNormalizer(("a", "b"), torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.bool))
    with tracking.start_run("train_autoencoder", "faults", {}, tmp_path, system_metrics=False) as run:
        tags = {"run_id": run.info.run_id}
        first = registry.register_autoencoder(model, normalizer, torch.randn(1, 2, 8, 8), "faults", tags)
        again = registry.register_autoencoder(model, normalizer, torch.randn(1, 2, 8, 8), "faults", tags)
    assert again.version == first.version
    other = registry.register_autoencoder(model, normalizer, torch.randn(1, 2, 8, 8), "faults", {"run_id": "another"})
    assert int(other.version) == int(first.version) + 1
    assert len(tracking.configure().search_model_versions("name = 'faults-autoencoder'")) == 2
