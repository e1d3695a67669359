"""Settings of the sensors and their observation encoders: ``sensors:`` and
``train_obs_encoder:``."""

from __future__ import annotations

import dataclasses

from pipelines.settings import Named, check
from pipelines.settings.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class SensorLayoutConfig:
    """One sensor layout of ``sensors.layouts``: ``fraction`` of the grid points (at least
    one), drawn once from ``seed``, each reading every field of ``fields`` (empty: all)
    every ``every`` stored steps, with Gaussian noise of ``noise`` times the field's standard
    deviation over the trajectory (``pipelines.data.observations``)."""

    fraction: float
    fields: tuple[str, ...]
    every: int
    noise: float
    seed: int

    def validate(self, key: str) -> None:
        check(0 < self.fraction <= 1, f"{key}.fraction", f"must be a fraction in (0, 1], got {self.fraction}")
        check(self.every >= 1, f"{key}.every", f"must be >= 1, got {self.every}")
        check(self.noise > 0, f"{key}.noise", f"must be > 0, got {self.noise}")


@dataclasses.dataclass(frozen=True)
class SensorsConfig(Named):
    """``sensors:`` section: the sensor layouts, by name. The twin experiment observes one
    (``assimilate.layout``); an observation encoder is trained for each."""

    SECTION, NOUN, LOOKUP_NOUN = "sensors", "layout", "sensor layout"

    layouts: dict[str, SensorLayoutConfig]

    def layout(self, name: str, key: str) -> SensorLayoutConfig:
        """The layout ``name``; a :class:`ConfigError` naming ``key`` and the valid names otherwise."""
        return self.entry(name, key)


@dataclasses.dataclass(frozen=True)
class ObsEncoderModelConfig:
    """Architecture of ``models.observation.ObservationEncoder``."""

    hidden: int
    layers: int

    def validate(self, key: str) -> None:
        check(self.hidden >= 1, f"{key}.hidden", f"must be >= 1, got {self.hidden}")
        check(self.layers >= 1, f"{key}.layers", f"must be >= 1, got {self.layers}")


@dataclasses.dataclass(frozen=True)
class TrainObsEncoderConfig:
    """``train_obs_encoder:`` section, one encoder per sensor layout and autoencoder width:
    sequences of ``length`` readings of the layout to the latents of the autoencoder and the
    conditioning entries ``parameters``; each training sequence loses a share of its
    readings drawn uniformly from ``[0, dropout]``, and gets the layout's noise. Its latent
    errors' covariance on the valid split is shrunk toward its diagonal by ``shrinkage``."""

    parameters: tuple[str, ...]
    length: int
    dropout: float
    shrinkage: float
    model: ObsEncoderModelConfig
    train: TrainConfig

    def validate(self, key: str) -> None:
        check(self.length >= 1, f"{key}.length", f"must be >= 1, got {self.length}")
        check(0 <= self.dropout < 1, f"{key}.dropout", f"must be in [0, 1), got {self.dropout}")
        check(0 < self.shrinkage <= 1, f"{key}.shrinkage", f"must be in (0, 1], got {self.shrinkage}")
