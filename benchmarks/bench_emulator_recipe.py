"""Benchmark: the emulator recipe, one ablation at a time, measured side by side in one run.

Every variant trains one latent emulator (``--kind``, on the latent cache of ``--latent-channels``;
run ``dvc repro cache_latents@16`` first) with the one training loop, from params.yaml's
``train_emulator`` with one change, then rolls it out on ``--trajectories`` validation
trajectories and prints the training time, VRMSE of the ensemble mean by lead window, and
each window's ratio to the first variant (the configured recipe), beside persistence and the
conserved mean scored on the same trajectories.

Variants (``--variants`` picks some; default all):

- ``configured``: params.yaml as it is;
- ``steps/4``, ``steps*2``, ``steps*4``: the training budget (accuracy against steps and time);
- ``batch*2``, ``width*3/2``: where else the time could go;
- ``muon``: the transformer trained with Muon (float64 orthogonalisation) at lr 0.01;
- ``no-flip``: every training mask forward in time;
- ``rollout-task-only``: forward masks with one known state (the rollouts' task), no random
  context sizes;
- ``no-absolute-position``: RoPE alone (the absolute embedding zeroed and frozen);
- ``diffusion-loss-on-known``: (diffusion) azula's loss over every state, the known ones
  included, as before the loss was masked;
- ``trajectories/4``, ``trajectories/2``: the first quarter or half of the training
  trajectories (skill against data, to extrapolate to more);
- ``augmented``: the train cache plus ``train_augmented.h5`` (flipped / permuted / rolled
  copies; ``latentops --set cache_latents.augmented_copies=3 cache-latents --latent-channels
  16`` writes it).

Besides VRMSE it prints the fair CRPS by window, and for each variant its difference to the
best trivial baseline of each window (persistence, conserved mean, climatology; below zero
is skill), so skill per second of training reads off one table.

    .venv/bin/python benchmarks/bench_emulator_recipe.py [--kind solver] [--latent-channels 16]
        [--variants configured steps/4 ...] [--trajectories 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from models.forecaster import Forecaster
from pipelines import layout
from pipelines.data.latent import TrajectoryWindows
from pipelines.data.windows import trajectories
from pipelines.evaluation.scoring import (Climatology, ConservedMean, Persistence, Truth, score_baseline,
                                          score_forecaster)
from pipelines.recipes import artifact
from pipelines.recipes.emulator import build, objective
from pipelines.recipes.training import train
from pipelines.settings import load_section
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import TrainEmulatorConfig
from pipelines.settings.latents import CacheLatentsConfig

REPO = Path(__file__).resolve().parents[1]
WINDOWS = [[1, 20], [21, 60], [61, 100]]


def _train(cfg: TrainEmulatorConfig, **changes: object) -> TrainEmulatorConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))


def _optim(cfg: TrainEmulatorConfig, **changes: object) -> TrainEmulatorConfig:
    return _train(cfg, optim=dataclasses.replace(cfg.train.optim, **changes))


def _no_absolute_position(model: nn.Module) -> None:
    position = model.backbone.net.position.proj
    nn.init.zeros_(position.weight)
    nn.init.zeros_(position.bias)
    position.requires_grad_(False)


def _loss_on_known_states(model: nn.Module) -> None:
    def loss(x: Tensor, mask: Tensor, cond: Tensor) -> Tensor:
        t = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        return model.denoiser.loss(x, t, mask=mask, known=x, cond=cond).mean()

    model.loss = loss


#: Variants of the training data: ``name: (trajectories kept (a fraction), with the augmented copies)``.
DATA: dict[str, tuple[float, bool]] = {"trajectories/4": (0.25, False), "trajectories/2": (0.5, False),
                                       "augmented": (1.0, True)}

#: ``name: (config change, model change)``.
VARIANTS: dict[str, tuple[Callable[[TrainEmulatorConfig], TrainEmulatorConfig], Callable[[nn.Module], None]]] = {
    "configured": (lambda c: c, lambda m: None),
    "steps/4": (lambda c: _train(c, steps=c.train.steps // 4), lambda m: None),
    "steps*2": (lambda c: _train(c, steps=c.train.steps * 2), lambda m: None),
    "steps*4": (lambda c: _train(c, steps=c.train.steps * 4), lambda m: None),
    "batch*2": (lambda c: _train(c, batch_size=c.train.batch_size * 2), lambda m: None),
    "width*3/2": (lambda c: dataclasses.replace(c, latent=dataclasses.replace(c.latent, width=c.latent.width * 3 // 2)),
                  lambda m: None),
    "muon": (lambda c: _optim(c, optimizer="muon", lr=0.01), lambda m: None),
    "no-flip": (lambda c: dataclasses.replace(c, flip=0.0), lambda m: None),
    "rollout-task-only": (lambda c: dataclasses.replace(c, flip=0.0, context_rate=1e-3), lambda m: None),
    "no-absolute-position": (lambda c: c, _no_absolute_position),
    "diffusion-loss-on-known": (lambda c: c, _loss_on_known_states),
} | {name: (lambda c: c, lambda m: None) for name in DATA}


def _train_set(directory: Path, name: str, window: int, stride: int) -> TrajectoryWindows:
    """The training windows of variant ``name`` (:data:`DATA`; all of ``train.h5`` otherwise)."""
    share, augmented = DATA.get(name, (1.0, False))
    extra = directory / "train_augmented.h5"
    if augmented and not extra.is_file():
        raise SystemExit(f"{extra} is missing: run latentops --set cache_latents.augmented_copies=3 cache-latents "
                         f"--latent-channels N first")
    full = TrajectoryWindows.from_caches([directory / "train.h5", *([extra] if augmented else [])], window, stride)
    keep = max(1, round(share * full.states.shape[0]))
    return TrajectoryWindows(full.states[:keep], full.cond[:keep], window, stride)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="solver", choices=["solver", "diffusion"])
    parser.add_argument("--latent-channels", type=int, default=16)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--trajectories", type=int, default=8, help="validation trajectories scored")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    base = load_section(TrainEmulatorConfig, "train_emulator", args.params)
    data = load_section(DataConfig, "data", args.params)
    data = dataclasses.replace(data, root=str(REPO / data.root))
    window, stride = data.context + data.horizon, data.stride
    scoring = trajectories(data, "valid")
    dataset = scoring.dataset_name
    autoencoder = artifact.load_autoencoder(REPO / layout.model_dir(layout.autoencoder(args.latent_channels)))
    caches = REPO / layout.latent_cache(load_section(CacheLatentsConfig, "cache_latents", args.params).output,
                                        args.latent_channels)
    truth = Truth.from_windows(scoring, args.trajectories, data.context)
    score_cfg = dataclasses.replace(base.score, trajectories=args.trajectories, lead_windows=tuple(map(tuple, WINDOWS)))
    labels = [f"{a}-{b}" for a, b in WINDOWS]
    names = [f"{metric}_{w}" for metric in ("vrmse", "crps") for w in labels]
    best: dict[str, float] = {}

    def row(name: str, seconds: float, summary: dict[str, float], reference: list[float] | None) -> list[float]:
        values = [summary[n] for n in names]
        ratios = "" if reference is None else "  ratio " + " ".join(f"{v / r:.2f}" for v, r in zip(values, reference))
        skill = "" if not best else "  skill " + " ".join(f"{summary[n] - best[n]:+.3f}" for n in names)
        print(f"{name:<26} {seconds:>6.0f} s  " + " ".join(f"{v:>7.3f}" for v in values) + ratios + skill, flush=True)
        return values

    print(f"{args.kind} on c={args.latent_channels} latents, {args.trajectories} validation trajectories; VRMSE of the "
          f"ensemble mean (corrected to an infinite ensemble), then fair CRPS, by lead window {' '.join(labels)}; "
          "ratio: to the first variant; skill: minus the best baseline (below 0: skill)")
    baselines = {b.kind: score_baseline(b, truth, score_cfg, stride).summary(WINDOWS)
                 for b in (Persistence(), ConservedMean(), Climatology(trajectories(data, "train")))}
    for kind, summary in baselines.items():
        row(kind, 0.0, summary, None)
    best = {n: min(summary[n] for summary in baselines.values()) for n in names}
    reference = None
    for name in args.variants:
        if name == "diffusion-loss-on-known" and args.kind != "diffusion":
            continue
        change_cfg, change_model = VARIANTS[name]
        cfg = change_cfg(base)
        model, arguments = build(args.kind, args.latent_channels, len(scoring.condition_names), cfg.latent,
                                 cfg.train.seed)
        change_model(model)
        start = time.perf_counter()
        train(model, objective(cfg), _train_set(caches, name, window, stride), None,
              dataclasses.replace(cfg.train, checkpoint_every=0), progress=False)
        seconds = time.perf_counter() - start
        forecaster = Forecaster(args.kind, model.eval(), arguments, autoencoder.normalizer, autoencoder.model, window,
                                stride, cfg.overlap, cfg.sampler, scoring.condition_names)
        scores, _ = score_forecaster(forecaster, truth, dataclasses.replace(score_cfg, members=cfg.score.members))
        values = row(name, seconds, scores.summary(WINDOWS), reference)
        reference = reference or values


if __name__ == "__main__":
    main()
