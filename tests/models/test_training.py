"""The shared training loop: exact resume after a kill, non-finite step skipping, schedule,
optimizer mapping, DDP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from pipelines.io import OutputError
from pipelines.recipes.training import OPTIMIZERS, Hooks, StepBatches, cosine_with_warmup, latest_checkpoint, train
from pipelines.settings.training import OptimConfig, TrainConfig
from tests.conftest import REPO, configured, tool_env
from tests.models.resume_job import make

STEPS = 8
#: The autoencoder's optimizer in params.yaml: Muon at 0.02.
OPTIM = configured(OptimConfig, "train_autoencoder.train.optim")


def _short(steps: int, batch_size: int, lr: float) -> TrainConfig:
    """``steps`` steps of AdamW at ``lr`` without warm-up, validation or checkpoints, on the CPU."""
    return configured(TrainConfig, "train_emulator.train", steps=steps, batch_size=batch_size, seed=0, device="cpu",
                      val_batches=0, checkpoint_every=0,
                      optim=configured(OptimConfig, "train_emulator.train.optim", lr=lr, warmup=0))


@pytest.mark.parametrize("optimizer", ["adamw", "psgd", "muon"])
def test_killed_and_resumed_equals_straight(tmp_path, optimizer):
    model, objective, data, cfg = make(optimizer, STEPS)
    straight = train(model, objective, data, data, cfg, progress=False)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    directory = tmp_path / "checkpoints"
    job = subprocess.run([sys.executable, "-m", "tests.models.resume_job", str(directory), optimizer, str(STEPS)],
                         cwd=REPO, env=tool_env(), capture_output=True, text=True)
    assert job.returncode == -signal.SIGKILL, job.stderr
    checkpoint = latest_checkpoint(directory)
    assert checkpoint is not None and checkpoint.name == f"step-{STEPS // 2:09d}.pt"

    model, objective, data, cfg = make(optimizer, STEPS)  # a fresh process would start like this
    resumed = train(model, objective, data, data, cfg, directory, progress=False)
    assert resumed.step == straight.step == STEPS
    for name, value in model.state_dict().items():
        assert torch.allclose(value, expected[name], atol=1e-5, rtol=0), name
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history]
    assert resumed.history[-1]["val/loss"] == pytest.approx(straight.history[-1]["val/loss"], abs=1e-5)


class PoisonedImages(torch.utils.data.Dataset):
    """Item 0 is NaN: any batch holding it gives non-finite gradients."""

    def __init__(self):
        self.images = torch.randn(16, 2, 8, 8, generator=torch.Generator().manual_seed(0))
        self.images[0] = float("nan")

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"x": self.images[index]}


def test_non_finite_gradient_skips_the_step_without_corrupting_weights():
    model, objective, _, cfg = make("adamw", 1)
    data = PoisonedImages()
    cfg = _short(steps=4, batch_size=16, lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logged = []
    result = train(model, objective, data, None, cfg, hooks=Hooks(on_step=lambda s, m: logged.append(m)),
                   progress=False)
    assert result.skipped_steps == 4  # every batch holds item 0
    assert logged[-1]["train/skipped_steps"] == 4
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(value, before[name]), name


def test_skipping_only_the_bad_batches():
    model, objective, _, _ = make("adamw", 1)
    data = PoisonedImages()
    cfg = _short(steps=8, batch_size=4, lr=1e-2)
    bad = sum(any(i == 0 for i, _ in StepBatches(16, 4, 0, 0, 8).indices(s)) for s in range(8))
    result = train(model, objective, data, None, cfg, progress=False)
    assert result.skipped_steps == bad == 2  # two epochs of 4 batches: item 0 once per epoch
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_step_batches_cover_each_epoch_once_and_depend_only_on_the_step():
    sampler = StepBatches(10, 5, seed=1, start=0, stop=4)
    batches = [[i for i, _ in b] for b in sampler]
    assert sorted(batches[0] + batches[1]) == list(range(10))
    assert sorted(batches[2] + batches[3]) == list(range(10))
    assert [b for b in StepBatches(10, 5, seed=1, start=2, stop=4)] == list(sampler)[2:]
    halves = [StepBatches(10, 4, 1, 0, 1, rank=r, world_size=2).indices(0) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == sorted(StepBatches(10, 4, 1, 0, 1).indices(0))


def test_cosine_schedule_with_warmup():
    f = cosine_with_warmup(warmup=10, total=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-12)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_optimizers_come_from_a_mapping():
    assert set(OPTIMIZERS) == {"adamw", "psgd", "muon"}
    params = [torch.nn.Parameter(torch.randn(4, 4))]
    cpu = torch.device("cpu")
    assert type(OPTIMIZERS["adamw"](params, OPTIM, cpu)).__name__ == "AdamW"
    assert type(OPTIMIZERS["psgd"](params, OPTIM, cpu)).__name__ == "PSGDKron"
    assert type(OPTIMIZERS["muon"](params, OPTIM, cpu)).__name__ == "MuonAdamWFloat64"
    import heavyball

    assert heavyball.utils.compile_mode is None  # no torch.compile on CPU


def test_cpu_muon_takes_heavyballs_steps_in_float64():
    """The CPU Muon (orthogonalisation in float64) moves the weights as heavyball's
    MuonAdamW (in bfloat16) does, up to bfloat16 rounding, for matrices, convolution kernels
    and vectors (AdamW's part)."""
    import heavyball

    torch.manual_seed(0)
    shapes = [(16, 24), (8, 4, 3, 3), (16,)]
    start = [torch.randn(shape) for shape in shapes]
    grads = [torch.randn(shape) for shape in shapes]
    moves = []
    for make in (heavyball.MuonAdamW, OPTIMIZERS["muon"]):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        optimizer = make(params, lr=0.02) if make is heavyball.MuonAdamW else make(params, OPTIM,
                                                                                  torch.device("cpu"))
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
        moves.append([(p.detach() - s).flatten() for p, s in zip(params, start)])
    for reference, ours in zip(*moves):
        assert ours.norm() > 0
        assert torch.nn.functional.cosine_similarity(reference, ours, dim=0) > 0.98
        assert (ours.norm() / reference.norm() - 1).abs() < 0.05


def test_two_process_gloo_ddp_matches_one_process_on_the_same_global_batch(tmp_path):
    """``torchrun --nproc-per-node 2`` (gloo, each rank half of every batch of 8) against one
    process on the whole batch: the same loss curve to 1e-5 and the same weights to 1e-4 (float
    sums in another order; Adam rescales the near-zero gradients of attention key biases,
    which amplifies that noise to ~2e-5 there); hooks run on rank 0 only."""
    single, double = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "tests.models.ddp_job", str(single)], cwd=REPO, env=tool_env(), check=True,
                   capture_output=True)
    job = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2",
                          "-m", "tests.models.ddp_job", str(double)], cwd=REPO, env=tool_env(), capture_output=True,
                         text=True)
    assert job.returncode == 0, job.stderr[-3000:]
    one = json.loads(Path(f"{single}.rank0.json").read_text())
    two, worker = (json.loads(Path(f"{double}.rank{r}.json").read_text()) for r in (0, 1))
    assert one["world_size"] == 1 and two["world_size"] == 2 and two["steps"] == one["steps"] == 8
    assert worker["calls"] == 0 and two["calls"] == one["calls"] == 8  # only rank 0 logs
    assert list(two["losses"]) == list(one["losses"])
    for step, loss in one["losses"].items():
        assert two["losses"][step] == pytest.approx(loss, abs=1e-5), step
    expected, got = torch.load(f"{single}.pt"), torch.load(f"{double}.pt")
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-4, rtol=0), name


def test_progress_lines_give_step_loss_and_time_left(capsys):
    """Without a terminal (dvc repro, CI) training prints lines, at least the last step's,
    with the step, the loss and the time left; every ``every`` seconds in between."""
    import re

    from pipelines.recipes.training import Progress

    model, objective, data, cfg = make("adamw", 1)
    cfg = _short(steps=3, batch_size=8, lr=1e-3)
    train(model, objective, data, None, cfg, progress=False, label="train_emulator solver_c16")
    lines = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(r"train_emulator solver_c16: step 3/3, loss [0-9.e+-]+, [0-9.]+ s/step, 0 s left", lines[-1])
    progress = Progress("x", total=4, initial=0, bar=False, every=0.0)
    for step in range(1, 5):
        progress.update(step, 0.5, 0)
    assert len(capsys.readouterr().err.strip().splitlines()) == 4
    silent = Progress("x", total=4, initial=0, enabled=False, every=0.0)  # ranks other than 0
    silent.update(4, 0.5, 0)
    assert capsys.readouterr().err == ""


def test_a_full_disk_fails_the_checkpoint_clearly_and_keeps_the_previous_one(tmp_path, small_filesystem):
    """The disk fills up at the second checkpoint: a clear error naming it, the first
    checkpoint intact (it resumes), no partial file left."""
    model, objective, data, cfg = make("adamw", 6, checkpoint_every=2)
    train(model, objective, data, data, cfg, tmp_path / "sized", stop_at=2, progress=False)
    size = latest_checkpoint(tmp_path / "sized").stat().st_size
    disk = small_filesystem("disk", size * 3 // 2)  # room for one checkpoint, not for a second beside it
    model, objective, data, cfg = make("adamw", 6, checkpoint_every=2)
    with pytest.raises(OutputError) as full:
        train(model, objective, data, data, cfg, disk, progress=False)
    message = str(full.value)
    assert f"{disk / f'step-{4:09d}.pt'}: not written, the file system is full" in message
    assert "nothing was written as step-000000004.pt" in message
    assert sorted(p.name for p in disk.iterdir()) == [f"step-{2:09d}.pt"]
    assert torch.load(disk / f"step-{2:09d}.pt", map_location="cpu", weights_only=False)["step"] == 2  # it loads
