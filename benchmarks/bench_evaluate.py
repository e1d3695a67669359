"""Benchmark: what scoring one emulator version costs in the ``evaluate`` stage, measured side
by side in one run on this machine, at the shapes of params.yaml (``evaluate.members``
members, ``evaluate.batch`` trajectories a batch, the lead times of ``evaluate.lead_windows``
at ``data.stride``, the fields and resolution of the built-in dataset).

- the metric suite (``pipelines.evaluation.scoring.suite``) on one batch, with float32 forecasts (as
  the forecaster returns them) and with float64 ones (the precision it used to compute in):
  the time of each metric and the ratio;
- the bootstrap of a whole scorecard (every summary number, ``evaluate.trajectories``
  trajectories);
- each figure of a version's evaluation run.

    .venv/bin/python benchmarks/bench_evaluate.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import torch
from bench_emulators import best_of  # this folder is on the path of a script run from it

from pipelines import plots
from pipelines.evaluation.metrics import isotropic_spectrum, rank_histogram
from pipelines.evaluation.scoring import Scorer, suite
from pipelines.settings import load_section
from pipelines.settings.data import DataConfig
from pipelines.settings.evaluation import EvaluateConfig
from pipelines.settings.simulate import SimulateConfig

REPO = Path(__file__).resolve().parents[1]
CHANNELS = ["energy", "density", "pressure", "momentum_x", "momentum_y"]


def save(figure) -> None:
    figure.savefig(io.BytesIO(), format="png")
    plots.plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_section(EvaluateConfig, "evaluate", args.params)
    data = load_section(DataConfig, "data", args.params)
    size = load_section(SimulateConfig, "simulate", args.params).resolution
    leads = list(range(data.stride, cfg.last_lead + 1, data.stride))
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(cfg.batch, len(leads), len(CHANNELS), size, size, generator=g) + 0.5
    ensemble = truth[:, None] + 0.1 * torch.randn(cfg.batch, cfg.members, *truth.shape[1:], generator=g)
    print(f"one batch: {cfg.batch} trajectories x {cfg.members} members x {len(leads)} leads x {len(CHANNELS)} "
          f"fields x {size}^2, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")

    print(f"\n{'metric':<16}{'float32 s':>11}{'float64 s':>11}{'64 / 32':>9}")
    totals = [0.0, 0.0]
    for metric in suite(cfg):
        single = best_of(args.repeats, lambda: metric(ensemble, truth))
        double = best_of(args.repeats, lambda: metric(ensemble.double(), truth.double()))
        totals[0] += single
        totals[1] += double
        print(f"{metric.name:<16}{single:>11.3f}{double:>11.3f}{double / single:>9.2f}")
    single = best_of(args.repeats, lambda: rank_histogram(ensemble.movedim(1, 0), truth))
    double = best_of(args.repeats, lambda: rank_histogram(ensemble.movedim(1, 0).double(), truth.double()))
    totals[0] += single
    totals[1] += double
    print(f"{'rank histogram':<16}{single:>11.3f}{double:>11.3f}{double / single:>9.2f}")
    print(f"{'suite':<16}{totals[0]:>11.3f}{totals[1]:>11.3f}{totals[1] / totals[0]:>9.2f}   (per batch and reference; "
          "a latent emulator is scored against the truth and D(E(x)))")

    scorer = Scorer(suite(cfg), leads, CHANNELS)
    for _ in range(-(-cfg.trajectories // cfg.batch)):
        scorer.add(ensemble, truth)
    scores = scorer.scores(1.0)
    windows = list(cfg.lead_windows)
    card = scores.scorecard(windows, cfg.confidence, cfg.seed)
    seconds = best_of(args.repeats, lambda: scores.scorecard(windows, cfg.confidence, cfg.seed))
    print(f"\nbootstrap of a scorecard: {len(card.estimates)} numbers over {scores.values['vrmse'].shape[0]} "
          f"trajectories: {seconds:.3f} s")

    frames = truth[0, :, 1].numpy()
    picks = [0, len(leads) // 2, len(leads) - 1]
    k, spectrum = isotropic_spectrum(truth[0, picks])
    with tempfile.TemporaryDirectory() as tmp:
        figures = {
            "VRMSE vs lead": lambda: save(plots.curves({"mean": (leads, scores.by_lead("vrmse").tolist())}, "t",
                                                       "VRMSE")),
            "power spectra": lambda: save(plots.spectra(k.numpy(), spectrum.numpy(), spectrum.numpy(),
                                                        [leads[i] for i in picks], CHANNELS, "t")),
            "rollout panel": lambda: save(plots.rollout_panel(frames[:4], frames[:4], leads[:4], "t")),
            "rank histogram": lambda: save(plots.rank_histogram(scores.ranks.numpy(), "t")),
            "rollout GIF": lambda: plots.rollout_animation(frames, frames, leads, "density", f"{tmp}/r.gif"),
        }
        print(f"\n{'figure':<16}{'s':>8}")
        total = 0.0
        for name, make in figures.items():
            seconds = best_of(args.repeats, make)
            count = len(CHANNELS) if name == "rollout panel" else 1
            total += count * seconds
            print(f"{name:<16}{seconds:>8.3f}" + (f"   x {count} fields" if count > 1 else ""))
        print(f"{'per version':<16}{total:>8.3f}")


if __name__ == "__main__":
    main()
