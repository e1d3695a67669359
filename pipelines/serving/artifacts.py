"""A registered model's files, untrusted until checked: networks are stored as weights only (a
safetensors state dict, rebuilt from ``models/`` with its constructor arguments; no pickled
object), every artifact file's SHA-256 is recorded in the model's ``model_config`` when it is
logged (:func:`digests`), and every load checks them first (:func:`verify`).

A model's artifacts are what MLflow hands a pyfunc's ``load_context``: ``{name: path}``, each
a file or a directory (another model's directory, bundled). :func:`model_files` reads the same
from a model directory on disk, so a bundled model loads the same way as a served one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow.models.model import MODEL_CONFIG
from mlflow.pyfunc.model import CONFIG_KEY_ARTIFACT_RELATIVE_PATH, CONFIG_KEY_ARTIFACTS
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["WEIGHTS", "ModifiedArtifactError", "digests", "load_module", "model_files", "save_weights", "verify"]

#: The artifact name of a network's safetensors state dict.
WEIGHTS = "weights"

#: ``{artifact name: {file path relative to the artifact's parent: SHA-256 hex digest}}``.
Digests = Mapping[str, Mapping[str, str]]


class ModifiedArtifactError(ValueError):
    """A model's file is missing or differs from the one logged (its SHA-256 changed): a
    model not to load, refused like any other bad input (no traceback from ``latentops``)."""


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def sha256(path: Path) -> str:
    """The SHA-256 hex digest of the file ``path``."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else every file under the directory ``path``."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def digests(artifacts: Mapping[str, str | Path]) -> dict[str, dict[str, str]]:
    """The SHA-256 of every file of each artifact (``{name: file or directory}``), keyed by
    artifact name, then by the file's path relative to the artifact's parent directory (MLflow
    keeps an artifact's base name under the model's ``artifacts/``)."""
    return {name: {p.relative_to(Path(path).parent).as_posix(): sha256(p) for p in _files(Path(path))}
            for name, path in artifacts.items()}


def verify(artifacts: Mapping[str, str | Path], expected: Digests | None) -> None:
    """Fail with :class:`ModifiedArtifactError`, naming the file, unless every file recorded in
    ``expected`` (:func:`digests` at log time) is in place and unchanged, for every artifact
    in ``artifacts``; ``expected`` ``None``: the model predates the digests."""
    if expected is None:
        raise ModifiedArtifactError(f"{sorted(map(str, artifacts.values()))}: the model records no SHA-256 digests "
                                    "of its files (model_config 'digests'), so they cannot be checked; it was "
                                    "logged by an older latentops: train and register it again")
    for name, path in artifacts.items():
        if name not in expected:
            raise ModifiedArtifactError(f"{path}: artifact {name!r} has no recorded digest (recorded: "
                                        f"{sorted(expected)}); it was added after the model was logged")
        for relative, logged in expected[name].items():
            file = Path(path).parent / relative
            if not file.is_file():
                raise ModifiedArtifactError(f"{file} (artifact {name!r}) is missing; it was logged with sha256 {logged}")
            found = sha256(file)
            if found != logged:
                raise ModifiedArtifactError(f"{file} (artifact {name!r}) was modified after it was logged; "
                                            f"expected sha256 {logged}, found {found}")


def save_weights(module: nn.Module, path: str | Path) -> Path:
    """``module``'s state dict (parameters and buffers, on the CPU) as a safetensors file."""
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path))
    return Path(path)


def load_module(cls: type[ModuleT], artifacts: Mapping[str, str | Path], config: Mapping[str, Any]) -> ModuleT:
    """``cls(**config["arguments"])`` with the weights of artifact :data:`WEIGHTS`, in eval mode
    on the CPU, once every artifact is verified against ``config["digests"]``."""
    verify(artifacts, config.get("digests"))
    module = cls(**config["arguments"])
    module.load_state_dict(load_file(str(artifacts[WEIGHTS])))
    return module.eval()


def model_files(directory: str | Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """The artifacts (``{name: path}``) and ``model_config`` of the MLflow pyfunc model in
    ``directory``, as MLflow hands them to its ``load_context``."""
    flavor = mlflow.models.Model.load(str(directory)).flavors.get("python_function")
    if flavor is None:
        raise ValueError(f"{directory}/MLmodel: not an MLflow pyfunc model (no python_function flavor)")
    artifacts = {name: Path(directory) / info[CONFIG_KEY_ARTIFACT_RELATIVE_PATH]
                 for name, info in flavor.get(CONFIG_KEY_ARTIFACTS, {}).items()}
    return artifacts, flavor.get(MODEL_CONFIG) or {}
