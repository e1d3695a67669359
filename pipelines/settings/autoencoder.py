"""Settings of the autoencoders: ``train_autoencoder:``."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.settings import check
from pipelines.settings.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class AutoencoderModelConfig:
    """Architecture of ``models.autoencoder.Autoencoder``."""

    patch: int
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    attention_heads: int
    dropout: float
    bound: float

    @property
    def downsampling(self) -> int:
        return self.patch * 2 ** (len(self.widths) - 1)

    def validate(self, key: str) -> None:
        check(self.patch >= 1, f"{key}.patch", f"must be >= 1, got {self.patch}")
        check(len(self.widths) >= 1 and all(w >= 1 for w in self.widths), f"{key}.widths",
              f"must be positive channel counts, got {list(self.widths)}")
        check(len(self.blocks) == len(self.widths), f"{key}.blocks",
              f"needs one entry per level ({len(self.widths)} widths), got {list(self.blocks)}")
        check(all(b >= 0 for b in self.blocks), f"{key}.blocks", f"must be >= 0, got {list(self.blocks)}")
        check(self.attention_heads >= 1 and self.widths[-1] % self.attention_heads == 0,
              f"{key}.attention_heads", f"must divide the deepest width {self.widths[-1]}, got {self.attention_heads}")
        check(0 <= self.dropout < 1, f"{key}.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.bound > 0, f"{key}.bound", f"must be > 0, got {self.bound}")

    def check_resolution(self, resolution: tuple[int, ...], key: str) -> None:
        """Fail unless the total downsampling divides every spatial size of the data."""
        check(all(size % self.downsampling == 0 for size in resolution), key,
              f"downsampling patch * 2^(levels - 1) = {self.downsampling} does not divide the data's "
              f"resolution {list(resolution)}; change patch or the number of widths")


@dataclasses.dataclass(frozen=True)
class TrainAutoencoderConfig:
    """``train_autoencoder:`` section, one model per entry of ``latent_channels``."""

    latent_channels: tuple[int, ...]
    loss: Literal["mse", "vrmse"]
    augment: bool  # random axis flips, permutations and periodic rolls
    model: AutoencoderModelConfig
    train: TrainConfig

    def validate(self, key: str) -> None:
        check(len(self.latent_channels) >= 1, f"{key}.latent_channels", "needs at least one width")
        for i, c in enumerate(self.latent_channels):
            check(c >= 1, f"{key}.latent_channels[{i}]", f"must be >= 1, got {c}")
