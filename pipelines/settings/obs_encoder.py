"""Settings of the observation encoders: ``train_obs_encoder:``."""

from __future__ import annotations

import dataclasses

from pipelines.settings import check
from pipelines.settings.training import TrainConfig


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
