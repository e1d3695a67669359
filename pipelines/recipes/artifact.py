"""What a training stage produces: a trained network as files, with everything that rebuilds
and identifies it, and nothing that serves it.

A trained model's directory (``pipelines.layout.model_dir``, a DVC output) holds

- ``weights.safetensors``: the network's state dict (tensors only, no pickled object);
- ``example.safetensors``: tensors the registration needs (an input example, the states
  its figures show);
- ``model.json``: ``kind`` (``models.kinds``: ``autoencoder``, ``obs_encoder`` or an emulator
  kind), the constructor ``arguments``, ``run_id`` (its MLflow training run), ``data_hash``,
  ``tags`` (lineage for its registered version), ``config`` (what else rebuilds or describes
  it: normalisation, forecaster settings, the autoencoder it encodes for, figure data) and the
  SHA-256 of both tensor files, checked on load.

Stages after training (latent caches, emulators on them, observation encoders) read these
files; turning one into a registered, servable model is ``pipelines.stages.register``'s
job, so editing the serving runtime, the registry or a model card never retrains anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn

from models.autoencoder import Autoencoder, LoadedAutoencoder
from models.kinds import AUTOENCODER
from models.normalizer import FieldNormalizer
from pipelines.io import atomic_path

__all__ = ["EXAMPLE", "MODEL", "WEIGHTS", "Trained", "load", "load_autoencoder"]

WEIGHTS = "weights.safetensors"
EXAMPLE = "example.safetensors"
MODEL = "model.json"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class Trained:
    """A trained network of ``kind`` and what identifies it (``run_id``, ``data_hash``,
    ``tags``), rebuilds it (``arguments``, ``config``) and registers it (``example``)."""

    kind: str
    network: nn.Module
    arguments: dict[str, Any]
    run_id: str
    data_hash: str
    tags: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    example: dict[str, Tensor] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """Write the three files to ``directory``, atomically (all or nothing)."""
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            save_model(self.network, str(tmp / WEIGHTS))  # shared parameters (a denoiser's backbone) once
            save_file({k: v.detach().cpu().clone().contiguous() for k, v in self.example.items()}, str(tmp / EXAMPLE))
            model = {"kind": self.kind, "arguments": self.arguments, "run_id": self.run_id,
                     "data_hash": self.data_hash, "tags": self.tags, "config": self.config,
                     "sha256": {name: _sha256(tmp / name) for name in (WEIGHTS, EXAMPLE)}}
            (tmp / MODEL).write_text(json.dumps(model, indent=1, sort_keys=True) + "\n")
        return Path(directory)

    @property
    def normalizer(self) -> FieldNormalizer:
        return FieldNormalizer.from_dict(self.config["normalizer"])


def load(directory: str | Path, network_class: Callable[[str], type[nn.Module]],
         command: str = "dvc repro") -> Trained:
    """The trained model in ``directory`` (network in eval mode, on the CPU), its files
    checked against the digests it was saved with; ``network_class(kind)`` is the class to
    rebuild it with (``models.networks.network_class`` for any kind; a caller that loads one
    kind passes that kind's class, so it imports no other network), ``command`` what makes it."""
    directory = Path(directory)
    if not (directory / MODEL).is_file():
        raise FileNotFoundError(f"{directory}: not a trained model (no {MODEL}); run `{command}`")
    model = json.loads((directory / MODEL).read_text())
    for name, expected in model["sha256"].items():
        found = _sha256(directory / name) if (directory / name).is_file() else "no file"
        if found != expected:
            raise ValueError(f"{directory / name} was modified after training: expected sha256 {expected}, "
                             f"found {found}; run `{command}`")
    network = network_class(model["kind"])(**model["arguments"])
    load_model(network, str(directory / WEIGHTS))
    return Trained(model["kind"], network.eval(), model["arguments"], model["run_id"], model["data_hash"],
                   model["tags"], model["config"], load_file(str(directory / EXAMPLE)))


def load_autoencoder(directory: str | Path, command: str = "dvc repro train_autoencoder") -> LoadedAutoencoder:
    """The trained autoencoder in ``directory`` with its normalisation (not registered:
    ``version`` is ``None``; ``name`` is the directory's)."""
    def autoencoder(kind: str) -> type[nn.Module]:
        if kind != AUTOENCODER:
            raise ValueError(f"{directory}: a trained {kind}, not an autoencoder; run `{command}`")
        return Autoencoder

    trained = load(directory, autoencoder, command)
    return LoadedAutoencoder(trained.network, trained.normalizer, Path(directory).name, None, trained.run_id)
