"""What a user types to name a registered emulator (``production``, ``3``, a ``models:/``
URI or an exported directory), resolved and loaded with one clear error."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from pipelines.tracking import registry
from pipelines.tracking.runs import tracking_uri

__all__ = ["load_emulator", "model_uri"]


def model_uri(reference: str, dataset: str) -> str:
    """A full ``models:/...`` or ``runs:/...`` URI as given; a version number or an alias of
    ``<dataset>-emulator`` otherwise (``production``, ``challenger``, ``3``)."""
    if ":/" in reference or Path(reference).exists():
        return reference
    name = registry.emulator_name(dataset)
    return f"models:/{name}/{reference}" if reference.isdigit() else f"models:/{name}@{reference}"


def load_emulator(reference: str, dataset: str) -> tuple[str, mlflow.pyfunc.PyFuncModel]:
    """The URI ``reference`` resolves to and the forecaster pyfunc loaded from it; a
    ``ValueError`` naming ``--model``, the URI and the store otherwise."""
    uri = model_uri(reference, dataset)
    try:
        return uri, registry.load_pyfunc(uri)
    except MlflowException as error:
        raise ValueError(f"--model {reference}: cannot load {uri} from the Model Registry at {tracking_uri()} "
                         f"({error.message.splitlines()[0]}); give a registered version, an alias such as "
                         "production, or a models:/ URI") from None
