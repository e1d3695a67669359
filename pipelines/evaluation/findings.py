"""The LoLA paper's four findings (Rozet et al. 2025; REFERENCE.md section 1), checked on the
evaluated rows by paired bootstraps over the test trajectories (``pipelines.evaluation.bootstrap``).

Each finding gets a verdict from the intervals at the evaluation's confidence: ``holds``
when the interval of every comparison it needs lies on its side of zero, ``does not hold``
when one lies on the other side, and ``inconclusive`` otherwise (an interval across zero:
the sample is too small to tell; or the rows it needs are missing). Rows are the latest evaluated version of each kind and compression rate
(``pipelines.evaluation.report.latest``); every comparison pairs two rows on the same trajectories.

1. Emulation error stays nearly flat across compression rates while reconstruction error
   grows: the autoencoder's ``vrmse_mean`` grows from the lowest to the highest rate
   (ratio > 1), and each latent emulator's grows less (``ae ratio - emulator ratio > 0``).
   Emulators without skill are trivially flat, so the verdict is ``inconclusive: no skill``
   unless every emulator it compares beats the best trivial baseline (:func:`best_baseline`)
   by ``vrmse_mean``, its paired interval below zero.
2. Latent emulators beat the pixel-space neural solver (``vrmse_mean``), every one of them.
3. Diffusion beats the neural solver at long lead times: ``vrmse`` of the ensemble mean in
   the last lead window, at every compression rate.
4. Diffusion's spread-skill ratio is near 1 (its interval inside :data:`NEAR_ONE`) and
   decreases with compression (lowest rate's above the highest's), in every lead window, each
   judged on its own, against the auto-encoded truth ``D(E(x))`` (what a latent ensemble can
   reach: against the truth, the reconstruction error it cannot spread over counts as lack
   of spread); the ratio against the truth is shown beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.kinds import emulator_kinds
from pipelines.evaluation.bootstrap import Difference, intervals, paired, paired_statistic
from pipelines.evaluation.scorecard import AE_TRUTH, Result

__all__ = ["HOLDS", "INCONCLUSIVE", "NEAR_ONE", "NOT_HOLDS", "NO_SKILL", "Finding", "best_baseline", "findings",
           "is_baseline"]

HOLDS, NOT_HOLDS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
NO_SKILL = "inconclusive: no skill"
NEAR_ONE = (0.8, 1.25)  # a spread-skill ratio "near 1": at most 25 % over- or 20 % under-dispersed
LATENT = emulator_kinds(latent=True)


@dataclass(frozen=True)
class Finding:
    """A claim of the paper, its ``verdict`` on these results, and the numbers behind it."""

    claim: str
    verdict: str
    evidence: list[str]


def _combine(verdicts: Sequence[str]) -> str:
    """All parts hold: holds; any part contradicted: does not hold; else inconclusive."""
    if not verdicts:
        return INCONCLUSIVE
    if NOT_HOLDS in verdicts:
        return NOT_HOLDS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def _below(d: Difference) -> str:
    """The verdict on "the statistic is below zero", from its interval: below zero holds,
    above zero does not hold, across zero is inconclusive."""
    if d.high < 0:
        return HOLDS
    return NOT_HOLDS if d.low > 0 else INCONCLUSIVE


def _vector(r: Result, metric: str) -> np.ndarray | None:
    values = r.card.trajectories.get(metric)
    return None if values is None else np.asarray(values)


def is_baseline(r: Result) -> bool:
    """A trivial baseline's row (no registered model behind it)."""
    return not r.name


def best_baseline(rows: Sequence[Result], metric: str) -> Result | None:
    """The baseline row with the lowest ``metric`` whose per-trajectory values it kept."""
    scored = [r for r in rows if is_baseline(r) and metric in r.card.trajectories]
    return min(scored, key=lambda r: r.card.value(metric), default=None)


def _skill(rows: Sequence[Result], models: Sequence[Result], metric: str, confidence: float,
           seed: int) -> tuple[bool, list[str]]:
    """Whether every one of ``models`` beats the best baseline by ``metric`` (paired interval
    below zero), and the comparisons."""
    best = best_baseline(rows, metric)
    if best is None:
        return False, [f"no baseline scored by {metric}: skill unknown"]
    verdicts, evidence = _pairs(models, best, metric, confidence, seed)
    return all(v == HOLDS for v in verdicts), [f"skill: {line}" for line in evidence]


def _by_rate(rows: Sequence[Result], kind: str) -> list[Result]:
    return sorted((r for r in rows if r.kind == kind), key=lambda r: r.rate)


def _name(r: Result) -> str:
    return f"{r.kind} (baseline)" if is_baseline(r) else f"{r.kind} (rate {r.compression_rate}, v{r.version})"


def _flat_emulation(rows: Sequence[Result], confidence: float, seed: int) -> Finding:
    claim = "Emulation error stays nearly flat across compression rates while reconstruction error grows"
    metric = "vrmse_mean"
    autoencoders = _by_rate(rows, "autoencoder")
    if len(autoencoders) < 2:
        return Finding(claim, INCONCLUSIVE, ["needs autoencoders at two compression rates or more"])
    low, high = autoencoders[0], autoencoders[-1]
    ae_low, ae_high = _vector(low, metric), _vector(high, metric)
    growth = paired_statistic((ae_low, ae_high), lambda a, b, axis=-1: 1 - b.mean(axis) / a.mean(axis), confidence,
                              seed)  # below 0: reconstruction error grows
    verdicts = [_below(growth)]
    evidence = [f"autoencoder {metric} rate {low.compression_rate} -> {high.compression_rate}: "
                f"x{1 - growth.mean:.2f} [{1 - growth.high:.2f}, {1 - growth.low:.2f}]"]
    compared = []
    for kind in LATENT:
        emulators = {r.compression_rate: r for r in _by_rate(rows, kind)}
        first, last = emulators.get(low.compression_rate), emulators.get(high.compression_rate)
        if first is None or last is None:
            evidence.append(f"{kind}: not evaluated at rates {low.compression_rate} and {high.compression_rate}")
            verdicts.append(INCONCLUSIVE)
            continue
        compared += [first, last]
        less = paired_statistic(
            (ae_low, ae_high, _vector(first, metric), _vector(last, metric)),
            lambda a, b, c, d, axis=-1: d.mean(axis) / c.mean(axis) - b.mean(axis) / a.mean(axis), confidence, seed)
        ratio = float(_vector(last, metric).mean() / _vector(first, metric).mean())
        verdicts.append(_below(less))
        evidence.append(f"{kind} {metric} rate {first.compression_rate} -> {last.compression_rate}: x{ratio:.2f}; "
                        f"its growth minus the autoencoder's {less.mean:+.2f} [{less.low:+.2f}, {less.high:+.2f}], "
                        f"P(grows less) = {less.probability:.3f}")
    skilled, comparisons = _skill(rows, compared, metric, confidence, seed)
    verdict = _combine(verdicts) if skilled or not compared else NO_SKILL
    return Finding(claim, verdict, evidence + comparisons)


def _pairs(better: Sequence[Result], worse: Result | dict[str, Result], metric: str,
           confidence: float, seed: int) -> tuple[list[str], list[str]]:
    """Paired comparisons ``b - worse`` of each ``b`` in ``better`` (against the row of the
    same rate when ``worse`` maps rates to rows)."""
    verdicts, evidence = [], []
    for b in better:
        other = worse.get(b.compression_rate) if isinstance(worse, dict) else worse
        if other is None:
            evidence.append(f"{_name(b)}: no row to compare with at its rate")
            verdicts.append(INCONCLUSIVE)
            continue
        d = paired(_vector(b, metric), _vector(other, metric), confidence, seed)
        verdicts.append(_below(d))
        evidence.append(f"{_name(b)} vs {_name(other)}: {d.describe(metric)}")
    return verdicts, evidence


def _latent_beats_pixel(rows: Sequence[Result], confidence: float, seed: int) -> Finding:
    claim = "Latent emulators beat the pixel-space neural solver"
    pixel = _by_rate(rows, "pixel_solver")
    latent = [r for kind in LATENT for r in _by_rate(rows, kind)]
    if not pixel or not latent:
        return Finding(claim, INCONCLUSIVE, ["needs a pixel-space solver and latent emulators"])
    verdicts, evidence = _pairs(latent, pixel[0], "vrmse_mean", confidence, seed)
    return Finding(claim, _combine(verdicts), evidence)


def _diffusion_beats_solver(rows: Sequence[Result], window: str, confidence: float, seed: int) -> Finding:
    claim = f"Diffusion beats the neural solver at long lead times (window {window})"
    diffusion = _by_rate(rows, "diffusion")
    solvers = {r.compression_rate: r for r in _by_rate(rows, "solver")}
    if not diffusion or not solvers:
        return Finding(claim, INCONCLUSIVE, ["needs diffusion and latent solver emulators"])
    verdicts, evidence = _pairs(diffusion, solvers, f"vrmse_{window}", confidence, seed)
    return Finding(claim, _combine(verdicts), evidence)


def _calibration(rows: Sequence[Result], windows: Sequence[str], confidence: float, seed: int) -> Finding:
    claim = ("Diffusion has a spread-skill ratio near 1 that decreases with compression (against D(E(x)), "
             "in every lead window)")
    diffusion = _by_rate(rows, "diffusion")
    lo, hi = NEAR_ONE
    verdicts, evidence = [], []
    for w in windows:
        name = f"{AE_TRUTH}spread_skill_{w}"
        scored = [r for r in diffusion if name in r.card.trajectories]
        if not scored:
            continue
        for r in scored:
            mean, low, high = (float(v[0]) for v in intervals(_vector(r, name)[:, None], confidence, seed))
            verdicts.append(HOLDS if lo <= low and high <= hi else NOT_HOLDS if high < lo or low > hi
                            else INCONCLUSIVE)
            truth = r.card.get(f"spread_skill_{w}")
            beside = "" if truth is None else f"; against the truth {truth.cell(2)}"
            evidence.append(f"window {w}, {_name(r)}: spread-skill {mean:.2f} [{low:.2f}, {high:.2f}] "
                            f"(near 1: [{lo:g}, {hi:g}]){beside}")
        if len(scored) < 2:
            verdicts.append(INCONCLUSIVE)
            evidence.append(f"window {w}: the trend needs diffusion emulators at two compression rates or more")
            continue
        first, last = scored[0], scored[-1]
        d = paired(_vector(last, name), _vector(first, name), confidence, seed)
        verdicts.append(_below(d))
        evidence.append(f"window {w}, rate {last.compression_rate} vs rate {first.compression_rate}: "
                        f"{d.describe('spread-skill', 'lower at the higher rate')}")
    if not verdicts:
        return Finding(claim, INCONCLUSIVE, ["needs latent diffusion emulators evaluated with several members"])
    return Finding(claim, _combine(verdicts), evidence)


def findings(rows: Sequence[Result], windows: Sequence[str], confidence: float = 0.95, seed: int = 0) -> list[Finding]:
    """The four findings on ``rows`` (one per kind and rate), ``windows`` the lead-window
    labels in order."""
    return [_flat_emulation(rows, confidence, seed), _latent_beats_pixel(rows, confidence, seed),
            _diffusion_beats_solver(rows, windows[-1], confidence, seed),
            _calibration(rows, windows, confidence, seed)]
