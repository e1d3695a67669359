"""Metrics against hand-computed cases: exact predictions score 0, the spatial mean scores
VRMSE ~1, a sinusoid's spectral error lands in its band, calibrated ensembles have a
spread-skill ratio ~1 (per field, whatever its scale) and under-dispersed ones clearly less,
the fair CRPS of a Gaussian ensemble matches the Gaussian closed form and its sorted form the
pairwise sum, a calibrated ensemble's mean beats its members' VRMSE by sqrt(2M / (M + 1)),
and rank histograms are flat when calibrated, U-shaped when under-dispersed, ties shared;
their figures, and the rollout animation (a frame per lead, oriented as the panels are)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines import plots
from pipelines.evaluation.metrics import (
    BAND_NAMES,
    _fair_crps,
    crps,
    ensemble_mean_vrmse,
    fair_crps,
    isotropic_spectrum,
    rank_histogram,
    spectrum_rmse,
    spread_skill,
    spread_skill_ratio,
    vrmse,
)


def smooth_field(batch: int = 4, channels: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Random fields with power at every wavenumber: ``(B, C, H, W)``."""
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_an_exact_prediction_scores_zero():
    x = smooth_field()
    assert vrmse(x, x).abs().max() == 0
    assert spectrum_rmse(x, x).abs().max() < 1e-6


def test_predicting_the_spatial_mean_scores_vrmse_one():
    x = smooth_field()
    mean = x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
    assert vrmse(mean, x).mean().item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(("frequency", "band"), [(2, "low"), (6, "mid"), (20, "high")])
def test_a_sinusoid_error_lands_in_the_band_of_its_frequency(frequency, band):
    x = smooth_field(batch=1, channels=1)
    grid = torch.arange(64, dtype=torch.float64) / 64
    wave = 0.5 * torch.sin(2 * math.pi * frequency * grid)[:, None].expand(64, 64)  # varies along x
    k, spectrum = isotropic_spectrum(wave[None, None])
    assert k[spectrum[0, 0].argmax()] == frequency  # the shell of its wavenumber
    errors = spectrum_rmse(x + wave, x)[0, 0]  # (bands,)
    hit = BAND_NAMES.index(band)
    assert errors[hit] > 0.1
    assert all(errors[b] < 1e-3 for b in range(3) if b != hit)


def test_a_calibrated_ensemble_has_spread_skill_one_and_an_under_dispersed_one_less():
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(256, 1, 8, 8, generator=g)  # (samples, C, H, W): what is known
    truth = centre + torch.randn(256, 1, 8, 8, generator=g)
    members = centre + torch.randn(64, 256, 1, 8, 8, generator=g)  # N = 64, the truth's distribution
    spread, skill = spread_skill(members, truth)
    assert (spread.mean() / skill.mean()).item() == pytest.approx(1.0, rel=0.05)
    narrow = centre + 0.3 * torch.randn(64, 256, 1, 8, 8, generator=g)
    spread, skill = spread_skill(narrow, truth)
    assert (spread.mean() / skill.mean()).item() < 0.5


def test_a_single_member_has_no_spread():
    truth = torch.randn(3, 2, 8, 8)
    spread, skill = spread_skill(truth[None] + 1.0, truth)
    assert torch.all(spread == 0) and torch.allclose(skill, torch.ones_like(skill))


def test_the_spectrum_matches_the_wells_power_spectrum():
    from types import SimpleNamespace

    from the_well.benchmark.metrics.spectral import power_spectrum

    x = smooth_field(batch=2, channels=2, size=32)
    k, ours = isotropic_spectrum(x)  # (B, C, K)
    # The same unit shells [n, n + 1), in the_well's units. the_well computes the wavenumbers in float32, so a
    # lattice point at an integer radius (3, 4 -> 5) lands on either side of an edge at exactly 2 pi n,
    # depending on the CPU's rounding: the edges sit a little below.
    edges = 2 * math.pi * torch.arange(0, 17, dtype=torch.float64) - 1e-4
    _, theirs, _ = power_spectrum(x.movedim(1, -1), SimpleNamespace(n_spatial_dims=2), bins=edges, sample_spacing=1 / 32)
    torch.testing.assert_close(ours, theirs[..., 1:, :].movedim(-1, -2), rtol=1e-4, atol=1e-8)


def gaussian_crps(y: float, mu: float, s: float) -> float:
    """CRPS of N(mu, s^2) at y (Gneiting & Raftery 2007): s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]."""
    z = (y - mu) / s
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return s * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def test_the_fair_crps_of_a_gaussian_ensemble_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    mu, s = 0.5, 2.0
    ys = [-4.0, -1.0, 0.5, 2.0, 6.0]
    truth = torch.tensor(ys, dtype=torch.float64)[:, None].expand(len(ys), 4000)  # (Y, points)
    members = mu + s * torch.randn(256, len(ys), 4000, generator=g, dtype=torch.float64)  # M = 256
    scores = fair_crps(members, truth).double().mean(dim=-1)  # (Y,)
    for y, score in zip(ys, scores.tolist()):
        assert score == pytest.approx(gaussian_crps(y, mu, s), rel=0.03), y


def test_one_member_gives_the_absolute_error():
    g = torch.Generator().manual_seed(1)
    truth = torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64)
    member = truth + torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64)
    assert torch.equal(fair_crps(member[None], truth), (member - truth).abs().float())
    scale = (truth.var(dim=(-2, -1)) + 1e-7).sqrt()  # Bessel-corrected, as the_well's VRMSE
    expected = (member - truth).abs().mean(dim=(-2, -1)) / scale  # (3, 2)
    torch.testing.assert_close(crps(member[None], truth), expected.float())
    shifted = truth + 0.7  # a constant error: |error| = RMSE, so CRPS = VRMSE with the same normaliser
    torch.testing.assert_close(crps(shifted[None], truth), vrmse(shifted, truth))


def test_the_sorted_fair_crps_equals_the_pairwise_sum():
    g = torch.Generator().manual_seed(2)
    members = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)  # M = 5
    truth = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    pairs = (members[:, None] - members[None, :]).abs().sum(dim=(0, 1))
    brute = (members - truth).abs().mean(dim=0) - pairs / (2 * 5 * 4)
    assert (_fair_crps(members, truth) - brute).abs().max() < 1e-10  # the float64 computation
    torch.testing.assert_close(fair_crps(members, truth), brute.float())  # what callers get: float32


def test_a_calibrated_ensemble_mean_beats_its_members_vrmse_by_sqrt_2m_over_m_plus_1():
    g = torch.Generator().manual_seed(3)
    members_n = 8
    centre = 3.0 * torch.randn(512, 1, 16, 16, generator=g)  # large spatial variance: the normaliser
    truth = centre + torch.randn(512, 1, 16, 16, generator=g)
    members = centre + torch.randn(members_n, 512, 1, 16, 16, generator=g)  # the truth's distribution
    of_mean = vrmse(members.mean(dim=0), truth).mean()
    of_members = vrmse(members, truth).mean(dim=0).mean()
    expected = math.sqrt(2 * members_n / (members_n + 1))
    assert (of_members / of_mean).item() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("members_n", [2, 4, 16])
def test_the_corrected_ensemble_mean_error_is_unbiased_where_the_plain_one_is_not(members_n):
    """Members ``mu + sigma z`` around a fixed centre, truth ``y``: the infinite ensemble's
    mean is ``mu``, so its squared VRMSE is ``<(mu - y)^2> / var(y)``, in closed form; the
    plain M-member mean exceeds it by ``sigma^2 / (M var(y))``, the corrected one does not."""
    g = torch.Generator().manual_seed(5)
    truth = 2.0 * torch.randn(64, 1, 16, 16, generator=g, dtype=torch.float64)  # (N, C, H, W)
    mu = truth + torch.randn(64, 1, 16, 16, generator=g, dtype=torch.float64)  # a centre off the truth
    sigma = 1.0
    members = mu + sigma * torch.randn(members_n, 64, 1, 16, 16, generator=g, dtype=torch.float64)
    var = truth.var(dim=(-2, -1), unbiased=True)
    exact = ((mu - truth).square().mean(dim=(-2, -1)) / var).mean()  # the infinite ensemble's VRMSE^2
    plain = vrmse(members.mean(dim=0), truth).double().square().mean()
    corrected = ensemble_mean_vrmse(members, truth).double().square().mean()
    assert corrected.item() == pytest.approx(exact.item(), rel=0.04)
    inflation = (sigma**2 / members_n / var).mean()  # what a finite ensemble adds, in closed form
    assert (plain - exact).item() == pytest.approx(inflation.item(), rel=0.15)
    assert (plain - corrected).item() > 0.5 * inflation.item()


def test_one_member_gets_the_plain_vrmse():
    g = torch.Generator().manual_seed(6)
    truth = torch.randn(3, 2, 8, 8, generator=g)
    member = truth + torch.randn(3, 2, 8, 8, generator=g)
    assert torch.equal(ensemble_mean_vrmse(member[None], truth), vrmse(member, truth))


def test_the_spread_skill_ratio_is_one_per_field_whatever_its_scale():
    g = torch.Generator().manual_seed(4)
    scale = torch.tensor([1e-2, 1.0, 100.0])[:, None, None]  # C = 3 fields, (C, 1, 1)
    centre = scale * torch.randn(128, 3, 16, 16, generator=g)
    truth = centre + scale * torch.randn(128, 3, 16, 16, generator=g)
    members = centre + scale * torch.randn(16, 128, 3, 16, 16, generator=g)
    ratio = spread_skill_ratio(members, truth)
    assert ratio.shape == (128, 3) and ratio.dtype == torch.float32
    for c, value in enumerate(ratio.mean(dim=0).tolist()):
        assert value == pytest.approx(1.0, rel=0.05), c
    narrow = centre + 0.3 * scale * torch.randn(16, 128, 3, 16, 16, generator=g)
    assert torch.all(spread_skill_ratio(narrow, truth).mean(dim=0) < 0.5)
    assert torch.isfinite(spread_skill_ratio(truth[None].expand(2, -1, -1, -1, -1), truth)).all()  # skill 0


def test_a_calibrated_rank_histogram_is_flat_and_an_under_dispersed_one_u_shaped():
    g = torch.Generator().manual_seed(5)
    centre = torch.randn(200_000, generator=g)
    truth = centre + torch.randn(200_000, generator=g)
    members = centre + torch.randn(8, 200_000, generator=g)  # M = 8, the truth's distribution
    counts = rank_histogram(members, truth, generator=g)
    assert counts.shape == (9,) and counts.dtype == torch.int64 and counts.sum() == 200_000
    expected = 200_000 / 9
    assert ((counts - expected).abs() / expected).max() < 0.05
    assert ((counts - expected).square() / expected).sum() < 30  # chi-square, 8 dof: p ~ 2e-4
    narrow = rank_histogram(centre + 0.3 * torch.randn(8, 200_000, generator=g), truth, generator=g)
    assert narrow.sum() == 200_000
    assert min(narrow[0], narrow[-1]) > 2 * narrow[4]


def test_ties_are_shared_among_ranks():
    g = torch.Generator().manual_seed(6)
    truth = torch.randn(90_000, generator=g)
    counts = rank_histogram(truth[None].expand(8, -1), truth, generator=g)  # every member ties
    assert counts.sum() == 90_000
    assert ((counts - 10_000).abs() / 10_000).max() < 0.05  # not all in bin 0
    above = rank_histogram(truth[None] - 1.0 + torch.zeros(8, 1), truth, generator=g)  # no ties
    assert above[-1] == 90_000


def test_the_rank_histogram_figure_saves_to_png(tmp_path):
    fig = plots.rank_histogram(torch.tensor([30, 10, 8, 12, 40]), "rank histogram")
    try:
        path = tmp_path / "rank_histogram.png"
        fig.savefig(path)
        assert 1_000 < path.stat().st_size < 200_000
    finally:
        plots.plt.close(fig)


def test_the_rollout_animation_has_a_frame_per_lead_on_the_truths_scale(tmp_path):
    from PIL import Image

    truth = torch.zeros(3, 8, 8).numpy()
    truth[:, 6, 1] = 1.0  # one hot pixel: x = 6 (right), y = 1 (bottom), as imshow(origin="lower") shows it
    path = tmp_path / "rollout.gif"
    plots.rollout_animation(truth, truth.copy(), [4, 8, 12], "density", str(path), size=64)
    gif = Image.open(path)
    assert gif.n_frames == 3
    frame = torch.from_numpy(np.asarray(gif.convert("RGB"), dtype=np.float32))  # (rows, columns, 3)
    truth_panel = frame[18:, :64]  # below the caption, the first panel
    bright = truth_panel.sum(dim=-1)
    row, column = divmod(int(bright.argmax()), bright.shape[1])
    assert column // 8 == 6 and (63 - row) // 8 == 1
