"""Settings of the emulators: ``train_emulator:``."""

from __future__ import annotations

import dataclasses

from models.kinds import emulator_kinds
from models.samplers import FAMILIES, ODESampler
from pipelines.settings import check, check_names
from pipelines.settings.data import DataConfig
from pipelines.settings.score import ScoreConfig
from pipelines.settings.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class EmulatorModelConfig:
    """Architecture of the emulators' space-time transformer (``models.transformer``)."""

    width: int
    depth: int
    heads: int
    patch: int  # spatial patch per token: 1 on latents, e.g. 8 on pixels
    mlp_ratio: int

    def validate(self, key: str) -> None:
        for name in ("width", "depth", "heads", "patch", "mlp_ratio"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        check(self.width % self.heads == 0, f"{key}.heads", f"must divide width {self.width}, got {self.heads}")
        check(self.width // self.heads >= 6, f"{key}.heads",
              f"width / heads = {self.width // self.heads} is too small for rotary embeddings over (t, x, y); "
              "needs >= 6")


@dataclasses.dataclass(frozen=True)
class SamplerConfig(ODESampler):
    """Probability-flow ODE sampler of the diffusion emulator: the configured
    :class:`models.samplers.ODESampler` itself, checked, every setting required (the model's
    defaults are not the configuration's)."""

    name: str = dataclasses.field()
    order: int = dataclasses.field()
    steps: int = dataclasses.field()

    def validate(self, key: str) -> None:
        check(self.name in FAMILIES, f"{key}.name", f"must be one of {list(FAMILIES)}, got {self.name!r}")
        check(1 <= self.order <= 3, f"{key}.order", f"must be 1, 2 or 3, got {self.order}")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class TrainEmulatorConfig:
    """``train_emulator:`` section: latent emulators (one per kind and latent width) and the
    pixel-space neural solver. Windows are ``data.context + data.horizon`` states every
    ``data.stride`` stored steps; forecasts start from ``data.context`` states."""

    kinds: tuple[str, ...]
    context_rate: float  # Poisson rate lambda of the training context size k = 1 + Poisson(lambda) mod (L - 1)
    flip: float  # share of training masks reversed (backward-in-time prediction; LoLA)
    overlap: int  # states carried from one rollout window to the next
    sampler: SamplerConfig
    latent: EmulatorModelConfig
    pixel: EmulatorModelConfig
    train: TrainConfig
    score: ScoreConfig

    def validate(self, key: str) -> None:
        check(len(self.kinds) >= 1, f"{key}.kinds", f"needs at least one of {list(emulator_kinds(latent=True))}")
        check_names(self.kinds, emulator_kinds(latent=True), f"{key}.kinds")
        check(self.context_rate > 0, f"{key}.context_rate", f"must be > 0, got {self.context_rate}")
        check(0 <= self.flip <= 1, f"{key}.flip", f"must be in [0, 1], got {self.flip}")
        check(self.overlap >= 1, f"{key}.overlap", f"must be >= 1, got {self.overlap}")

    def check_window(self, data: DataConfig, key: str) -> None:
        """The rollout needs ``overlap < window`` and ``context < window``."""
        window = data.context + data.horizon
        check(data.horizon >= 1, "data.horizon", f"emulators need a horizon >= 1, got {data.horizon}")
        check(self.overlap < window, f"{key}.overlap",
              f"must be < the window of data.context + data.horizon = {window} states, got {self.overlap}")
