"""Registered and trained models are untrusted files: every network (autoencoder, emulator,
observation encoder) is stored as safetensors weights (no pickle anywhere in their directories) and rebuilt from
``models/``; every load checks each artifact file against the SHA-256 logged with it, so one
flipped byte in a weight file (the autoencoder's, the emulator's, the observation encoder's
inside an assimilator bundle) or a missing file fails loudly, naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from models.assimilation import ScoreFilter
from models.observation import ObservationEncoder
from pipelines import layout
from pipelines.recipes import artifact
from pipelines.serving.artifacts import ModifiedArtifactError
from pipelines.serving.assimilator_model import settings
from pipelines.tracking import registry

MODIFIED = r"was modified after it was logged; expected sha256 [0-9a-f]{64}, found [0-9a-f]{64}"


def _exported(root: Path, name: str, tmp_path: Path) -> Path:
    """A copy of the exported model ``name`` of the shared workspace, free to modify."""
    return Path(shutil.copytree(root / layout.registered_dir(name), tmp_path / name))


def _flip_byte(path: Path) -> None:
    """Invert one byte in the middle of ``path`` (inside the weights, not the file's header)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _is_pickle(path: Path) -> bool:
    """Whether ``path`` is a pickle (protocol 2+) or a zip archive (``torch.save``'s format)."""
    head = path.read_bytes()[:2]
    return head[:1] == b"\x80" and head[1:] in {bytes([p]) for p in range(2, 6)} or head == b"PK"


def test_a_registered_autoencoder_holds_weights_only_and_loads(latent_workspace, tmp_path):
    root, _ = latent_workspace
    directory = _exported(root, layout.autoencoder(4), tmp_path)
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert not [p for p in files if _is_pickle(p)], "no pickled object in a registered autoencoder"
    assert (directory / "artifacts" / "autoencoder.safetensors").is_file()
    assert "pytorch" not in mlflow.models.Model.load(str(directory)).flavors

    loaded = registry.load_exported_autoencoder(directory)
    x = torch.randn(2, 5, 16, 16)
    served = mlflow.pyfunc.load_model(str(directory)).predict(x.numpy())  # models-from-code, verified
    with torch.no_grad():
        np.testing.assert_allclose(served, loaded.model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_a_modified_or_missing_autoencoder_weight_file_fails_to_load(latent_workspace, tmp_path):
    root, _ = latent_workspace
    directory = _exported(root, layout.autoencoder(4), tmp_path)
    weights = directory / "artifacts" / "autoencoder.safetensors"
    _flip_byte(weights)
    with pytest.raises(ModifiedArtifactError, match=rf"{weights} \(artifact 'weights'\) {MODIFIED}"):
        registry.load_exported_autoencoder(directory)
    with pytest.raises(ModifiedArtifactError, match=MODIFIED):
        mlflow.pyfunc.load_model(str(directory))
    weights.unlink()
    with pytest.raises(ModifiedArtifactError, match=rf"{weights} \(artifact 'weights'\) is missing"):
        registry.load_exported_autoencoder(directory)


@pytest.mark.parametrize("part", [artifact.WEIGHTS, artifact.EXAMPLE])
def test_a_modified_trained_model_is_refused_naming_the_file(latent_workspace, tmp_path, part):
    """What a training stage saved (weights only, no pickle) is checked on load as well."""
    root, _ = latent_workspace
    directory = Path(shutil.copytree(root / layout.model_dir(layout.autoencoder(4)), tmp_path / "trained"))
    assert not [p for p in directory.iterdir() if _is_pickle(p)]
    assert artifact.load_autoencoder(directory).run_id
    _flip_byte(directory / part)
    with pytest.raises(ValueError, match=rf"{directory / part} was modified after training: expected sha256 "
                                         r"[0-9a-f]{64}, found [0-9a-f]{64}"):
        artifact.load_autoencoder(directory)


@pytest.mark.parametrize("part", ["emulator.safetensors", "autoencoder.safetensors"])
def test_an_emulator_with_a_modified_artifact_fails_at_pyfunc_load(latent_workspace, trained, tmp_path, part):
    root, _ = latent_workspace
    directory = _exported(root, layout.emulator("solver", 4), tmp_path)
    assert not [p for p in directory.rglob("*") if p.is_file() and _is_pickle(p)], "no pickle in a registered emulator"
    mlflow.pyfunc.load_model(str(directory))  # as logged: loads
    target = next(p for p in (directory / "artifacts").rglob(part) if p.is_file())
    _flip_byte(target)
    with pytest.raises(ModifiedArtifactError, match=rf"{target} \(artifact '\w+'\) {MODIFIED}"):
        mlflow.pyfunc.load_model(str(directory))


def test_an_assimilator_with_a_modified_observation_encoder_fails_at_pyfunc_load(latent_workspace, trained, tmp_path,
                                                                                 monkeypatch):
    root, _ = latent_workspace
    emulator = _exported(root, layout.emulator("solver", 4), tmp_path)
    monkeypatch.chdir(tmp_path)  # a store of its own: nothing registered in the shared one
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    encoder = ObservationEncoder(sensors=2, latent_shape=(4, 4, 4), conditions=1, hidden=8)
    layout_dict = {"points": [[0, 0]], "channels": [1]}
    version = registry.register_obs_encoder(encoder, {"layout": layout_dict, "parameters": ["gamma"],
                                                      "autoencoder_version": 1}, "euler_mini", {})
    encoder_dir = registry.export_version(version.name, version.version, tmp_path / "obs_encoder")
    assert not [p for p in encoder_dir.rglob("*") if p.is_file() and _is_pickle(p)]
    loaded = registry.load_exported_obs_encoder(encoder_dir)
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), encoder.state_dict().values()))

    config = settings(ScoreFilter(steps=2), 3, ["gamma"], layout_dict)
    assimilator = registry.register_assimilator(emulator, encoder_dir, config, "euler_mini", {})
    bundle = registry.export_version(assimilator.name, assimilator.version, tmp_path / "assimilator")
    assert mlflow.pyfunc.load_model(str(bundle)).unwrap_python_model().assimilator.encoder is not None
    weights = next((bundle / "artifacts").rglob("obs_encoder.safetensors"))
    _flip_byte(weights)
    with pytest.raises(ModifiedArtifactError, match=rf"{weights} \(artifact 'obs_encoder'\) {MODIFIED}"):
        mlflow.pyfunc.load_model(str(bundle))
