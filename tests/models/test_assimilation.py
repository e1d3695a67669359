"""The ensemble score filter (models.assimilation) and the sensor likelihood of the latent
assimilator (pipelines.serving.assimilator), on problems whose answer is known."""

from __future__ import annotations

import pytest
import torch

from models.assimilation import ScoreFilter
from pipelines.serving.assimilator import Sensors


def _prior(members: int, shape: tuple[int, ...], mean: float = 3.0, std: float = 2.0, seed: int = 0) -> torch.Tensor:
    return mean + std * torch.randn(members, *shape, generator=torch.Generator().manual_seed(seed))


def test_without_observations_the_analysis_keeps_the_forecast_distribution():
    forecast = _prior(4000, (3,))
    analysis = ScoreFilter(steps=20, eps_beta=0.5).analysis(forecast, None, torch.Generator().manual_seed(1))
    torch.testing.assert_close(analysis.mean(0), forecast.mean(0), atol=0.15, rtol=0)  # std error of a mean ~0.03
    torch.testing.assert_close(analysis.var(0) / forecast.var(0), torch.ones(3), atol=0.1, rtol=0)


def test_a_linear_gaussian_observation_pulls_the_observed_dimension_only():
    """Prior N(0, 1) per dimension, y = x_0 + N(0, 0.5^2), y = 1: the Kalman posterior of
    x_0 is N(0.8, 0.2). EnSF's damped likelihood score is an approximation (it comes out
    sharper: about N(0.87, 0.12) here), so the test asks for the right direction and size,
    and for the unobserved dimensions to stay as they were."""
    forecast = _prior(4000, (3,), mean=0.0, std=1.0)
    analysis = ScoreFilter(steps=50, eps_beta=1.0).analysis(
        forecast, lambda z: -0.5 * ((z[:, 0] - 1.0) / 0.5) ** 2, torch.Generator().manual_seed(1))
    assert 0.7 < float(analysis[:, 0].mean()) < 0.95
    assert 0.08 < float(analysis[:, 0].var()) < 0.3
    # Euler-Maruyama at 50 steps gives the prior back up to ~7 % wider (it vanishes with more steps)
    torch.testing.assert_close(analysis[:, 1:].var(0), torch.ones(2), atol=0.15, rtol=0)
    torch.testing.assert_close(analysis[:, 1:].mean(0), torch.zeros(2), atol=0.1, rtol=0)


def test_spread_shrinks_at_the_sensors_and_not_far_from_them():
    """Latents that are the field itself (an identity decoder), independent per grid point:
    sensors in one corner of a 16^2 grid tighten the ensemble there and nowhere else."""
    forecast = _prior(64, (1, 16, 16))
    index = torch.tensor([[i, j] for i in range(3) for j in range(3)])
    sensors = Sensors(torch.zeros(len(index), dtype=torch.long), index, torch.full((len(index),), 0.2))
    truth = torch.full((len(index),), 4.0)
    log_p = sensors.log_likelihood(truth, lambda z: z)
    analysis = ScoreFilter(steps=30, eps_beta=1.0).analysis(forecast, log_p, torch.Generator().manual_seed(2))
    spread, prior = analysis.std(0)[0], forecast.std(0)[0]
    near, far = spread[:3, :3] / prior[:3, :3], spread[8:, 8:] / prior[8:, 8:]
    assert float(near.max()) < 0.5 < 0.8 < float(far.mean()) < 1.2
    assert float((analysis.mean(0)[0, :3, :3] - 4.0).abs().max()) < 0.5  # pulled to the readings


def test_a_noise_free_fully_observed_state_is_recovered():
    """Every grid point read with little noise: the analysis mean is the truth, to the
    noise (the decoder here is exact, so there is no reconstruction error to add)."""
    truth = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(3))
    forecast = truth + _prior(16, (1, 8, 8), mean=0.0, std=1.0)
    index = torch.tensor([[i, j] for i in range(8) for j in range(8)])
    sensors = Sensors(torch.zeros(64, dtype=torch.long), index, torch.full((64,), 0.01))
    log_p = sensors.log_likelihood(sensors.read(truth[None])[0], lambda z: z)
    analysis = ScoreFilter(steps=100, eps_beta=1.0).analysis(forecast, log_p,
                                                                           torch.Generator().manual_seed(4))
    error = (analysis.mean(0) - truth).square().mean().sqrt()
    prior_error = (forecast.mean(0) - truth).square().mean().sqrt()
    assert float(error) < 0.1 * float(prior_error)


def test_missing_readings_drop_out_and_all_missing_means_no_likelihood():
    sensors = Sensors(torch.tensor([0, 0]), torch.tensor([[0, 0], [1, 1]]), torch.tensor([1.0, 1.0]))
    assert sensors.log_likelihood(torch.tensor([float("nan")] * 2), lambda z: z) is None
    log_p = sensors.log_likelihood(torch.tensor([2.0, float("nan")]), lambda z: z)
    z = torch.zeros(1, 1, 2, 2)
    z[0, 0, 1, 1] = 100.0  # the missing sensor's value: must not count
    assert float(log_p(z)[0]) == pytest.approx(-0.5 * 2.0**2)


@pytest.mark.parametrize(("settings", "name"), [({"steps": 0}, "steps"), ({"eps_beta": 0.0}, "eps_beta"),
                                                ({"eps_alpha": 1.0}, "eps_alpha"), ({"inflation": 0.9}, "inflation"),
                                                ({"min_spread": 0.0}, "min_spread")])
def test_bad_settings_are_refused_by_name(settings, name):
    with pytest.raises(ValueError, match=name):
        ScoreFilter(**settings)
