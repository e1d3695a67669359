"""What a user types to name a registered model (``production``, ``3``, a ``models:/`` URI or
an exported directory), resolved and loaded with one clear error."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from pipelines.tracking import registry
from pipelines.tracking.runs import tracking_uri

__all__ = ["load_emulator", "load_model", "model_uri"]


def model_uri(reference: str, name: str) -> str:
    """A full ``models:/...`` or ``runs:/...`` URI (or an exported directory) as given; a
    version number or an alias of the registered model ``name`` otherwise (``production``,
    ``challenger``, ``3``)."""
    if ":/" in reference or Path(reference).exists():
        return reference
    return f"models:/{name}/{reference}" if reference.isdigit() else f"models:/{name}@{reference}"


def load_model(reference: str, name: str) -> tuple[str, mlflow.pyfunc.PyFuncModel]:
    """The URI ``reference`` resolves to (versions and aliases of ``name``) and the pyfunc
    loaded from it; a ``ValueError`` naming ``--model``, the URI and the store otherwise."""
    uri = model_uri(reference, name)
    try:
        return uri, registry.load_pyfunc(uri)
    except MlflowException as error:
        raise ValueError(f"--model {reference}: cannot load {uri} from the Model Registry at {tracking_uri()} "
                         f"({error.message.splitlines()[0]}); give a registered version, an alias such as "
                         "production, or a models:/ URI") from None


def load_emulator(reference: str, dataset: str) -> tuple[str, mlflow.pyfunc.PyFuncModel]:
    """:func:`load_model` for versions and aliases of ``<dataset>-emulator``."""
    return load_model(reference, registry.emulator_name(dataset))
