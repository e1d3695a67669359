"""The LETKF (pipelines.evaluation.letkf) against the Kalman filter's closed form."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluation.letkf import LETKF, gaspari_cohn


def _problem(seed: int = 0, k: int = 8, n: int = 5, p: int = 3):
    rng = np.random.default_rng(seed)
    ensemble = rng.normal(size=(k, n)) @ rng.normal(size=(n, n)) + rng.normal(size=n)
    h = rng.normal(size=(p, n))
    return ensemble, h, rng.normal(size=p), rng.uniform(0.2, 1.0, size=p)


def test_without_localisation_it_is_the_kalman_filter_of_the_ensemble_covariance():
    """A linear-Gaussian toy: analysis mean and covariance equal K = P H^T (H P H^T + R)^-1,
    x_a = x_f + K (y - H x_f), P_a = (I - K H) P with P the ensemble covariance."""
    ensemble, h, y, variance = _problem()
    analysis = LETKF().analysis(ensemble, ensemble @ h.T, y, variance)
    prior_mean, p = ensemble.mean(axis=0), np.cov(ensemble.T)
    gain = p @ h.T @ np.linalg.inv(h @ p @ h.T + np.diag(variance))
    np.testing.assert_allclose(analysis.mean(axis=0), prior_mean + gain @ (y - h @ prior_mean), atol=1e-10)
    np.testing.assert_allclose(np.cov(analysis.T), (np.eye(len(p)) - gain @ h) @ p, atol=1e-10)


def test_inflation_widens_the_prior_as_the_kalman_filter_of_the_inflated_covariance():
    ensemble, h, y, variance = _problem(seed=1)
    analysis = LETKF(inflation=1.5).analysis(ensemble, ensemble @ h.T, y, variance)
    p = 1.5 * np.cov(ensemble.T)
    gain = p @ h.T @ np.linalg.inv(h @ p @ h.T + np.diag(variance))
    np.testing.assert_allclose(analysis.mean(axis=0), ensemble.mean(axis=0) + gain @ (y - h @ ensemble.mean(axis=0)),
                               atol=1e-10)


def test_localisation_leaves_far_points_alone_and_updates_near_ones():
    """Five state elements on a line, one observation of element 0: with a radius of 1, the
    elements 2 and more away (beyond 2 radii) keep their forecast exactly."""
    ensemble, _, _, _ = _problem(seed=2)
    points = np.arange(5.0)[:, None]
    analysis = LETKF(radius=1.0).analysis(ensemble, ensemble[:, :1], np.array([3.0]), np.array([0.1]), points,
                                          np.array([[0.0]]))
    np.testing.assert_allclose(analysis[:, 2:], ensemble[:, 2:], rtol=0, atol=1e-12)
    assert abs(analysis[:, 0].mean() - 3.0) < abs(ensemble[:, 0].mean() - 3.0)


def test_gaspari_cohn_is_a_correlation_with_compact_support():
    d = np.linspace(0, 3, 31)
    rho = gaspari_cohn(d, 1.0)
    assert rho[0] == pytest.approx(1.0) and (rho[d >= 2] == 0).all() and (np.diff(rho) <= 1e-12).all()
    assert gaspari_cohn(d, float("inf")).tolist() == [1.0] * 31


def test_a_finite_radius_needs_positions():
    ensemble, h, y, variance = _problem()
    with pytest.raises(ValueError, match="positions"):
        LETKF(radius=1.0).analysis(ensemble, ensemble @ h.T, y, variance)


def test_the_clawpack_letkf_pulls_a_perturbed_ensemble_to_the_readings():
    """A 16^2 Euler run is the truth; 12 members start from it with 20 % relative noise.
    Reading density and pressure at a quarter of the points for two cycles brings the
    members (their RMSE against the truth, averaged) at least twice as close to the truth as
    the same members forecast without readings. (The ensemble mean of a perfect model with
    white initial noise is already close to the truth: the members are what the filter moves.)"""
    from pipelines.settings.simulate import SimulateConfig
    from tests.conftest import configured
    from pipelines.data import euler
    from pipelines.evaluation.letkf import ClawpackLETKF
    from pipelines.stages.simulate import draw_quadrants

    cfg = configured(SimulateConfig, "simulate", resolution=16)
    gamma, stride = 1.4, 2
    q = euler.solve(euler.conserved(draw_quadrants(np.random.default_rng(3), cfg), gamma), gamma, "periodic", cfg.dt,
                    2 * stride, cfg.cfl)
    channels = ["energy", "density", "pressure", "momentum_x", "momentum_y"]
    well = euler.to_well_fields(q, gamma)
    fields = np.stack([well["energy"], well["density"], well["pressure"], well["momentum"][..., 0],
                       well["momentum"][..., 1]], axis=1)  # (T, C, H, W)
    rng = np.random.default_rng(0)
    index = np.stack(np.unravel_index(rng.choice(256, 64, replace=False), (16, 16)), axis=1)
    channel = np.repeat([1, 2], 64)
    index = np.tile(index, (2, 1))
    readings = np.stack([fields[t][channel, index[:, 0], index[:, 1]] for t in (stride, 2 * stride)])
    variance = np.full(len(channel), 1e-4)

    def run(values: np.ndarray) -> np.ndarray:
        model = ClawpackLETKF(LETKF(radius=0.2, inflation=1.05), channels, gamma, "periodic", cfg.dt, stride, cfg.cfl)
        return model.run(fields[0], 12, 0.2, channel, index, values, variance, np.random.default_rng(1))

    assimilated, free = run(readings), run(np.full_like(readings, np.nan))
    assert assimilated.shape == (12, 2, 5, 16, 16) and np.isfinite(assimilated).all()
    for c in (1, 2):  # density, pressure
        error = lambda ensemble: np.sqrt(((ensemble[:, -1, c] - fields[-1, c]) ** 2).mean())  # noqa: E731
        assert error(assimilated) < 0.5 * error(free), (channels[c], error(assimilated), error(free))
