"""The real DVC pipeline on a copy of the project with tiny parameters: `dvc repro` builds
the dataset, trains and registers the autoencoders and caches their latents; a second run
does nothing; `dvc push`/`pull` round-trip through the default remote."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tool_env


def run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path) -> Path:
    """A git + DVC copy of the repository's pipeline files, with a tiny simulate section."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
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
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    return dest


def test_repro_twice_then_push_and_pull(project):
    out = run(["dvc", "repro"], project)
    for stage in ("simulate", "train_autoencoder@4", "train_autoencoder@1", "cache_latents@4", "cache_latents@1"):
        assert f"Running stage '{stage}'" in out
    assert json.loads((project / "metrics/autoencoder/c1.json").read_text())["compression_rate"] == 5 * 16 / 1
    assert (project / "data/latents/euler_mini/c4/test.h5").is_file()
    assert (project / "mlflow.db").is_file()
    dataset = project / "data"
    before = tree_digest(dataset)
    assert "raw/euler_mini/stats.yaml" in before and any(k.startswith("raw/euler_mini/data/train/") for k in before)
    assert (project / "dvc.lock").is_file()
    assert yaml.safe_load((project / "metrics" / "simulate.yaml").read_text())["trajectories"] == 4

    out = run(["dvc", "repro"], project)
    assert "Running stage" not in out
    assert "didn't change" in out
    assert tree_digest(dataset) == before
    assert "up to date" in run(["dvc", "status"], project)

    run(["dvc", "push"], project)
    remote = project / ".dvcstore"
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))

    shutil.rmtree(dataset / "raw" / "euler_mini")
    for c in (4, 1):
        shutil.rmtree(dataset / "latents" / "euler_mini" / f"c{c}")
    shutil.rmtree(project / ".dvc" / "cache")
    run(["dvc", "pull"], project)
    assert tree_digest(dataset) == before


def test_changing_a_parameter_reruns_the_stage(project):
    run(["dvc", "repro"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["cache_latents"]["batch_size"] = 7
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], project)
    assert "Running stage 'cache_latents@4'" in out and "Running stage 'cache_latents@1'" in out
    assert "Running stage 'simulate'" not in out and "Running stage 'train_autoencoder" not in out


def test_mlproject_parses_with_mlflow():
    from mlflow.projects import _project_spec

    project = _project_spec.load_project(str(REPO))
    entry = project.get_entry_point("simulate")
    command = entry.compute_command({"workers": "1"}, storage_dir=None)
    assert command.startswith("latentops --params") and "simulate --workers 1" in command


def test_a_fresh_clone_rebuilds_everything(project):
    """A clone has the metrics files and dvc.lock from git, but neither the data, nor the
    exported models, nor the MLflow store: `dvc repro` must retrain rather than trust the
    metrics files and fail on a registry that does not know their versions."""
    run(["dvc", "repro"], project)
    for path in ("data/raw/euler_mini", "data/models", "data/latents/euler_mini/c4", "data/latents/euler_mini/c1",
                 "mlartifacts", ".dvc/cache"):
        shutil.rmtree(project / path)
    (project / "mlflow.db").unlink()
    out = run(["dvc", "repro"], project)
    for stage in ("simulate", "train_autoencoder@4", "train_autoencoder@1", "cache_latents@4", "cache_latents@1"):
        assert f"Running stage '{stage}'" in out
    assert (project / "data/latents/euler_mini/c1/train.h5").is_file()
