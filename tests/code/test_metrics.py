"""Metrics against hand-computed cases: exact predictions score 0, the spatial mean scores
VRMSE ~1, a sinusoid's spectral error lands in its band, calibrated ensembles have a
spread-skill ratio ~1 and under-dispersed ones clearly less."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.metrics import BAND_NAMES, isotropic_spectrum, spectrum_rmse, spread_skill, vrmse


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
    edges = 2 * math.pi * torch.arange(0, 17, dtype=torch.float64)  # the same unit shells, in the_well's units
    _, theirs, _ = power_spectrum(x.movedim(1, -1), SimpleNamespace(n_spatial_dims=2), bins=edges, sample_spacing=1 / 32)
    torch.testing.assert_close(ours, theirs[..., 1:, :].movedim(-1, -2), rtol=1e-4, atol=1e-8)
