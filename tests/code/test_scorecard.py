"""Scores as data: bootstrap intervals that cover the truth at their level, paired comparisons
that tell a real difference from noise, scorecards that survive their JSON, the
baselines and the metric suite on synthetic trajectories with known answers, the findings'
verdicts, and the evaluate stage's DVC dependencies covering the code it runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pipelines.evaluation.bootstrap import intervals, paired
from pipelines.evaluation.findings import HOLDS, INCONCLUSIVE, NO_SKILL, NOT_HOLDS, findings
from pipelines.evaluation.scorecard import Estimate, Result, Scorecard
from pipelines.evaluation.scoring import ConservedMean, Persistence, Scorer, Truth, score_baseline, suite
from pipelines.settings.score import ScoreConfig
from tests.conftest import configured


def test_the_bootstrap_interval_covers_the_true_mean_at_its_level():
    """95 % intervals over 32 trajectories of a skewed score (lognormal, like VRMSE) cover
    the true mean in at least 90 of 100 seeds, and are not vacuous."""
    true_mean = math.exp(0.5**2 / 2)  # of lognormal(0, 0.5)
    covered, widths = 0, []
    for seed in range(100):
        values = np.random.default_rng(seed).lognormal(0.0, 0.5, size=(32, 1))
        _, low, high = intervals(values, 0.95, seed)
        covered += int(low[0] <= true_mean <= high[0])
        widths.append(high[0] - low[0])
    assert covered >= 90, covered
    assert np.mean(widths) < 0.5  # about 4 standard errors of the mean (0.6 / sqrt(32) ~ 0.1)


def test_columns_without_spread_get_a_point_interval():
    values = np.stack([np.ones(8), np.arange(8.0)], axis=1)
    mean, low, high = intervals(values)
    assert (mean[0], low[0], high[0]) == (1.0, 1.0, 1.0)
    assert low[1] < mean[1] == 3.5 < high[1]


def test_paired_comparisons_see_through_shared_trajectory_difficulty():
    """Two models on the same hard and easy trajectories: the paired bootstrap finds a
    consistent 5 % gain that unpaired intervals (overlapping widely) would miss."""
    rng = np.random.default_rng(1)
    hardness = rng.lognormal(0.0, 0.8, 32)
    a, b = hardness * 0.95, hardness
    _, low_a, high_a = intervals(a[:, None])
    _, low_b, high_b = intervals(b[:, None])
    assert low_b[0] < high_a[0]  # unpaired: the intervals overlap
    d = paired(a, b)
    assert d.probability == 1.0 and d.high < 0 and d.trajectories == 32
    assert paired(b, a).probability == 0.0
    with pytest.raises(ValueError, match="same trajectories"):
        paired(a, b[:10])


def test_a_scorecard_survives_its_json():
    card = Scorecard({"vrmse_mean": Estimate(0.5, 0.4, 0.6), "vrmse_61-100": Estimate(0.9, 0.8, 1.1),
                      "crps_61-100": Estimate(0.3, 0.25, 0.35), "vrmse_61-100/density": Estimate(0.7, 0.6, 0.8)},
                     {"vrmse_mean": [0.4, 0.6], "vrmse_61-100": [0.8, 1.0]}, seconds=1.25)
    assert Scorecard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    assert card.get("seconds_per_trajectory") == Estimate(1.25, 1.25, 1.25)
    assert [Scorecard.is_headline(n) for n in ("vrmse_mean", "crps_1-20", "vrmse_members_1-20", "spread_skill_1-20",
                                                "vrmse_1-20/density", "psrmse_low_1-20", "ae_truth/vrmse_1-20")] \
        == [True, True, True, True, False, False, False]


def _truth(n: int = 6, steps: int = 9, size: int = 16, seed: int = 0) -> Truth:
    """Trajectories whose every state is a random field around a per-trajectory mean."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.randn(n, 3, 1, 1, 1, generator=g) * 5
    states = offset + torch.randn(n, 3, steps, size, size, generator=g)
    cond = torch.zeros(n, 2)
    return Truth(states, cond, ["energy", "density", "pressure"], 1, "synthetic")


def test_baselines_score_as_their_definition_says():
    truth, cfg = _truth(), configured(ScoreConfig, "train_emulator.score", trajectories=6, lead_windows=((1, 8),), batch=4)
    constant = score_baseline(ConservedMean(), truth, cfg, stride=1)
    # A constant field at the spatial mean: VRMSE ~1 (the states are independent noise around that mean).
    assert constant.summary([(1, 8)])["vrmse_1-8"] == pytest.approx(1.0, abs=0.05)
    persistence = score_baseline(Persistence(), truth, cfg, stride=1)
    # Two independent noise fields: VRMSE ~sqrt(2).
    assert persistence.summary([(1, 8)])["vrmse_1-8"] == pytest.approx(math.sqrt(2), abs=0.08)
    assert persistence.values["vrmse"].shape == (6, 8, 3) and persistence.ranks is None
    assert "spread_skill" not in persistence.values  # one member: no spread


def test_the_suite_scores_an_ensemble_by_its_mean_and_keeps_every_trajectory():
    truth = _truth(n=4, steps=5)
    targets = truth.targets(1, [1, 2, 3, 4])  # (4, 4, 3, 16, 16)
    g = torch.Generator().manual_seed(1)
    centre = targets.mean(dim=(-2, -1), keepdim=True)
    members = centre[:, None] + torch.randn(4, 8, *targets.shape[1:], generator=g)  # calibrated around the mean
    scorer = Scorer(suite(configured(ScoreConfig, "train_emulator.score", bands=3)), [1, 2, 3, 4], truth.channels)
    scorer.add(members[:2], targets[:2], encoded=targets[:2] + 0.1)
    scorer.add(members[2:], targets[2:], encoded=targets[2:] + 0.1)
    scores = scorer.scores()
    assert scores.values["vrmse"].shape == (4, 4, 3) and scores.values["psrmse"].shape == (4, 4, 3)
    assert scores.values["ae_truth/crps"].shape == (4, 4, 3) and "ae_truth/spread_skill" in scores.values
    # The ensemble mean's VRMSE is corrected to an infinite ensemble (whose mean is the centre,
    # VRMSE 1): a calibrated member scores sqrt(2) times that, not the finite mean's sqrt(2 M / (M + 1)).
    ratio = scores.values["vrmse_members"].mean() / scores.values["vrmse"].mean()
    assert float(ratio) == pytest.approx(math.sqrt(2), rel=0.05)
    assert float(scores.values["vrmse"].mean()) == pytest.approx(1.0, rel=0.05)
    assert float(scores.values["spread_skill"].mean()) == pytest.approx(1.0, rel=0.1)
    assert int(scores.ranks.sum()) == targets.numel()
    card = Scorer(suite(configured(ScoreConfig, "train_emulator.score")), [1, 2, 3, 4], truth.channels)
    card.add(members, targets)
    summary = card.scores(seconds=2.0).scorecard([(1, 2), (3, 4)])
    assert set(summary.trajectories) == {f"{m}_{w}" for m in ("vrmse", "vrmse_members", "crps", "spread_skill")
                                         for w in ("1-2", "3-4")} | {"vrmse_mean"}
    assert summary.seconds == 2.0 and summary.ensemble and "psrmse_high_3-4" in summary


def _row(kind: str, rate: str, values: np.ndarray, version: int = 1, spread: np.ndarray | None = None,
         against_truth: np.ndarray | None = None) -> Result:
    """A model's row (``spread``: its spread-skill against D(E(x)); ``against_truth``: against
    the truth, ``spread`` if not given), or a baseline's (``version`` 0)."""
    trajectories = {"vrmse_mean": list(values), "vrmse_1-20": list(values), "vrmse_61-100": list(values)}
    if spread is not None:
        against_truth = spread if against_truth is None else against_truth
        trajectories |= {f"{prefix}spread_skill_{w}": list(v) for w in ("1-20", "61-100")
                         for prefix, v in (("", against_truth), ("ae_truth/", spread))}
    estimates = {n: Estimate(float(np.mean(v)), float(np.min(v)), float(np.max(v))) for n, v in trajectories.items()}
    return Result(f"{kind}_{rate}", kind, Scorecard(estimates, trajectories), "m" if version else "", version, "",
                  rate)


def test_the_findings_hold_fail_or_stay_open_on_the_evidence():
    rng = np.random.default_rng(0)
    hard = rng.lognormal(0, 0.3, 32)  # per-trajectory difficulty, shared by every model
    windows = ["1-20", "61-100"]
    rows = [
        _row("autoencoder", "80", 0.1 * hard), _row("autoencoder", "1280", 0.5 * hard),  # grows x5
        _row("diffusion", "80", 0.6 * hard, spread=1.0 + rng.normal(0, 0.02, 32)),
        _row("diffusion", "1280", 0.66 * hard, spread=0.9 + rng.normal(0, 0.02, 32)),  # x1.1, less dispersed
        _row("solver", "80", 0.8 * hard), _row("solver", "1280", 0.82 * hard),
        _row("pixel_solver", "1", 0.9 * hard),
        _row("conserved_mean", "", 1.0 * hard, version=0),  # the best trivial baseline: every emulator beats it
        _row("persistence", "", 1.5 * hard, version=0),
    ]
    assert [f.verdict for f in findings(rows, windows)] == [HOLDS] * 4
    assert any(line.startswith("skill: diffusion (rate 80") for line in findings(rows, windows)[0].evidence)

    # Emulators no better than a constant field are trivially flat: finding 1 cannot hold.
    unskilled = [*rows[:-2], _row("conserved_mean", "", 0.62 * hard, version=0)]
    first = findings(unskilled, windows)[0]
    assert first.verdict == NO_SKILL
    assert any("solver (rate 1280, v1) vs conserved_mean (baseline)" in line and line.startswith("skill:")
               for line in first.evidence)

    # Calibration is judged against D(E(x)), window by window: under-dispersed against the truth
    # (the reconstruction error no latent ensemble can spread over) is not under-dispersed.
    floor = rows.copy()
    floor[2] = _row("diffusion", "80", 0.6 * hard, spread=1.0 + rng.normal(0, 0.02, 32),
                    against_truth=0.5 + rng.normal(0, 0.02, 32))
    fourth = findings(floor, windows)[3]
    assert fourth.verdict == HOLDS
    assert sum(line.startswith("window ") for line in fourth.evidence) == 2 * 3  # 2 windows x (2 rates + trend)
    assert any("against the truth 0.50" in line for line in fourth.evidence)

    noisy = rows.copy()
    noisy[6] = _row("pixel_solver", "1", 0.83 * hard + rng.normal(0, 0.5, 32))  # as good as the solvers, give or take
    verdicts = [f.verdict for f in findings(noisy, windows)]
    assert verdicts == [HOLDS, INCONCLUSIVE, HOLDS, HOLDS]

    wrong = rows.copy()
    wrong[2] = _row("diffusion", "80", 0.95 * hard, spread=0.3 + rng.normal(0, 0.02, 32))  # worse, under-dispersed
    result = findings(wrong, windows)
    assert [f.verdict for f in result] == [HOLDS, NOT_HOLDS, NOT_HOLDS, NOT_HOLDS]
    assert any("P(better) = 0.000" in line for line in result[2].evidence)
    assert findings(rows[:1], windows)[0].verdict == INCONCLUSIVE  # one rate: nothing to compare
    wrong_window = [*rows[:3], _row("diffusion", "1280", 0.66 * hard, spread=0.9 + rng.normal(0, 0.02, 32)), *rows[4:]]
    wrong_window[3].card.trajectories["ae_truth/spread_skill_61-100"] = list(1.2 + rng.normal(0, 0.02, 32))
    assert findings(wrong_window, windows)[3].verdict == NOT_HOLDS  # grows with compression in the last window
    assert all(f.verdict == INCONCLUSIVE for f in findings([], windows))
