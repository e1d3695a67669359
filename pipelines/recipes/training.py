"""The one training loop. Autoencoders, diffusion models, neural solvers and pixel baselines
differ only in their :class:`Objective` (a loss and a validation) and their data; this
loop does everything else:

- device selection, bf16 autocast on GPU only (full precision on CPU);
- optimizers from a mapping (``psgd`` = heavyball ``PSGDKron``, compiled only on GPU;
  ``muon``, heavyball's Muon with AdamW, orthogonalising in float64 on a CPU; ``adamw``),
  cosine schedule with linear warm-up, gradient-norm clipping;
- steps whose gradients are not finite are skipped (and counted), weights untouched;
- seeded, stateless batch order (batch ``s`` depends only on seed and ``s``), so a resumed
  run sees exactly the batches the uninterrupted one would have;
- periodic checkpoints (atomic) and resume from the latest, with every RNG state;
- validation every ``val_every`` steps; progress a person sees: a bar on a terminal, and
  elsewhere (``dvc repro`` into a log, CI) one line at least every 30 s with the step,
  the loss and the time left (:class:`Progress`); rank-aware hooks: only rank 0
  calls them, so tracking, checkpointing and registration stay single-writer under DDP;
- multi-process data parallelism under ``torchrun``: :func:`distributed` joins the process
  group (NCCL on GPUs, gloo on CPUs), each rank takes its slice of every global batch
  (``batch_size`` is global), and the loss runs through ``DistributedDataParallel``, which
  averages the gradients, so N processes take the same steps as one on the whole batch.

Settings come in through arguments, never from files or the environment; the loop seeds
(and, on resume, restores) the global torch, numpy and Python RNGs itself.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipelines.io import atomic_path
from pipelines.settings.training import OptimConfig, TrainConfig

Batch = Mapping[str, Tensor]


class Objective(Protocol):
    """What a trainer learns: a differentiable loss on a batch, and validation metrics."""

    def loss(self, model: nn.Module, batch: Batch) -> Tensor: ...

    def validate(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]: ...


@dataclass
class Hooks:
    """Callbacks of the loop, called on rank 0 only. Each defaults to doing nothing."""

    on_step: Callable[[int, dict[str, float]], None] = lambda step, metrics: None
    on_validation: Callable[[int, dict[str, float]], None] = lambda step, metrics: None
    on_checkpoint: Callable[[int, Path], None] = lambda step, path: None


@dataclass
class TrainResult:
    step: int
    skipped_steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)  # validation metrics with "step"


# --------------------------------------------------------------------------- building blocks


def select_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: cuda requested but no CUDA device is available")
    return torch.device(name)


def distributed() -> tuple[int, int]:
    """``(rank, world size)``: under ``torchrun`` (``WORLD_SIZE`` > 1) joins the default
    process group, NCCL with one GPU per local rank when CUDA is available, gloo on CPUs;
    ``(0, 1)`` otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


class _ObjectiveLoss(nn.Module):
    """``objective.loss(model, batch)`` as a module's forward, so that DDP can wrap it."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: Batch) -> Tensor:
        return self.objective.loss(self.model, batch)


def _adamw(params: Any, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _heavyball(device: torch.device) -> Any:
    """heavyball, set up for ``device``: it compiles with max-autotune by default, minutes on
    a CPU for no gain, so compilation is off there; its warning that the learning rate
    changed between steps is the schedule doing its job."""
    import heavyball

    if device.type != "cuda":
        heavyball.utils.compile_mode = None
    warnings.filterwarnings("ignore", message="Learning rate changed between steps", module="heavyball")
    return heavyball


def _psgd(params: Any, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """heavyball's PSGD-Kron (LoLA's optimizer: ahead of Adam per step, paper table 4)."""
    heavyball = _heavyball(device)
    # A fixed initial preconditioner scale: heavyball's data-dependent estimate fails on
    # parameters whose first gradient is zero (e.g. behind a zero-initialised projection).
    # heavyball then recommends its heuristic: expected.
    warnings.filterwarnings("ignore", message=".*precond_init_scale.*", module="heavyball")
    return heavyball.PSGDKron(params, lr=cfg.lr, weight_decay=cfg.weight_decay, precond_init_scale=0.1)


def _muon(params: Any, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """heavyball's MuonAdamW: Muon (momentum orthogonalised by Newton-Schulz iterations,
    Jordan 2024) on every weight of 2 or more dimensions, AdamW on the others. Its learning
    rate is ~10x AdamW's (0.02 for the CPU autoencoder), and it learns more per step.

    heavyball runs the iterations in bfloat16, ~100x slower than float32 on a CPU without
    native bfloat16 (AVX2 only): one step took 1.8 s there against 0.09 s in float64. On a
    CPU the same iterations therefore run in float64 (heavyball's own code, which rounds to
    bfloat16 unless given float64), which costs the same on every CPU; on a GPU they stay
    in bfloat16 (``benchmarks/bench_autoencoder.py --only steps``)."""
    heavyball = _heavyball(device)
    if device.type == "cuda":
        return heavyball.MuonAdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return muon_float64(heavyball)(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def muon_float64(heavyball: Any) -> type[torch.optim.Optimizer]:
    """MuonAdamW with its orthogonalisation in float64: heavyball's chain of MuonAdamW
    (Nesterov EMA, then orthogonalised update, for 2+-dimensional weights; Adam for the
    rest) with the update cast to float64 around ``heavyball.utils.inplace_orthogonal_``."""
    chain, utils = heavyball.chainable, heavyball.utils

    @chain.needs_full_param
    @chain.no_state_no_multi_tensor
    def orthogonalize_update_float64(group: dict, update: Tensor, grad: Tensor, param: Tensor) -> Tensor:
        flat = update.flatten(1).double()  # (out, in * kernel)
        return utils.inplace_orthogonal_(flat, scale_mode="scale").to(update.dtype).reshape(update.shape)

    class MuonAdamWFloat64(chain.BaseOpt):
        def __init__(self, params: Any, lr: float = 0.02, weight_decay: float = 0.0, betas=(0.9, 0.99),
                     eps: float = 1e-8, warmup_steps: int = 0):
            params, defaults = chain._build_defaults({
                "params": params, "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                "warmup_steps": warmup_steps, "cautious_weight_decay": False, "multi_tensor": True,
                "storage_dtype": "float32", "mars": False, "caution": False, "mars_gamma": 0.0025,
                "beta2_scale": 0.8, "nesterov": True, "ecc": None, "param_ecc": None, "orig_shapes": None,
                "kwargs": {}})
            route = chain.route((lambda p: p.ndim >= 2, (chain.nesterov_ema, orthogonalize_update_float64)),
                                default=chain.scale_by_adam)
            super().__init__(params, defaults, chain.use_default, chain.use_default, chain.use_default, fns=(route,))

    return MuonAdamWFloat64


OPTIMIZERS: dict[str, Callable[[Any, OptimConfig, torch.device], torch.optim.Optimizer]] = {
    "adamw": _adamw,
    "psgd": _psgd,
    "muon": _muon,
}


def cosine_with_warmup(warmup: int, total: int, final: float = 0.0) -> Callable[[int], float]:
    r"""Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to
    ``final``: :math:`f(s) = final + (1 - final) (1 + \cos(\pi (s - w) / (T - w))) / 2`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class StepBatches(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Batches as a pure function of ``(seed, step)``: epoch ``e`` is a permutation of the
    dataset drawn from ``seed + e``, and each item gets its own seed for random transforms
    (see :class:`SeededItems`). Yields ``[(index, item_seed), ...]`` from ``start`` to
    ``stop``; under DDP each rank takes its own slice of every global batch. Nothing depends
    on iterator or worker state, so resumed runs and any ``num_workers`` see the same data."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1):
        if size < 1:
            raise ValueError("the training split has no samples")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size

    def indices(self, step: int) -> list[tuple[int, int]]:
        first = step * self.batch_size
        out: list[int] = []
        while len(out) < self.batch_size:
            epoch, offset = divmod(first + len(out), self.size)
            perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            out += perm[offset: offset + self.batch_size - len(out)].tolist()
        seeds = [self.seed * 2**32 + first + i for i in range(self.batch_size)]  # one per sample drawn
        return list(zip(out, seeds))[self.rank:: self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            yield self.indices(step)

    def __len__(self) -> int:
        return self.stop - self.start


class SeededItems(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is drawn with torch's RNG seeded by
    ``seed`` (random augmentations become a pure function of the batch position), leaving
    the caller's RNG untouched."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with seeded(seed):  # the CPU generator only: items are made on the CPU
            return self.dataset[index]


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch's RNG seeded by ``seed``, the caller's RNG restored after it.

    ``device=None``: the CPU generator alone is seeded and restored (``torch.manual_seed``
    would also queue CUDA seeds, slowly, and leak them). A ``device``: ``torch.manual_seed``
    (every generator), the CPU's and that device's, when it is a GPU, restored."""
    with torch.random.fork_rng(devices=[device] if device is not None and device.type == "cuda" else []):
        if device is None:
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        yield


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Every global RNG's state, in tensors and plain Python values (a checkpoint loads with
    ``weights_only=True``: NumPy's key array is stored as a list)."""
    numpy = np.random.get_state(legacy=False)
    numpy["state"] = {**numpy["state"], "key": numpy["state"]["key"].tolist()}
    state = {"torch": torch.get_rng_state(), "numpy": numpy, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state({**numpy, "state": {**numpy["state"], "key": np.asarray(numpy["state"]["key"], np.uint32)}})
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(directory: str | Path | None) -> Path | None:
    """The checkpoint with the highest step in ``directory`` (``step-000123.pt``), if any."""
    if directory is None or not Path(directory).is_dir():
        return None
    checkpoints = sorted(Path(directory).glob("step-*.pt"))
    return checkpoints[-1] if checkpoints else None


def _load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint ``path`` (tensors, numbers, strings and containers of them only: loaded
    with ``weights_only=True``, which unpickles no other object)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: not a weights-only checkpoint (written by an older latentops, or modified): "
                         f"delete it to train from the start ({str(error).splitlines()[0]})") from None


def checkpoint_extra(path: Path | None) -> dict[str, Any]:
    """The ``extra`` mapping stored with a checkpoint (e.g. the MLflow run id), or ``{}``."""
    if path is None:
        return {}
    return _load_checkpoint(path).get("extra", {})


def _to(batch: Batch, device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _grad_norm(model: nn.Module) -> Tensor:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class Progress:
    """Training progress for a person: a tqdm bar when ``bar`` is asked for and stderr is a
    terminal; otherwise (``--quiet``, ``dvc repro`` into a log, CI) one line on stderr every
    ``every`` seconds and at the last step,
    ``<label>: step 120/900, loss 0.0123, 0.31 s/step, 4 min 12 s left``. Silent when not
    ``enabled`` (ranks other than 0)."""

    def __init__(self, label: str, total: int, initial: int, enabled: bool = True, bar: bool = True,
                 every: float = 30.0):
        self.label, self.total, self.enabled, self.every = label, total, enabled, every
        self.lines = enabled and not (bar and sys.stderr.isatty())
        self.bar = tqdm(total=total, initial=initial, desc=label, unit="step", dynamic_ncols=True,
                        disable=not enabled or self.lines)
        self.began, self.first, self.last = time.perf_counter(), initial, time.perf_counter()

    def update(self, step: int, loss: float, skipped: int) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", skipped=skipped, refresh=False)
        self.bar.update()
        now = time.perf_counter()
        if not self.lines or (now - self.last < self.every and step < self.total):
            return
        self.last = now
        rate = (now - self.began) / max(1, step - self.first)  # seconds per step, this process
        print(f"{self.label}: step {step}/{self.total}, loss {loss:.4g}, {rate:.2f} s/step, "
              f"{_duration(rate * (self.total - step))} left" + (f", {skipped} skipped" if skipped else ""),
              file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


# --------------------------------------------------------------------------- the loop


def train(model: nn.Module, objective: Objective, train_data: Dataset, val_data: Dataset | None,
          cfg: TrainConfig, checkpoint_dir: str | Path | None = None, hooks: Hooks | None = None,
          extra: Mapping[str, Any] | None = None, rank: int = 0, world_size: int = 1,
          stop_at: int | None = None, progress: bool = True, label: str = "train") -> TrainResult:
    """Train ``model`` for ``cfg.steps`` optimizer steps, resuming from the latest
    checkpoint in ``checkpoint_dir`` if there is one.

    ``extra`` is stored in every checkpoint (the stage puts the MLflow run id there, so a
    restarted run continues the same run). ``stop_at`` ends early at that step (the
    schedule still spans ``cfg.steps``), as a kill after a checkpoint would. Rank 0 shows
    :class:`Progress` under ``label``: a bar with ``progress`` on a terminal, else lines.
    """
    hooks = hooks or Hooks()
    lead = rank == 0
    device = select_device(cfg.device)
    if world_size > 1 and cfg.batch_size % world_size:
        raise ValueError(f"train.batch_size: {cfg.batch_size} is not divisible by the {world_size} processes")
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    autocast = device.type == "cuda" and cfg.precision == "bf16"
    seed_everything(cfg.seed)
    model.to(device)
    optimizer = OPTIMIZERS[cfg.optim.optimizer](model.parameters(), cfg.optim, device)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(cfg.optim.warmup, cfg.steps))

    start, skipped, history, rng = 0, 0, [], None
    resume = latest_checkpoint(checkpoint_dir)
    if resume is not None:
        state = _load_checkpoint(resume, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, skipped, history, rng = state["step"], state["skipped_steps"], state["history"], state["rng"]

    stop = min(cfg.steps, stop_at if stop_at is not None else cfg.steps)
    sampler = StepBatches(len(train_data), cfg.batch_size, cfg.seed, start, stop, rank, world_size)
    loader = DataLoader(SeededItems(train_data), batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    val_batches = _validation_batches(val_data, cfg)
    batches = iter(loader)  # creating an iterator draws from the global RNG: before restoring it
    if rng is not None:
        _set_rng_state(rng)

    def save(step: int) -> None:
        if not (lead and checkpoint_dir):
            return
        path = Path(checkpoint_dir) / f"step-{step:09d}.pt"
        with atomic_path(path) as tmp:
            torch.save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "step": step, "skipped_steps": skipped,
                "history": history, "rng": _rng_state(), "extra": dict(extra or {}),
            }, tmp)
        for old in Path(checkpoint_dir).glob("step-*.pt"):
            if old != path:
                old.unlink()
        hooks.on_checkpoint(step, path)

    loss_of: nn.Module = _ObjectiveLoss(model, objective)
    if world_size > 1:
        loss_of = DistributedDataParallel(loss_of, device_ids=[device.index] if device.type == "cuda" else None)

    began = time.perf_counter()
    bar = Progress(label, cfg.steps, start, enabled=lead, bar=progress)
    step = start
    model.train()
    try:
        for batch in batches:
            batch = _to(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_of(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # under DDP: gradients averaged over the processes
            loss = loss.detach()
            if world_size > 1:  # the global batch's loss, for logging and the finiteness check
                dist.all_reduce(loss)
                loss /= world_size
            norm = _grad_norm(model)
            finite = bool(torch.isfinite(norm)) and bool(torch.isfinite(loss))
            if finite:
                if cfg.optim.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
            else:
                skipped += 1
            with warnings.catch_warnings():  # a skipped first step makes torch warn of the call order
                warnings.simplefilter("ignore", UserWarning)
                schedule.step()
            step += 1
            if lead and (step % cfg.log_every == 0 or step == stop):
                hooks.on_step(step, {"train/loss": float(loss.detach()), "train/grad_norm": float(norm),
                                     "train/lr": schedule.get_last_lr()[0], "train/skipped_steps": skipped})
            bar.update(step, float(loss), skipped)
            if val_batches and (step % cfg.val_every == 0 or step == cfg.steps):
                metrics = _validate(model, objective, val_batches, device, autocast)
                history.append({"step": step, **metrics})
                if lead:
                    hooks.on_validation(step, metrics)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save(step)
    finally:
        bar.close()
    if step < cfg.steps:
        save(step)  # stopped early on purpose: leave a checkpoint to resume from
    return TrainResult(step=step, skipped_steps=skipped, seconds=time.perf_counter() - began, history=history)


def _validation_batches(data: Dataset | None, cfg: TrainConfig) -> list[Batch]:
    """A fixed, evenly spread subset of the validation split, loaded once."""
    if data is None or cfg.val_batches == 0 or len(data) == 0:
        return []
    count = min(len(data), cfg.val_batches * cfg.batch_size)
    indices = np.linspace(0, len(data) - 1, count).round().astype(int).tolist()
    loader = DataLoader(torch.utils.data.Subset(data, indices), batch_size=cfg.batch_size, shuffle=False)
    return list(loader)


def _validate(model: nn.Module, objective: Objective, batches: list[Batch], device: torch.device,
              autocast: bool) -> dict[str, float]:
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        metrics = objective.validate(model, [_to(b, device) for b in batches])
    model.train()
    return metrics
