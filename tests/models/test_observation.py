"""The observation encoder (models/observation.py): shapes, missing readings, and one call
per reading equal to one call on the whole sequence (how the filter uses it)."""

from __future__ import annotations

import torch

from models.observation import ObservationEncoder


def _encoder() -> ObservationEncoder:
    torch.manual_seed(0)
    encoder = ObservationEncoder(sensors=6, latent_shape=(2, 2, 2), conditions=1, hidden=16)
    encoder.fit(torch.arange(6) % 3, torch.randint(0, 8, (6, 2)), torch.full((6,), 2.0), torch.full((6,), 0.5),
                torch.tensor([[1.2], [1.6]]))
    return encoder.eval()


def test_shapes_and_missing_readings():
    encoder = _encoder()
    readings = torch.randn(3, 5, 6)
    readings[0, 1] = float("nan")  # a whole reading missing
    readings[1, :, 2] = float("nan")  # a sensor that never reads
    latents, parameters, _ = encoder(readings)
    assert latents.shape == (3, 5, 2, 2, 2) and parameters.shape == (3, 5, 1)
    assert torch.isfinite(latents).all() and torch.isfinite(parameters).all()
    assert not torch.equal(encoder(readings.nan_to_num(3.0))[0][0], latents[0])  # a reading differs from none


def test_one_reading_at_a_time_equals_the_whole_sequence():
    encoder = _encoder()
    readings = torch.randn(1, 7, 6)
    whole, _, _ = encoder(readings)
    state, steps = None, []
    for k in range(7):
        latent, _, state = encoder(readings[:, k : k + 1], state)
        steps.append(latent)
    assert torch.allclose(torch.cat(steps, dim=1), whole, atol=1e-6)


def test_parameters_start_at_the_training_mean_scale():
    """The parameter head is standardised: an untrained encoder answers near the training
    split's mean, within a few of its standard deviations."""
    encoder = _encoder()
    _, parameters, _ = encoder(torch.randn(4, 3, 6))
    assert (parameters - 1.4).abs().max() < 3 * 0.2 * 4


def test_calibration_whitens_the_held_out_errors():
    """With shrinkage 1 the error model is the errors' variances; with a little shrinkage the
    whitened errors have (nearly) identity covariance, correlations included."""
    encoder = _encoder()
    torch.manual_seed(1)
    mixing = torch.tensor([[1.0, 0.9], [0.0, 0.4]])
    errors = (torch.randn(4000, 8).reshape(4000, 4, 2) @ mixing).reshape(4000, 2, 2, 2)
    encoder.calibrate(errors, torch.tensor([0.05]), shrinkage=1e-3)
    white = errors.flatten(1) @ encoder.latent_whitening.T
    assert torch.allclose(torch.cov(white.T), torch.eye(8), atol=0.08)
    encoder.calibrate(errors, torch.tensor([0.05]), shrinkage=1.0)
    diagonal = encoder.latent_whitening
    assert torch.allclose(diagonal, torch.diag(1 / errors.flatten(1).std(dim=0)), atol=1e-3)
    log_p = encoder.latent_log_likelihood(torch.zeros(2, 2, 2))
    assert log_p(torch.zeros(3, 8)).eq(0).all() and (log_p(torch.ones(1, 8)) < 0).all()
