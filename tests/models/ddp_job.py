"""The resume test's tiny job (no dropout) trained under ``torchrun``, writing rank 0's
loss curve and final weights: ``torchrun --nproc-per-node N -m tests.models.ddp_job OUT``
(or plain ``python -m tests.models.ddp_job OUT`` for one process)."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from pipelines.recipes.training import Hooks, distributed, train
from tests.models.resume_job import make

if __name__ == "__main__":
    out = sys.argv[1]
    rank, world_size = distributed()
    model, objective, data, cfg = make("adamw", 8, dropout=0.0)
    losses: dict[int, float] = {}
    calls = {"on_step": 0}

    def record(step: int, metrics: dict[str, float]) -> None:
        calls["on_step"] += 1
        losses[step] = metrics["train/loss"]

    result = train(model, objective, data, data, cfg, hooks=Hooks(on_step=record), rank=rank, world_size=world_size,
                   progress=False)
    with open(f"{out}.rank{rank}.json", "w") as f:
        json.dump({"losses": losses, "calls": calls["on_step"], "steps": result.step, "world_size": world_size}, f)
    if rank == 0:
        torch.save(model.state_dict(), f"{out}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()
