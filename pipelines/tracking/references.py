"""What a user types to name a registered model (``production``, ``3``, a ``models:/`` URI or
an exported directory), resolved and loaded with one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from pipelines.serving.artifacts import ModifiedArtifactError
from pipelines.tracking import names
from pipelines.tracking import registry
from pipelines.tracking.runs import configure, tracking_uri

__all__ = ["load_emulator", "load_model", "model_uri", "registered_name"]


def model_uri(reference: str, name: str) -> str:
    """A full ``models:/...`` or ``runs:/...`` URI (or an exported directory) as given; a
    version number or an alias of the registered model ``name`` otherwise (``production``,
    ``challenger``, ``3``)."""
    if ":/" in reference or Path(reference).exists():
        return reference
    return f"models:/{name}/{reference}" if reference.isdigit() else f"models:/{name}@{reference}"


def registered_name(uri: str) -> str | None:
    """The registered model that ``uri`` is a version of: ``<name>`` of ``models:/<name>/<version>``
    and ``models:/<name>@<alias>``, the name in an exported directory's ``registered.json``;
    ``None`` for a reference that does not say (``runs:/``, a logged model ``models:/m-<id>``)."""
    if uri.startswith("models:/"):
        path = uri.removeprefix("models:/")
        return path.split("@")[0].split("/")[0] if "/" in path or "@" in path else None
    info = Path(uri) / registry.REGISTERED
    return str(json.loads(info.read_text())["name"]) if info.is_file() else None


def load_model(reference: str, name: str, *others: str) -> tuple[str, mlflow.pyfunc.PyFuncModel]:
    """The URI ``reference`` resolves to (versions and aliases of ``name``) and the pyfunc
    loaded from it. A ``ValueError`` naming ``--model``, the URI and the store when it does
    not load, or when it is a version of a registered model other than ``name`` and
    ``others`` (another dataset's, or another kind of model), before anything is loaded."""
    uri = model_uri(reference, name)
    accepted = (name, *others)
    registered = registered_name(uri)
    if registered is not None and registered not in accepted:
        raise ValueError(f"--model {reference}: {uri} is a version of {registered}, but this command needs a version "
                         f"of {' or '.join(accepted)} (the dataset's own models)")
    try:
        return uri, registry.load_pyfunc(uri)
    except ModifiedArtifactError as error:
        raise ModifiedArtifactError(f"--model {reference}: refusing to load {uri}: {error}") from None
    except (MlflowException, OSError) as error:  # OSError: a version whose files were removed
        message = error.message if isinstance(error, MlflowException) else str(error)
        raise ValueError(f"--model {reference}: cannot load {uri} from the Model Registry at {tracking_uri()} "
                         f"({message.splitlines()[0]}); {_valid(uri, registered or name)}") from None


def _valid(uri: str, name: str) -> str:
    """What would load, for the error of a ``uri`` that did not: when it names a registered
    version, that its files are gone; otherwise the versions and aliases ``name`` has."""
    client = configure()
    reference = uri.removeprefix(f"models:/{name}")
    try:
        if reference.startswith("/") or reference.startswith("@"):
            version = (client.get_model_version(name, reference[1:]) if reference.startswith("/")
                       else client.get_model_version_by_alias(name, reference[1:]))
            return (f"{name} version {version.version} is registered, but its files at {version.source} are "
                    "missing: register it again or choose another version")
    except MlflowException:
        pass
    try:
        aliases = sorted(client.get_registered_model(name).aliases)
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    except MlflowException:
        return f"{name} is not registered there; give a registered version, an alias or a models:/ URI"
    unpromoted = (f" (no version holds @{names.PRODUCTION}: `latentops promote` refused every candidate so far; "
                  "metrics/promotion.json says why)") if reference == f"@{names.PRODUCTION}" and versions else ""
    return f"{name} has versions {versions} and aliases {aliases}{unpromoted}; give one of them or a models:/ URI"


def load_emulator(reference: str, dataset: str) -> tuple[str, mlflow.pyfunc.PyFuncModel]:
    """:func:`load_model` for versions and aliases of ``<dataset>-emulator``, or a version
    of ``<dataset>-assimilator`` given by URI."""
    return load_model(reference, names.emulator_name(dataset), names.assimilator_name(dataset))
