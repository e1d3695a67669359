"""The comparison report, laid out like the LoLA paper's tables: one row per model kind and
compression rate (the latest evaluated version of each) and per baseline, one column per
lead-time window, every number with its bootstrap interval over the test trajectories. It
opens with each forecast's skill (its paired difference to the best trivial baseline of
each window, by CRPS and VRMSE), gives medians beside the means and the scores by boundary
type, says what the intervals cover, and ends with the paper's four findings and their
verdicts (``pipelines.evaluation.findings``).

Written to ``reports/comparison.md`` and ``reports/comparison.png``; ``latentops compare``
prints the markdown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.kinds import KINDS as MODEL_KINDS
from models.kinds import emulator_kinds
from pipelines import layout, plots
from pipelines.evaluation.bootstrap import intervals, paired
from pipelines.evaluation.findings import best_baseline, findings
from pipelines.evaluation.metrics import BAND_NAMES
from pipelines.evaluation.scorecard import Estimate, Result
from pipelines.evaluation.scoring import AE_TRUTH, BASELINES
from pipelines.evaluation.timing import machine
from pipelines.io import atomic_path, write_text

__all__ = ["KINDS", "latest", "table", "write"]

#: Row order, then (name in the tables, short name in the figure): the model kinds, then the baselines.
KINDS: dict[str, tuple[str, str]] = {k.name: (k.display, k.short) for k in MODEL_KINDS} | {
    b.kind: (b.display, b.kind.replace("_", " ")) for b in BASELINES}
ORDER = {kind: i for i, kind in enumerate(KINDS)}
FORECAST_KINDS = emulator_kinds()


def _name(r: Result, short: bool = False) -> str:
    return KINDS.get(r.kind, (r.kind, r.kind))[short]


def latest(results: Sequence[Result]) -> list[Result]:
    """The latest evaluated version of every (kind, latent width), in table order."""
    rows: dict[tuple[str, str], Result] = {}
    for r in results:
        key = (r.kind, r.latent_channels)
        if key not in rows or r.version > rows[key].version:
            rows[key] = r
    return sorted(rows.values(), key=lambda r: (ORDER.get(r.kind, len(ORDER)), r.rate))


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _section(title: str, rows: Sequence[Result], columns: Sequence[str], cell: Callable[[Result, str], str],
             keep: Callable[[Result], bool] = lambda r: True) -> list[str]:
    head = ["model", "rate", "version", *columns]
    lines = [f"## {title}", "", _row(head), _row(["---"] * len(head))]
    for r in rows:
        if keep(r):
            lines.append(_row([_name(r), r.compression_rate or "–", str(r.version or "–"),
                               *(cell(r, c) for c in columns)]))
    return [*lines, ""]


def _estimate(name: str, digits: int = 3) -> Callable[[Result, str], str]:
    """A cell of the estimate ``name.format(column)``."""
    def cell(r: Result, column: str) -> str:
        estimate = r.card.get(name.format(column))
        return "–" if estimate is None else estimate.cell(digits)
    return cell


def _skill(rows: Sequence[Result], windows: Sequence[str], confidence: float) -> list[str]:
    """Each forecast's paired difference to the best trivial baseline of each window, by
    CRPS and by VRMSE: below zero (its interval too) is skill."""
    forecasts = [r for r in rows if r.kind in FORECAST_KINDS]
    if not forecasts:
        return []
    lines = [f"## Skill: difference to the best trivial baseline (model - baseline, paired, {100 * confidence:g}% "
             "interval; below 0 is better)", ""]
    for metric, title in (("crps", "Fair CRPS"), ("vrmse", "VRMSE of the ensemble mean")):
        best = {w: best_baseline(rows, f"{metric}_{w}") for w in windows}
        lines.append(f"{title}; the best baseline of each window: "
                     + ", ".join(f"{w}: {_name(b) if b else '–'}" for w, b in best.items()) + ".")
        lines.append("")

        def cell(r: Result, w: str, metric: str = metric, best: dict = best) -> str:
            other, name = best[w], f"{metric}_{w}"
            if other is None or name not in r.card.trajectories:
                return "–"
            d = paired(r.card.trajectories[name], other.card.trajectories[name], confidence)
            mark = " (skill)" if d.high < 0 else " (worse)" if d.low > 0 else ""
            return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{mark}"
        lines += _section(f"{title} minus the best baseline's", forecasts, windows, cell)[2:]
    return lines


def _medians(rows: Sequence[Result], windows: Sequence[str]) -> list[str]:
    """Medians over trajectories beside the means (the per-trajectory scores are heavy-tailed)."""
    columns = [f"{m} {w}" for m in ("VRMSE", "CRPS") for w in windows]

    def cell(r: Result, column: str) -> str:
        metric, w = column.split()
        values = r.card.trajectories.get(f"{metric.lower()}_{w}")
        return "–" if not values else f"{float(np.median(values)):.3f}"
    return _section("Medians over the test trajectories (means above): VRMSE of the ensemble mean and CRPS", rows,
                    columns, cell)


def _by_boundary(rows: Sequence[Result], windows: Sequence[str], boundaries: Sequence[str],
                 confidence: float) -> list[str]:
    """VRMSE of the ensemble mean per boundary type (VRMSE divides by the truth's spatial
    variance, which open boundaries let collapse late in a trajectory)."""
    groups = sorted(set(boundaries))
    counts = {g: boundaries.count(g) for g in groups}

    def cell(r: Result, column: str) -> str:
        group, w = column.rsplit(" ", 1)
        values = r.card.trajectories.get(f"vrmse_{w}")
        if not values or len(values) != len(boundaries):
            return "–"
        picked = np.array([v for v, b in zip(values, boundaries) if b == group])[:, None]
        mean, low, high = (float(x[0]) for x in intervals(picked, confidence))
        return Estimate(mean, low, high).cell()
    title = ("VRMSE of the ensemble mean by boundary type ("
             + ", ".join(f"{g}: {n} trajectories" for g, n in counts.items()) + ")")
    return _section(title, rows, [f"{g} {w}" for g in groups for w in windows], cell)


def table(results: Sequence[Result], windows: Sequence[str], confidence: float = 0.95,
          boundaries: Sequence[str] = ()) -> str:
    """The markdown report: each forecast's skill against the best trivial baseline, VRMSE of
    the ensemble mean and CRPS against the truth, the ensembles' member VRMSE and
    spread-skill, scores against the auto-encoded truth, medians, the breakdown by boundary
    type (``boundaries``: each test trajectory's, in order), the power-spectrum RMSE against
    both, then the findings."""
    rows = latest(results)
    if not rows:
        return "No evaluated versions yet: run `latentops evaluate` (or `dvc repro`).\n"
    level = f"{100 * confidence:g}%"
    trajectories = max((len(v) for r in rows for v in r.card.trajectories.values()), default=0)
    last = windows[-1]
    ensembles = [r for r in rows if r.card.ensemble]
    latent = [r for r in rows if f"{AE_TRUTH}vrmse_{last}" in r.card]
    lines = [f"Every number: the mean over {trajectories} test trajectories [its {level} bootstrap interval]. "
             "Rows: the latest evaluated version of each model kind and compression rate, then the baselines, "
             "scored by the same code on the same trajectories. Seconds per trajectory: the wall time of the "
             "version's own forecasts in its evaluation (all members, decoded), mean over the trajectories, on "
             f"{machine()}.", "",
             "What the intervals cover: which test trajectories were drawn (a bootstrap over them), nothing else. "
             "Each model was trained once, from one seed: the spread between training seeds is not in any "
             "interval here, so two models whose intervals barely separate may swap places when retrained. "
             "The ensemble-mean VRMSE is corrected to an infinite ensemble (the mean of M members is charged "
             "its finite-ensemble noise, about sqrt(1 + 1/M), otherwise): ensembles of any size and "
             "deterministic models compare.", ""]
    lines += _skill(rows, windows, confidence)
    lines += _section("VRMSE of the ensemble mean (corrected to an infinite ensemble) against the ground truth, "
                      "by lead-time window", rows,
                      [*windows, "s / trajectory"],
                      lambda r, c: f"{r.card.seconds:.2f}" if c == "s / trajectory" else _estimate("vrmse_{}")(r, c))
    lines += _section("Fair CRPS against the ground truth (normalised like VRMSE), by lead-time window", rows, windows,
                      _estimate("crps_{}"))
    if ensembles:
        lines += _section("Ensembles: spread-skill ratio (~1 calibrated, < 1 under-dispersed) and member-averaged "
                          "VRMSE", ensembles, [*(f"spread-skill {w}" for w in windows), f"member VRMSE {last}"],
                          lambda r, c: _estimate("spread_skill_{}", 2)(r, c.split()[-1]) if c.startswith("spread")
                          else _estimate("vrmse_members_{}")(r, c.split()[-1]))
    if latent:
        lines += _section("Latent emulators against the auto-encoded truth D(E(x))", latent,
                          [*(f"VRMSE {w}" for w in windows), f"CRPS {last}"],
                          lambda r, c: _estimate(f"{AE_TRUTH}{c.split()[0].lower()}_{{}}")(r, c.split()[-1]))
    lines += _medians(rows, windows)
    if boundaries:
        lines += _by_boundary(rows, windows, boundaries, confidence)
    bands = [f"{b} vs truth" for b in BAND_NAMES] + [f"{b} vs D(E(x))" for b in BAND_NAMES]
    lines += _section(f"Power-spectrum RMSE by band, lead window {last} (per member, averaged)", rows, bands,
                      lambda r, c: _estimate(("" if c.endswith("truth") else AE_TRUTH) + "psrmse_"
                                             + c.split()[0] + "_{}", 2)(r, last))
    lines += [f"## The LoLA paper's findings, checked ({level} paired bootstrap over the test trajectories)", ""]
    for i, finding in enumerate(findings(rows, windows, confidence), start=1):
        lines.append(f"{i}. **{finding.claim}: {finding.verdict}.**")
        lines += [f"   - {line}" for line in finding.evidence]
    return "\n".join(lines) + "\n"


def write(results: Sequence[Result], windows: Sequence[str], confidence: float = 0.95,
          boundaries: Sequence[str] = ()) -> list[Path]:
    """The comparison report and its figure (``pipelines.layout``), written atomically."""
    markdown, figure = layout.COMPARISON_REPORT, layout.COMPARISON_FIGURE
    write_text(markdown, "# Model comparison\n\n" + table(results, windows, confidence, boundaries))
    rows = latest(results)
    groups = [_name(r, short=True) + (f"\nrate {r.compression_rate}" if r.compression_rate else "") for r in rows]
    series = {w: [r.card.value(f"vrmse_{w}") for r in rows] for w in windows}
    errors = {w: [(r.card.get(f"vrmse_{w}").low, r.card.get(f"vrmse_{w}").high) if f"vrmse_{w}" in r.card
                  else (float("nan"),) * 2 for r in rows] for w in windows}
    fig = plots.grouped_bars(groups, series, "VRMSE of the ensemble mean against the ground truth by lead-time window",
                             "VRMSE", errors=errors)
    with atomic_path(figure) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plots.plt.close(fig)
    return [markdown, figure]
