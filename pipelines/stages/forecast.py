"""``latentops forecast``: forecast one trajectory of a dataset split with a registered
emulator (by default the ``production`` alias) and write it beside the truth.

Output ``<output>.h5``: ``forecast (M, K + T, H, W, C)`` in physical units (the ``K``
given states, then ``T`` states ``stride`` stored steps apart, ``M`` members), ``truth
(K + T', H, W, C)`` at the same times as far as the trajectory reaches, ``vrmse (T', C)``
per lead and field (mean over members), and attributes naming the model, the split, the
trajectory, the channels and the leads. ``<output>.png``: truth, forecast and error of one field at
four lead times.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import torch

from pipelines import plots
from pipelines.evaluation.metrics import vrmse
from pipelines.evaluation.scoring import Truth
from pipelines.io import atomic_path
from pipelines.options import section
from pipelines.settings.data import DataConfig
from pipelines.tracking import names
from pipelines.tracking.references import load_model


def run(data: DataConfig, reference: str = "production", split: str = "test", trajectory: int = 0,
        horizon: int = 25, members: int = 1, seed: int = 0, output: str | Path = "forecasts/forecast") -> dict:
    """Forecast trajectory ``trajectory`` of ``split``; returns a summary (paths, VRMSE by lead)."""
    if horizon < 1 or members < 1:
        raise ValueError(f"need --horizon >= 1 and --members >= 1; got {horizon}, {members}")
    truth = Truth.load_one(data, split, trajectory)
    states = truth.states  # (1, C, T, H, W)
    uri, model = load_model(reference, names.emulator_name(truth.dataset))
    settings = model.metadata.metadata or {}
    stride = int(settings["stride"])
    initial = truth.initial(stride)  # (1, C, K, H, W)
    prediction = model.predict({"states": initial.permute(0, 2, 3, 4, 1).numpy(), "cond": truth.cond.numpy()},
                               params={"horizon": horizon, "members": members, "seed": seed})[0]  # (M, K + T, H, W, C)
    known = initial.shape[2]
    leads = [lead for lead in range(stride, (horizon + 1) * stride, stride)
             if truth.last_known(stride) + lead < states.shape[2]]
    times = [truth.last_known(stride) - stride * (known - 1 - k) for k in range(known)]
    times += [truth.last_known(stride) + lead for lead in leads]
    target = states[0, :, times].permute(1, 2, 3, 0).numpy()  # (K + T', H, W, C)
    predicted = torch.from_numpy(prediction[:, known : known + len(leads)])  # (M, T', H, W, C)
    score = vrmse(predicted.permute(0, 1, 4, 2, 3), torch.from_numpy(target[known:]).permute(0, 3, 1, 2)[None])
    score = score.mean(dim=0).numpy()  # (T', C)
    output = Path(output)
    with atomic_path(output.with_suffix(".h5")) as tmp, h5py.File(tmp, "w") as f:
        f["forecast"], f["truth"], f["vrmse"] = prediction, target, score
        f.attrs.update({"model": uri, "split": split, "trajectory": trajectory, "stride": stride,
                        "channels": list(truth.channels), "leads": leads, "dataset": truth.dataset})
    figure = output.with_suffix(".png")
    if leads:
        shown = sorted({0, len(leads) // 3, 2 * len(leads) // 3, len(leads) - 1})
        c = 1 if len(truth.channels) > 1 else 0  # density, in Euler's channel order
        fig = plots.rollout_panel(target[known:][shown, ..., c], prediction[0, known:][shown, ..., c],
                                  [leads[i] for i in shown], f"{uri}: {truth.channels[c]}, {split} trajectory "
                                                             f"{trajectory}")
        with atomic_path(figure) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plots.plt.close(fig)
    return {"model": uri, "output": str(output.with_suffix(".h5")), "figure": str(figure) if leads else None,
            "leads": leads, "vrmse": score.mean(axis=1).tolist(), "shape": list(prediction.shape)}


# --------------------------------------------------------------------------- latentops forecast


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load a registered <dataset>-emulator version (by default the 'production' alias) and forecast one "
        "trajectory of a split of data.root from its first state(s); write OUTPUT.h5 (forecast, truth, "
        "VRMSE per lead and field) and OUTPUT.png (one field at four lead times).")
    parser.add_argument("--model", default="production",
                        help="alias, version number or models:/ URI (default: %(default)s)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")
    parser.add_argument("--horizon", type=int, default=25, help="states to forecast, data.stride steps apart "
                                                                 "(default: %(default)s)")
    parser.add_argument("--members", type=int, default=1, help="ensemble members (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="forecasts/forecast",
                        help="output path without suffix (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    data = section(args, DataConfig, "data")
    summary = run(data, args.model, args.split, args.trajectory, args.horizon, args.members, args.seed, args.output)
    scores = ", ".join(f"{lead}: {v:.3f}" for lead, v in zip(summary["leads"], summary["vrmse"]))
    figure = f" and {summary['figure']}" if summary["figure"] else ""
    print(f"forecast: {summary['model']} -> {summary['output']} {summary['shape']} (members, states, H, W, C)"
          + figure + (f"; VRMSE by lead: {scores}" if scores else ""))
    return 0
