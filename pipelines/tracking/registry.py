"""Model Registry: registering trained models and loading them back, by name and version.

Registered names are ``<dataset>-autoencoder``, ``<dataset>-emulator``,
``<dataset>-obs-encoder`` and ``<dataset>-assimilator``; every version is a models-from-code
MLflow pyfunc (no pickled Python object) with ``models/`` and ``pipelines/serving/`` as code
paths, and the SHA-256 of each of its artifact files in its ``model_config`` (``digests``),
checked whenever it loads (:mod:`pipelines.serving.artifacts`). A registered autoencoder
(``pipelines.serving.autoencoder``) is its weights as a safetensors state dict with its
constructor arguments and its normalisation (channels, log transform, mean, std), so it maps
physical states to latents anywhere, without the training code's context. A registered
emulator is a forecaster pyfunc (``pipelines.serving.forecaster``) that bundles its autoencoder
version, the emulator, the sampler settings and the normalisation. A registered observation
encoder (``pipelines.serving.observation``) is its weights and constructor arguments, with its
sensor layout and the conditioning entries it estimates in the model's metadata. A registered
assimilator is an assimilator pyfunc (``pipelines.serving.assimilator_model``) that bundles an
emulator version's files, the filter's settings, its sensor layout and, optionally, an
observation encoder version.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo

import models
from models.autoencoder import Autoencoder, LoadedAutoencoder
from models.kinds import AUTOENCODER, OBS_ENCODER
from models.observation import ObservationEncoder
from models.forecaster import Forecaster
from models.normalizer import FieldNormalizer
import pipelines
from pipelines.io import atomic_path, write_json
from pipelines.serving.artifacts import WEIGHTS, ModifiedArtifactError, digests, save_weights
from pipelines.serving.autoencoder import load_autoencoder_dir
from pipelines.serving.forecaster import EMULATOR_FILE, PREDICT_PARAMS, save_emulator
from pipelines.serving.observation import load_obs_encoder_dir
from pipelines.tracking import cards
from pipelines.tracking.names import assimilator_name, autoencoder_name, emulator_name, obs_encoder_name
from pipelines.tracking.runs import configure, tracking_uri

MODELS_CODE = Path(models.__file__).parent
PIPELINES_CODE = Path(pipelines.__file__).parent
FORECASTER_ENTRY = PIPELINES_CODE / "serving" / "entry.py"
ASSIMILATOR_ENTRY = PIPELINES_CODE / "serving" / "assimilator_entry.py"
AUTOENCODER_ENTRY = PIPELINES_CODE / "serving" / "autoencoder_entry.py"
OBS_ENCODER_ENTRY = PIPELINES_CODE / "serving" / "obs_encoder_entry.py"
#: What the shipped code imports, pinned to the versions that registered it.
REQUIREMENTS = ("torch", "mlflow", "numpy", "azula", "safetensors")


def requirements() -> list[str]:
    """The pip requirements of a registered model: :data:`REQUIREMENTS`, pinned."""
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def _serving_code(directory: Path) -> Path:
    """``directory/pipelines``: the package file and ``pipelines/serving/``, the registered
    forecaster's runtime (not the rest of ``pipelines/``, which needs the training stack)."""
    package = directory / "pipelines"
    shutil.copytree(PIPELINES_CODE / "serving", package / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(PIPELINES_CODE / "__init__.py", package / "__init__.py")
    return package


def _log_pyfunc(name: str, entry: Path, artifacts: dict[str, str], config: dict[str, Any], registered: str,
                tags: dict[str, str], **details: Any) -> ModelVersion:
    """Log the models-from-code pyfunc ``entry`` to the active run as ``name`` with
    ``artifacts``, ``config`` plus the SHA-256 of every artifact file (``digests``) as its
    ``model_config`` and ``models/`` and ``pipelines/serving/`` as code, and register it as a
    new version of ``registered`` with ``tags`` (:func:`_register`); ``details``: the rest of
    ``mlflow.pyfunc.log_model``'s arguments (signature, input example, metadata).

    A run that registered a version already (killed after registering, before exporting,
    and resumed) gets that version back instead of a second one."""
    if (existing := version_of_run(registered, tags.get("run_id"))) is not None:
        return existing
    with tempfile.TemporaryDirectory() as tmp:
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(entry), artifacts=artifacts,
            model_config={**config, "digests": digests(artifacts)},
            code_paths=[str(MODELS_CODE), str(_serving_code(Path(tmp)))], pip_requirements=requirements(),
            **details)
    return _register(info, registered, tags)


def version_of_run(name: str, run_id: str | None) -> ModelVersion | None:
    """The version of ``name`` whose ``run_id`` tag is ``run_id``, if there is one."""
    if not run_id:
        return None
    found = mlflow.MlflowClient().search_model_versions(f"name = '{name}' and tags.run_id = '{run_id}'")
    return found[0] if found else None


def _register(info: ModelInfo, name: str, tags: dict[str, str]) -> ModelVersion:
    """Register the logged model ``info`` as a new version of ``name`` created with its
    ``tags`` in one request: a registration that fails half-way leaves no version, never a
    version without its lineage. Then write its first model card
    (:func:`pipelines.tracking.cards.refresh`; ``evaluate`` and ``promote`` rewrite it)."""
    version = mlflow.register_model(info.model_uri, name, tags={key: str(value) for key, value in tags.items()})
    client = mlflow.MlflowClient()
    cards.refresh(client, name, version.version)
    return client.get_model_version(name, str(version.version))


def _log_network(model: Autoencoder | ObservationEncoder, name: str, entry: Path, config: dict[str, Any],
                 registered: str, tags: dict[str, str], **details: Any) -> ModelVersion:
    """:func:`_log_pyfunc` of a network: its state dict as the safetensors artifact
    ``weights`` and its constructor arguments in ``model_config`` beside ``config``."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_weights(model, Path(tmp) / f"{name}.safetensors")
        return _log_pyfunc(name, entry, {WEIGHTS: str(weights)}, {**config, "arguments": model.arguments()},
                           registered, tags, **details)


def register_autoencoder(model: Autoencoder, normalizer: FieldNormalizer, example: torch.Tensor,
                         dataset: str, tags: dict[str, str]) -> ModelVersion:
    """Log ``model`` (:class:`~pipelines.serving.autoencoder.AutoencoderModel`: weights,
    constructor arguments, ``normalizer``) to the active run and register it as a new version
    of ``<dataset>-autoencoder`` with a signature, an input example (normalised states
    ``(1, C, H, W)``) and ``tags`` on the version."""
    configure()
    model = model.cpu().eval()
    example_np = example.cpu().numpy().astype(np.float32)
    with torch.no_grad():
        output = model(example.cpu()).numpy()
    return _log_network(model, "autoencoder", AUTOENCODER_ENTRY, {"normalizer": normalizer.to_dict()},
                        autoencoder_name(dataset), {"kind": AUTOENCODER, **tags},
                        signature=infer_signature(example_np, output),
                        input_example=example_np,
                        metadata={"latent_channels": model.latent_channels, "downsampling": model.downsampling})


def register_forecaster(forecaster: Forecaster, autoencoder_dir: str | Path | None,
                        example: dict[str, np.ndarray], dataset: str, tags: dict[str, str]) -> ModelVersion:
    """Log ``forecaster`` as a pyfunc (:class:`~pipelines.serving.forecaster.ForecasterModel`) to the
    active run and register it as a new version of ``<dataset>-emulator``.

    ``autoencoder_dir`` is the registered autoencoder's MLflow model directory (as exported
    by :func:`export_version`; ``None`` for a pixel emulator); it is bundled as an
    artifact. ``example`` is ``{"states": (1, K, H, W, C), "cond": (1, P)}``; the
    signature has the output and the params (``PREDICT_PARAMS``) as a ParamSchema but no
    input schema: MLflow would drop the optional observation inputs of an assimilation
    request (tensor specs cannot be optional), so the forecaster checks its inputs itself.
    """
    configure()
    forecaster.to("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"emulator": str(save_emulator(forecaster, Path(tmp) / EMULATOR_FILE))}
        if autoencoder_dir is not None:
            artifacts["autoencoder"] = str(autoencoder_dir)
        params = {**PREDICT_PARAMS, "horizon": 2}
        output = forecaster.predict(example, params)
        return _log_pyfunc(
            "forecaster", FORECASTER_ENTRY, artifacts, {}, emulator_name(dataset), tags,
            signature=ModelSignature(None, infer_signature(example, output).outputs,
                                     infer_signature(example, params=PREDICT_PARAMS).params),
            input_example=(example, params), metadata=forecaster.settings(),
        )


def load_pyfunc(uri: str) -> mlflow.pyfunc.PyFuncModel:
    """A registered (``models:/<name>/<version>``, ``models:/<name>@<alias>``) or exported
    forecaster or assimilator."""
    configure()
    return mlflow.pyfunc.load_model(uri)


def load_autoencoder(dataset: str, version: str | int) -> LoadedAutoencoder:
    """Load version ``version`` of ``<dataset>-autoencoder`` from the registry (its files
    downloaded and verified, :func:`~pipelines.serving.autoencoder.load_autoencoder_dir`)."""
    client = configure()
    name = autoencoder_name(dataset)
    try:
        model_version = client.get_model_version(name, str(version))
    except MlflowException:
        raise ValueError(f"{name} version {version} is not in the Model Registry at {tracking_uri()}; "
                         "train it (latentops train-autoencoder) or point MLFLOW_TRACKING_URI at the "
                         "store that holds it") from None
    uri = f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        directory = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        try:
            model, normalizer = load_autoencoder_dir(directory)
        except ModifiedArtifactError as error:
            raise ModifiedArtifactError(f"{uri}: {error}") from None
    return LoadedAutoencoder(model, normalizer, name, int(version), model_version.run_id or "")


def register_obs_encoder(model: ObservationEncoder, metadata: dict[str, Any], dataset: str,
                         tags: dict[str, str]) -> ModelVersion:
    """Log the observation encoder ``model`` (:class:`~pipelines.serving.observation.ObsEncoderModel`:
    weights, constructor arguments) to the active run and register it as a new version of
    ``<dataset>-obs-encoder``, with ``metadata`` (its sensor layout, the names of the
    conditioning entries it estimates and its autoencoder's version, which loading needs) in
    the MLmodel file and ``tags`` on the version."""
    configure()
    return _log_network(model.cpu().eval(), "obs_encoder", OBS_ENCODER_ENTRY, {}, obs_encoder_name(dataset),
                        {"kind": OBS_ENCODER, **tags}, metadata=metadata)


def register_assimilator(forecaster_dir: str | Path, encoder_dir: str | Path | None, config: dict[str, Any],
                         dataset: str, tags: dict[str, str]) -> ModelVersion:
    """Log an assimilator pyfunc (:class:`~pipelines.serving.assimilator_model.AssimilatorModel`)
    to the active run and register it as a new version of ``<dataset>-assimilator``: the
    exported emulator version ``forecaster_dir`` (its emulator and autoencoder), the
    exported observation encoder ``encoder_dir`` (``None``: the decoder route) and
    ``config`` (:func:`~pipelines.serving.assimilator_model.settings`), ``tags`` on the version."""
    from pipelines.serving.assimilator_model import ASSIMILATE_PARAMS

    configure()
    forecaster_dir = Path(forecaster_dir)
    artifacts = {"emulator": str(forecaster_dir / "artifacts" / EMULATOR_FILE)}
    autoencoders = [p for p in (forecaster_dir / "artifacts").iterdir() if p.is_dir()]
    if len(autoencoders) != 1:
        raise ValueError(f"{forecaster_dir}: not an exported latent emulator (its artifacts hold "
                         f"{sorted(p.name for p in autoencoders)}, not one autoencoder)")
    artifacts["autoencoder"] = str(autoencoders[0])
    if encoder_dir is not None:
        artifacts["obs_encoder"] = str(encoder_dir)
    return _log_pyfunc("assimilator", ASSIMILATOR_ENTRY, artifacts, config, assimilator_name(dataset), tags,
                       signature=ModelSignature(params=infer_signature(None, params=ASSIMILATE_PARAMS).params),
                       metadata={"layout": config["layout"]})


@dataclass
class LoadedObsEncoder:
    """A registered observation encoder with the names of the conditioning entries it
    estimates (``parameters``), its sensor layout and its autoencoder's version."""

    model: ObservationEncoder
    parameters: tuple[str, ...]
    layout: dict[str, Any]
    autoencoder_version: int
    name: str
    version: int


def check_same_autoencoder(encoder: LoadedObsEncoder, autoencoder_version: str | None, uri: str) -> None:
    """Fail unless ``encoder`` encodes into the latents of ``autoencoder_version``, the
    autoencoder of the emulator ``uri``."""
    if str(encoder.autoencoder_version) != str(autoencoder_version):
        raise ValueError(f"{encoder.name} version {encoder.version} encodes into autoencoder version "
                         f"{encoder.autoencoder_version}'s latents, but {uri} uses version {autoencoder_version}: "
                         "re-run `dvc repro train_obs_encoder`")


REGISTERED = "registered.json"  # beside MLmodel in an exported version: which version it is


def export_version(name: str, version: str | int, destination: str | Path) -> Path:
    """Copy registered version ``version`` of ``name`` (its MLflow model directory) to
    ``destination``, atomically, with ``registered.json`` naming the version and run.

    The training stages export what they register, so DVC tracks (and pushes) the exact
    model a registry version holds, and the stages after them read it from there."""
    client = configure()
    model_version = client.get_model_version(name, str(version))
    with atomic_path(destination) as tmp:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp))
        write_json(tmp / REGISTERED, {"name": name, "version": int(version), "run_id": model_version.run_id})
    return Path(destination)


def load_exported_autoencoder(directory: str | Path) -> LoadedAutoencoder:
    """Load an autoencoder exported by :func:`export_version`."""
    directory = Path(directory)
    if not (directory / REGISTERED).is_file():
        raise ValueError(f"{directory}: not an exported autoencoder (no {REGISTERED}); run "
                         "`latentops train-autoencoder` for it or pass --version to use the registry")
    info = json.loads((directory / REGISTERED).read_text())
    return LoadedAutoencoder(*load_autoencoder_dir(directory), info["name"], info["version"], info["run_id"])


def load_exported_obs_encoder(directory: str | Path) -> LoadedObsEncoder:
    """Load an observation encoder exported by :func:`export_version`."""
    directory = Path(directory)
    if not (directory / REGISTERED).is_file():
        raise ValueError(f"{directory}: not an exported observation encoder (no {REGISTERED}); run "
                         "`latentops train-obs-encoder` (or `dvc repro train_obs_encoder`)")
    info = json.loads((directory / REGISTERED).read_text())
    metadata: dict[str, Any] = mlflow.models.Model.load(str(directory)).metadata or {}
    model = load_obs_encoder_dir(directory)
    return LoadedObsEncoder(model, tuple(metadata["parameters"]), metadata["layout"],
                            int(metadata["autoencoder_version"]), info["name"], int(info["version"]))
