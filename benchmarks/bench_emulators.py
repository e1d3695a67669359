"""Benchmark: wall time of one full 100-step trajectory, decoded to physical fields, for the
latent neural solver, latent diffusion (16 steps; 1 and 16 members) and the pixel neural
solver, next to Clawpack producing the same trajectory, at 64^2 and 128^2, measured side
by side in one run on this machine. Prints each time and its ratio to Clawpack, the cost of one solver call, and the issue's two
targets (latent-only solver rollout at least 100x faster than Clawpack at the largest
resolution; 16 diffusion members at most 4x one member's time).

The emulators have the architectures of params.yaml (``train_autoencoder.model``,
``train_emulator.latent`` / ``.pixel``) with freshly initialised weights: the cost of a
forward pass does not depend on the weight values. Latent-only times (no decoding) are
printed beside the decoded ones, since on a CPU the decoder dominates.

    .venv/bin/python benchmarks/bench_emulators.py [--resolutions 64 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from models.autoencoder import Autoencoder
from models.forecaster import Forecaster
from models.normalizer import FieldNormalizer
from pipelines.data import euler
from pipelines.recipes import autoencoder as autoencoder_recipe
from pipelines.recipes import emulator as emulator_recipe
from pipelines.settings import load_section
from pipelines.settings.autoencoder import TrainAutoencoderConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import TrainEmulatorConfig
from pipelines.settings.simulate import SimulateConfig
from pipelines.stages import simulate

REPO = Path(__file__).resolve().parents[1]
CHANNELS, COND = 5, 13  # Euler fields; gamma + boundary one-hot


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forecasters(params: Path) -> dict[str, Forecaster]:
    ae_cfg = load_section(TrainAutoencoderConfig, "train_autoencoder", params)
    cfg = load_section(TrainEmulatorConfig, "train_emulator", params)
    data = load_section(DataConfig, "data", params)
    c = ae_cfg.latent_channels[0]
    autoencoder = autoencoder_recipe.build(ae_cfg, CHANNELS, c).eval()
    normalizer = FieldNormalizer(tuple(f"f{i}" for i in range(CHANNELS)), torch.zeros(CHANNELS), torch.ones(CHANNELS),
                                 torch.zeros(CHANNELS, dtype=torch.bool))
    window, stride = data.context + data.horizon, data.stride

    def build(kind: str, channels: int, model_cfg, ae: Autoencoder | None) -> Forecaster:
        emulator, arguments = emulator_recipe.build(kind, channels, COND, model_cfg, seed=0)
        return Forecaster(kind, emulator.eval(), arguments, normalizer, ae, window, stride, cfg.overlap, cfg.sampler,
                          [f"p{i}" for i in range(COND)])

    return {
        f"latent solver (c={c})": build("solver", c, cfg.latent, autoencoder),
        f"latent diffusion (c={c}, {cfg.sampler.steps} steps)": build("diffusion", c, cfg.latent, autoencoder),
        f"pixel solver (patch {cfg.pixel.patch})": build("pixel_solver", CHANNELS, cfg.pixel, None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=2, help="best of N (default: %(default)s)")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    sim = load_section(SimulateConfig, "simulate", args.params)
    models = forecasters(Path(args.params))
    steps = sim.n_steps - 1
    print(f"one {steps}-step trajectory, {torch.get_num_threads()} torch threads; ratio = Clawpack time / emulator time")
    for n in args.resolutions:
        cfg = dataclasses.replace(sim, resolution=n)
        primitive = simulate.draw_quadrants(np.random.default_rng(0), cfg)
        clawpack = best_of(args.repeats, lambda: euler.solve(euler.conserved(primitive, 1.4), 1.4, "open", cfg.dt, steps, cfg.cfl))
        print(f"\n{n}^2: Clawpack {clawpack:.2f} s")
        print(f"  {'emulator':38s} {'members':>7s} {'decoded s':>10s} {'ratio':>7s} {'latent-only s':>14s} {'ratio':>7s}")
        initial = torch.rand(1, CHANNELS, 1, n, n) + 0.5  # (B, C, K, H, W)
        cond = torch.zeros(1, COND)
        latent_times = {}
        for name, forecaster in models.items():
            horizon = steps // forecaster.stride
            for members in ([1, 16] if forecaster.emulator.stochastic else [1]):
                with torch.inference_mode():
                    decoded = best_of(args.repeats, lambda: forecaster.forecast(initial, cond, horizon, members, seed=0))
                    latent = best_of(args.repeats, lambda: forecaster.forecast(initial, cond, horizon, members, seed=0,
                                                                              decode=False))
                latent_times[forecaster.kind, members] = latent
                print(f"  {name:38s} {members:7d} {decoded:10.2f} {clawpack / decoded:7.1f} {latent:14.2f} "
                      f"{clawpack / latent:7.1f}")
        solver = next(f for f in models.values() if f.kind == "solver")
        z = solver.to_space(initial)  # (1, c, 1, h, w)
        window = torch.zeros(1, z.shape[1], solver.window, *z.shape[-2:])
        mask = torch.zeros(1, solver.window, dtype=torch.bool)
        mask[:, 0] = True
        with torch.inference_mode():
            call = best_of(max(args.repeats, 20), lambda: solver.emulator.sample(window, mask, cond))
        print(f"  one latent solver call: {window[0, 0].numel()} tokens, {1e3 * call:.1f} ms")
        print(f"  targets at {n}^2: latent-only solver rollout {clawpack / latent_times['solver', 1]:.0f}x faster than "
              f"Clawpack (>= 100); 16 diffusion members {latent_times['diffusion', 16] / latent_times['diffusion', 1]:.1f}x "
              "one member's time (<= 4)")


if __name__ == "__main__":
    main()
