"""Settings of the shared training loop (``pipelines.recipes.training``), nested in every
training section."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.settings import check


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule of the shared training loop."""

    optimizer: Literal["psgd", "adamw", "muon"]
    lr: float
    weight_decay: float
    warmup: int  # linear warm-up steps, then cosine decay to 0
    grad_clip: float  # max gradient norm; 0 = off

    def validate(self, key: str) -> None:
        check(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, f"{key}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.warmup >= 0, f"{key}.warmup", f"must be >= 0, got {self.warmup}")
        check(self.grad_clip >= 0, f"{key}.grad_clip", f"must be >= 0 (0 = off), got {self.grad_clip}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of the shared training loop (``pipelines/recipes/training.py``)."""

    steps: int
    batch_size: int
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["bf16", "fp32"]  # bf16 autocast applies on GPU only
    num_workers: int  # DataLoader processes
    log_every: int
    val_every: int
    val_batches: int
    checkpoint_every: int
    optim: OptimConfig

    def validate(self, key: str) -> None:
        for name in ("steps", "batch_size", "log_every", "val_every"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        for name in ("num_workers", "val_batches", "checkpoint_every"):
            value = getattr(self, name)
            check(value >= 0, f"{key}.{name}", f"must be >= 0, got {value}")
