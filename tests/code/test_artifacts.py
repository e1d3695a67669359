"""pipelines.serving.artifacts on real files: a network round-trips through its safetensors
weights and constructor arguments; a changed, missing or unrecorded file of a file or
directory artifact, and a model without digests, fail with the file named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.autoencoder import Autoencoder
from pipelines.serving.artifacts import WEIGHTS, ModifiedArtifactError, digests, load_module, save_weights, verify


def test_a_network_round_trips_through_its_weights_and_arguments(tmp_path):
    model = Autoencoder(5, 4, patch=2, widths=(8, 16), blocks=(1, 1), attention_heads=2).eval()
    artifacts = {WEIGHTS: save_weights(model, tmp_path / "autoencoder.safetensors")}
    assert artifacts[WEIGHTS].read_bytes()[:1] != b"\x80"  # not a pickle
    loaded = load_module(Autoencoder, artifacts, {"arguments": model.arguments(), "digests": digests(artifacts)})
    x = torch.randn(2, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_a_changed_missing_or_unrecorded_file_fails_naming_it(tmp_path):
    bundled = tmp_path / "artifacts" / "autoencoder_c4"
    (bundled / "artifacts").mkdir(parents=True)
    (bundled / "MLmodel").write_text("flavors: {}\n")
    (bundled / "artifacts" / "w.safetensors").write_bytes(b"\x00" * 64)
    single = tmp_path / "artifacts" / "emulator.pt"
    single.write_bytes(b"\x01" * 64)
    artifacts = {"autoencoder": bundled, "emulator": single}
    logged = digests(artifacts)
    assert sorted(logged["autoencoder"]) == ["autoencoder_c4/MLmodel", "autoencoder_c4/artifacts/w.safetensors"]
    verify(artifacts, logged)

    (bundled / "artifacts" / "w.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    with pytest.raises(ModifiedArtifactError, match=rf"{bundled}/artifacts/w.safetensors \(artifact 'autoencoder'\) "
                                                    "was modified after it was logged; expected sha256 "):
        verify(artifacts, logged)
    single.unlink()
    with pytest.raises(ModifiedArtifactError, match=rf"{single} \(artifact 'emulator'\) is missing"):
        verify({"emulator": single}, logged)
    with pytest.raises(ModifiedArtifactError, match=r"artifact 'extra' has no recorded digest"):
        verify({"extra": Path(bundled / "MLmodel")}, logged)
    with pytest.raises(ModifiedArtifactError, match=r"records no SHA-256 digests .* train and register it again"):
        verify(artifacts, None)
