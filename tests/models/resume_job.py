"""A tiny training job for the resume test: importable, and runnable as a script that
trains until its first checkpoint and then kills itself with SIGKILL.

    python -m tests.models.resume_job CHECKPOINT_DIR OPTIMIZER STEPS
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.autoencoder import Autoencoder
from pipelines.recipes.training import Hooks, train
from pipelines.settings.training import OptimConfig, TrainConfig
from tests.conftest import configured


class NoisyImages(torch.utils.data.Dataset):
    """64 fixed random 2-channel 8x8 images, each scaled by a fresh random factor at every
    access (a random augmentation drawing from torch's global RNG)."""

    def __init__(self, n: int = 64):
        self.images = torch.randn(n, 2, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"x": self.images[index] * (1 + 0.1 * torch.rand(()))}


@dataclass
class MSE:
    def loss(self, model: nn.Module, batch) -> Tensor:
        return (model(batch["x"]) - batch["x"]).square().mean()

    def validate(self, model: nn.Module, batches) -> dict[str, float]:
        return {"val/loss": float(sum(self.loss(model, b) for b in batches) / len(batches))}


def make(optimizer: str, steps: int, checkpoint_every: int = 0,
         dropout: float = 0.2) -> tuple[nn.Module, MSE, NoisyImages, TrainConfig]:
    torch.manual_seed(1)
    model = Autoencoder(2, 2, patch=2, widths=(8, 16), blocks=(1, 1), attention_heads=2, dropout=dropout)
    cfg = configured(TrainConfig, "train_emulator.train", steps=steps, batch_size=8, seed=3, device="cpu", val_every=3,
                     val_batches=1, checkpoint_every=checkpoint_every, log_every=1,
                     optim=configured(OptimConfig, "train_emulator.train.optim", optimizer=optimizer, lr=3e-3,
                                      warmup=2))
    return model, MSE(), NoisyImages(), cfg


if __name__ == "__main__":
    directory, optimizer, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model, objective, data, cfg = make(optimizer, steps, checkpoint_every=steps // 2)

    def die(step, path):
        os.kill(os.getpid(), signal.SIGKILL)

    train(model, objective, data, data, cfg, directory, Hooks(on_checkpoint=die), progress=False)
    sys.exit(3)  # not reached: the checkpoint hook kills the process
