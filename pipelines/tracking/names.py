"""The registered models' names, one per role: ``<dataset>-autoencoder``, ``-emulator``,
``-obs-encoder`` and ``-assimilator``. No MLflow here: what only needs a name (promotion,
the evaluation's queries) imports this, not the registry; and the aliases promotion moves."""

from __future__ import annotations

__all__ = ["CHALLENGER", "PRODUCTION", "assimilator_name", "autoencoder_name", "emulator_name", "obs_encoder_name"]

PRODUCTION, CHALLENGER = "production", "challenger"  # the aliases promote moves


def autoencoder_name(dataset: str) -> str:
    return f"{dataset}-autoencoder"


def emulator_name(dataset: str) -> str:
    return f"{dataset}-emulator"


def obs_encoder_name(dataset: str) -> str:
    return f"{dataset}-obs-encoder"


def assimilator_name(dataset: str) -> str:
    return f"{dataset}-assimilator"
