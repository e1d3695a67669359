"""Settings of the latent caches: ``cache_latents:`` (read by every stage that trains on
latents, for where the caches are)."""

from __future__ import annotations

import dataclasses

from pipelines.settings import check


@dataclasses.dataclass(frozen=True)
class CacheLatentsConfig:
    """``cache_latents:`` section: encoding every split once with a registered autoencoder."""

    output: str
    batch_size: int
    augmented_copies: int  # extra randomly flipped/permuted/rolled copies of the train split
    seed: int

    def validate(self, key: str) -> None:
        check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.augmented_copies >= 0, f"{key}.augmented_copies", f"must be >= 0, got {self.augmented_copies}")
