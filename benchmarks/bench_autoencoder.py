"""Benchmarks of the autoencoder stage, each measured side by side in one run:

0. step times: seconds per training step of the configured autoencoder, split into
   forward+backward and optimizer step, for each optimizer (Muon with its orthogonalisation
   in float64, the CPU default, and in bfloat16, heavyball's own), on this CPU and again in a
   subprocess under an emulated AVX2-only CPU (``ATEN_CPU_CAPABILITY=avx2
   ONEDNN_MAX_CPU_ISA=AVX2``, where a bfloat16 matmul has no native instructions); the
   matmul rate of each dtype is printed first, to show the emulation took;
1. optimizers: validation loss of PSGD (heavyball PSGDKron) and Muon (heavyball MuonAdamW)
   vs AdamW after the same number of steps, each at its own learning rate, and their wall
   time (the paper reports PSGD ahead of Adam at equal steps);
2. tracking overhead: steps per second with full MLflow tracking (async step metrics,
   system metrics) vs tracking off (target: under 3% slower);
3. emulator-style batches (windows of L latent states, stride s) read from the latent cache
   vs encoded on the fly from pixels.

    .venv/bin/python benchmarks/bench_autoencoder.py [--steps 100] [--lr LR] [--only steps|optimizers|tracking|cache]

Uses data.root and train_autoencoder from params.yaml (run `dvc repro simulate` first).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.autoencoder import Autoencoder, LoadedAutoencoder
from pipelines.data.latent import read_cache
from pipelines.data.windows import WellWindows, trajectories
from pipelines.recipes.autoencoder import ReconstructionObjective
from pipelines.recipes.training import OPTIMIZERS, Hooks, _heavyball, train
from pipelines.settings import load_section
from pipelines.settings.autoencoder import TrainAutoencoderConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.stages.cache_latents import encode_split
from pipelines.stages.runner import tracking_hooks
from pipelines.tracking import runs as tracking

REPO = Path(__file__).resolve().parents[1]


def setup(steps: int, lr: float | None = None) -> tuple[TrainAutoencoderConfig, DataConfig, WellWindows, WellWindows]:
    cfg = load_section(TrainAutoencoderConfig, "train_autoencoder", REPO / "params.yaml")
    optim = dataclasses.replace(cfg.train.optim, lr=lr or cfg.train.optim.lr)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps, val_every=steps,
                                                             checkpoint_every=0, optim=optim))
    data = load_section(DataConfig, "data", REPO / "params.yaml")
    data = dataclasses.replace(data, root=str(REPO / data.root))
    train_set = WellWindows(data.root, "train", 1, 0, 1, data.log_fields, cache=True)
    valid_set = WellWindows(data.root, "valid", 1, 0, 1, data.log_fields, cache=True)
    return cfg, data, train_set, valid_set


def model_for(cfg: TrainAutoencoderConfig, channels: int, latent_channels: int) -> Autoencoder:
    torch.manual_seed(cfg.train.seed)
    m = cfg.model
    return Autoencoder(channels, latent_channels, m.patch, m.widths, m.blocks, m.attention_heads, m.dropout, m.bound)


#: Learning rate of each optimizer where it is not the configured one (measured on the CPU
#: autoencoder: AdamW diverges at 4e-3, Muon is best near 2e-2).
LEARNING_RATES = {"adamw": 2e-3, "psgd": 2e-3, "muon": 2e-2}


#: The environment of an AVX2-only CPU: ATen's kernels and oneDNN limited to AVX2.
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def matmul_rates(size: int = 512, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a ``size``-square matmul per dtype."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        rates[str(dtype).removeprefix("torch.")] = 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9
    return rates


def step_times(steps: int, lr: float | None = None) -> dict[str, tuple[float, float]]:
    """``{optimizer: (forward+backward s, optimizer s)}`` per step, median over ``steps``
    steps after two warm-up steps, on the configured autoencoder and batch size."""
    cfg, _, train_set, _ = setup(1)
    objective = ReconstructionObjective(cfg.loss, train_set.normalizer)
    batch = {"x": torch.stack([train_set[i]["x"] for i in range(cfg.train.batch_size)])}
    cpu = torch.device("cpu")
    makers = {"adamw": lambda p: OPTIMIZERS["adamw"](p, dataclasses.replace(cfg.train.optim, lr=2e-3), cpu),
              "muon (float64, CPU default)": lambda p: OPTIMIZERS["muon"](p, cfg.train.optim, cpu),
              "muon (bfloat16, heavyball)": lambda p: _heavyball(cpu).MuonAdamW(p, lr=cfg.train.optim.lr)}
    times = {}
    for name, make in makers.items():
        model = model_for(cfg, len(train_set.channels), cfg.latent_channels[0])
        optimizer = make(model.parameters())
        passes, updates = [], []
        for _ in range(steps + 2):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            objective.loss(model, batch).backward()
            middle = time.perf_counter()
            optimizer.step()
            passes.append(middle - start)
            updates.append(time.perf_counter() - middle)
        times[name] = (float(np.median(passes[2:])), float(np.median(updates[2:])))
    return times


def steps_native_and_avx2(steps: int, lr: float | None = None) -> None:
    """Step times here and, in a subprocess, under the AVX2 emulation, side by side."""
    if os.environ.get("BENCH_CHILD"):  # the emulated run: report as JSON for the parent
        print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "rates": matmul_rates(),
                          "times": step_times(steps)}))
        return
    native = {"capability": torch.backends.cpu.get_cpu_capability(), "rates": matmul_rates(), "times": step_times(steps)}
    child = subprocess.run([sys.executable, __file__, "--only", "steps", "--steps", str(steps)], check=True,
                           capture_output=True, text=True, env={**os.environ, **AVX2, "BENCH_CHILD": "1"})
    emulated = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"torch threads: {torch.get_num_threads()}; batch {setup(1)[0].train.batch_size} states")
    for label, run in (("native", native), ("AVX2 emulated", emulated)):
        rates = ", ".join(f"{k} {v:.1f}" for k, v in run["rates"].items())
        print(f"{label:>13} ({run['capability']}): 512^2 matmul GFLOP/s: {rates}")
    print(f"{'optimizer':<28} {'native fwd+bwd':>14} {'optimizer':>9} {'AVX2 fwd+bwd':>13} {'optimizer':>9} "
          f"{'AVX2/native step':>16}")
    for name, (forward, update) in native["times"].items():
        e_forward, e_update = emulated["times"][name]
        print(f"{name:<28} {forward:>13.3f}s {update:>8.3f}s {e_forward:>12.3f}s {e_update:>8.3f}s "
              f"{(e_forward + e_update) / (forward + update):>15.2f}x")


def optimizers(steps: int, lr: float | None = None) -> None:
    cfg, _, train_set, valid_set = setup(steps)
    c = cfg.latent_channels[0]
    results = {}
    for name, default_lr in LEARNING_RATES.items():
        rate = lr or (cfg.train.optim.lr if name == cfg.train.optim.optimizer else default_lr)
        run_cfg = dataclasses.replace(cfg.train, optim=dataclasses.replace(cfg.train.optim, optimizer=name, lr=rate))
        model = model_for(cfg, len(train_set.channels), c)
        result = train(model, ReconstructionObjective(cfg.loss, train_set.normalizer), train_set, valid_set,
                       run_cfg, progress=False)
        results[name] = (result.history[-1]["val/loss"], result.history[-1]["val/vrmse"], result.seconds)
        print(f"{name:>5}: {steps} steps at lr {rate:g}, validation loss {results[name][0]:.4f}, VRMSE {results[name][1]:.4f}, "
              f"{results[name][2]:.1f} s")
    al, av, as_ = results["adamw"]
    for name in ("psgd", "muon"):
        nl, nv, ns = results[name]
        print(f"{name} / adamw at equal steps: loss ratio {nl / al:.3f}, VRMSE ratio {nv / av:.3f} "
              f"(< 1: {name} ahead), wall-time ratio {ns / as_:.2f}")


def tracking_overhead(steps: int, lr: float | None = None) -> None:
    cfg, data, train_set, valid_set = setup(steps)
    c = cfg.latent_channels[0]
    objective = ReconstructionObjective(cfg.loss, train_set.normalizer)
    for i in range(steps):  # fill the in-memory cache first: both runs then read the same way
        train_set[i % len(train_set)]
    timings = {}
    with tempfile.TemporaryDirectory() as scratch:
        cwd = os.getcwd()
        os.chdir(scratch)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        try:
            for mode in ("off", "full", "off ", "full "):  # interleaved, twice each
                model = model_for(cfg, len(train_set.channels), c)
                if mode.strip() == "off":
                    result = train(model, objective, train_set, valid_set, cfg.train, hooks=Hooks(), progress=False)
                else:
                    with tracking.start_run("benchmark", "bench", {"train_autoencoder": cfg}, data.root):
                        result = train(model, objective, train_set, valid_set, cfg.train,
                                       hooks=tracking_hooks(), progress=False)
                timings.setdefault(mode.strip(), []).append(steps / result.seconds)
        finally:
            os.chdir(cwd)
    off, full = max(timings["off"]), max(timings["full"])
    print(f"tracking off: {off:.2f} steps/s; full tracking: {full:.2f} steps/s (best of 2 each)")
    print(f"full tracking is {100 * (off / full - 1):+.1f}% slower (target: under 3%)")


def cache_throughput(batches: int, lr: float | None = None) -> None:
    cfg, data, _, _ = setup(1)
    emulator = load_section(DataConfig, "data", REPO / "params.yaml")
    window, stride, batch_size = emulator.context + emulator.horizon, emulator.stride, 16
    pixels = WellWindows(data.root, "test", window, 0, stride, data.log_fields)
    model = model_for(cfg, len(pixels.channels), cfg.latent_channels[0]).eval()
    autoencoder = LoadedAutoencoder(model, pixels.normalizer, "untrained", 0, "")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "test.h5"
        whole = trajectories(data, "test")
        cache_cfg = load_section(CacheLatentsConfig, "cache_latents", REPO / "params.yaml")
        encode_split(path, whole, autoencoder, cache_cfg, {}, [None] * len(whole), "cache", False)
        g = torch.Generator().manual_seed(0)

        start = time.perf_counter()
        latents, _, _ = read_cache(path)
        latents = torch.from_numpy(latents)  # (N, T, c, h, w)
        n, t = latents.shape[:2]
        for _ in range(batches):
            traj = torch.randint(n, (batch_size,), generator=g)
            t0 = torch.randint(t - (window - 1) * stride, (batch_size,), generator=g)
            steps = t0[:, None] + stride * torch.arange(window)  # (B, L)
            batch = latents[traj[:, None], steps]  # (B, L, c, h, w)
        cached = (time.perf_counter() - start) / batches

        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(batches):
                index = torch.randint(len(pixels), (batch_size,), generator=g).tolist()
                x = torch.stack([pixels[i]["x"] for i in index])  # (B, C, L, H, W)
                frames = x.movedim(2, 1).flatten(0, 1)  # (B L, C, H, W)
                batch = model.encode(frames).unflatten(0, (batch_size, window))  # (B, L, c, h, w)
        on_the_fly = (time.perf_counter() - start) / batches
    print(f"emulator batches of {batch_size} windows (L={window}, stride {stride}): latent cache {1 / cached:.1f} "
          f"batches/s, encoding on the fly {1 / on_the_fly:.1f} batches/s: cache {on_the_fly / cached:.0f}x faster "
          f"(cache read included, shape {tuple(batch.shape)})")


BENCHMARKS = {"steps": steps_native_and_avx2, "optimizers": optimizers, "tracking": tracking_overhead, "cache": cache_throughput}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="training steps per run (default: %(default)s)")
    parser.add_argument("--lr", type=float, help="learning rate of every optimizer (default: params.yaml's for the configured one, LEARNING_RATES for the others)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run one benchmark")
    args = parser.parse_args()
    for name, bench in BENCHMARKS.items():
        if args.only in (None, name):
            print(f"== {name}")
            bench(args.steps, args.lr)


if __name__ == "__main__":
    main()
