"""Evaluation results kept in the Model Registry: every registered version of
``<dataset>-autoencoder``, ``<dataset>-emulator`` and ``<dataset>-assimilator``, and the
scorecard ``evaluate`` recorded for it under an evaluation key (``pipelines.evaluation.key``):
the version's ``eval.*`` tags name the key and the evaluation run, whose ``scorecard.json``
is the card (:func:`pipelines.tracking.cards.scorecard`)."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion

from pipelines.evaluation.scorecard import Result, Scorecard
from pipelines.tracking import cards
from pipelines.tracking.names import assimilator_name, autoencoder_name, emulator_name

__all__ = ["Entry", "card", "evaluated", "registered"]


@dataclass
class Entry:
    """One registered version and what it is: ``kind`` is ``autoencoder``, an emulator kind
    or ``assimilator``."""

    version: ModelVersion
    kind: str
    latent_channels: str
    compression_rate: str

    @property
    def label(self) -> str:
        width = "" if self.latent_channels in ("", "none") else f"_c{self.latent_channels}"
        return f"{self.kind}{width}_v{self.version.version}"

    @property
    def uri(self) -> str:
        return f"models:/{self.version.name}/{self.version.version}"

    def result(self, card: Scorecard) -> Result:
        return Result(self.label, self.kind, card, self.version.name, int(self.version.version), self.latent_channels,
                      self.compression_rate, self.version.tags.get(f"{cards.EVAL}run_id", ""))


def registered(client: mlflow.MlflowClient, dataset: str) -> list[Entry]:
    """Every version of ``<dataset>-autoencoder``, ``<dataset>-emulator`` and
    ``<dataset>-assimilator``."""
    entries = []
    for name in (autoencoder_name(dataset), emulator_name(dataset), assimilator_name(dataset)):
        for version in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
            tags = version.tags
            entries.append(Entry(version, cards.kind_of(version), tags.get("latent_channels", ""),
                                 tags.get("compression_rate", "")))
    return entries


def card(entry: Entry, key: str) -> Scorecard | None:
    """The version's scorecard under ``key``, if it has one."""
    return cards.scorecard(entry.version, key)


def evaluated(client: mlflow.MlflowClient, dataset: str, key: str) -> list[Result]:
    """Results of every version evaluated under ``key``, read back from its tags."""
    return [entry.result(scores) for entry in registered(client, dataset) if (scores := card(entry, key)) is not None]


