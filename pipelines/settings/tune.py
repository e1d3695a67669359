"""Settings of the Optuna studies: ``tune:``."""

from __future__ import annotations

import dataclasses
from typing import Literal

from models.kinds import emulator_kinds
from models.samplers import FAMILIES
from pipelines.settings import check, check_names
from pipelines.settings.score import ScoreConfig


@dataclasses.dataclass(frozen=True)
class SamplerStudyConfig:
    """``tune.sampler:`` the sampler study (``latentops tune --study sampler``): azula
    samplers and their settings for one registered diffusion emulator, two objectives
    (validation VRMSE, seconds per trajectory)."""

    trials: int  # finished trials the study aims at (resumed studies run the rest)
    version: str  # registered <dataset>-emulator version, alias, or latest diffusion version
    samplers: tuple[str, ...]
    orders: tuple[int, int]  # Adams-Bashforth order range (zab, vab)
    steps: tuple[int, int]  # denoising steps, searched on a log scale
    score: ScoreConfig

    def validate(self, key: str) -> None:
        check(self.trials >= 1, f"{key}.trials", f"must be >= 1, got {self.trials}")
        check(len(self.samplers) >= 1, f"{key}.samplers", f"needs at least one of {list(FAMILIES)}")
        check_names(self.samplers, tuple(FAMILIES), f"{key}.samplers")
        check(1 <= self.orders[0] <= self.orders[1] <= 3, f"{key}.orders",
              f"must be [low, high] within [1, 3], got {list(self.orders)}")
        check(1 <= self.steps[0] <= self.steps[1], f"{key}.steps",
              f"must be [low, high] with 1 <= low <= high, got {list(self.steps)}")


@dataclasses.dataclass(frozen=True)
class CompressionStudyConfig:
    """``tune.compression:`` the compression study (``latentops tune --study compression``):
    latent channels, learning rate and width of a short-budget autoencoder, judged by the
    validation VRMSE of an emulator trained on its latents. Intermediate values (the
    autoencoder's validation loss) let ``pruner`` stop bad trials early."""

    trials: int
    latent_channels: tuple[int, ...]
    lr: tuple[float, float]  # autoencoder learning rate, log scale
    widths: tuple[int, ...]  # first-level width; deeper levels double it
    kind: str  # a latent emulator kind
    autoencoder_steps: int
    emulator_steps: int
    pruner: Literal["median", "hyperband", "none"]  # keys of pipelines.stages.tune.PRUNERS
    startup_trials: int  # trials the median pruner lets finish before pruning
    score: ScoreConfig

    def validate(self, key: str) -> None:
        check(self.trials >= 1, f"{key}.trials", f"must be >= 1, got {self.trials}")
        check(self.kind in emulator_kinds(latent=True), f"{key}.kind",
              f"must be one of {list(emulator_kinds(latent=True))}, got {self.kind!r}")
        check(len(self.latent_channels) >= 1 and min(self.latent_channels) >= 1, f"{key}.latent_channels",
              f"must list positive channel counts, got {list(self.latent_channels)}")
        check(0 < self.lr[0] <= self.lr[1], f"{key}.lr", f"must be [low, high] with 0 < low <= high, got {list(self.lr)}")
        check(len(self.widths) >= 1 and min(self.widths) >= 1, f"{key}.widths",
              f"must list positive widths, got {list(self.widths)}")
        for name in ("autoencoder_steps", "emulator_steps"):
            check(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(self.startup_trials >= 0, f"{key}.startup_trials", f"must be >= 0, got {self.startup_trials}")


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """``tune:`` section: Optuna studies (``pipelines.stages.tune``)."""

    storage: str  # SQLAlchemy URL, or journal:<file> for parallel workers on one machine
    heartbeat: int  # seconds (SQL storages): a trial silent for twice this is failed and retried
    seed: int
    output: str  # best params files: <output>/<study>.yaml
    sampler: SamplerStudyConfig
    compression: CompressionStudyConfig

    def validate(self, key: str) -> None:
        check(bool(self.storage), f"{key}.storage", "must be a SQLAlchemy URL or journal:<file>")
        check(self.storage != "journal:", f"{key}.storage", "journal: needs a file name, e.g. journal:optuna.log")
        check(self.heartbeat >= 1, f"{key}.heartbeat", f"must be >= 1 second, got {self.heartbeat}")
