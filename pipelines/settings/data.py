"""Settings of the data every learning stage reads: ``data:`` (which dataset, windowed and
normalised how)."""

from __future__ import annotations

import dataclasses

from pipelines.settings import check


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``data:`` section: which dataset the learning stages read and how it is windowed
    and normalised."""

    root: str
    log_fields: tuple[str, ...]
    context: int
    horizon: int
    stride: int
    cache: bool  # keep file reads in memory (small datasets; off for large real ones)

    def validate(self, key: str) -> None:
        check(self.context >= 1, f"{key}.context", f"must be >= 1, got {self.context}")
        check(self.horizon >= 0, f"{key}.horizon", f"must be >= 0, got {self.horizon}")
        check(self.stride >= 1, f"{key}.stride", f"must be >= 1, got {self.stride}")
