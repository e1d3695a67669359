r"""The observation encoder of LD-EnSF (Xiao, Si and Chen, ICLR 2026, section 3.3): sparse
sensor readings straight to the latent space and the simulation's parameters.

At each observation time :math:`k` the readings :math:`y_k \in \mathbb{R}^S` of a fixed
sensor layout (``S`` sensors; missing readings masked out) are standardised per sensor,
concatenated with their mask :math:`m_k \in \{0, 1\}^S` and fed to an LSTM, whose state
:math:`h_k` summarises the sequence so far; two linear heads read it:

.. math::

    h_k = \mathrm{LSTM}\big(W_\text{in} [m_k \odot \tilde y_k,\ m_k],\ h_{k-1}\big), \qquad
    \hat z_k = W_z h_k \in \mathbb{R}^{c \times h \times w}, \qquad
    \hat p_k = \mu_p + \sigma_p \odot W_p h_k \in \mathbb{R}^K.

It is trained on the latent caches (the targets are the autoencoder's latents of the true
states) with noisy, randomly dropped readings, so that it degrades gracefully when sensors
fail (the paper's robustness argument). Its error on held-out data, calibrated after
training (:meth:`ObservationEncoder.calibrate`), makes it a Gaussian likelihood in the
latent space, :math:`p(\hat z_k \mid z_k) = \mathcal{N}(z_k, \Sigma_z)` (its covariance shrunk
toward the diagonal, :meth:`ObservationEncoder.calibrate`),
which the ensemble score filter uses without decoding anything.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["ObservationEncoder"]


class ObservationEncoder(nn.Module):
    r"""Sensor-reading sequences ``(B, T, S)`` (physical units, NaN = missing) to latent
    estimates ``(B, T, c, h, w)`` and parameter estimates ``(B, T, K)`` (see the module
    docstring).

    Args:
        sensors: ``S``, the sensors of the layout.
        latent_shape: ``(c, h, w)``, the autoencoder's latent shape.
        conditions: ``K``, the conditioning entries estimated (e.g. ``gamma``).
        hidden: width of the input projection and of the LSTM state.
        layers: LSTM layers.
    """

    def __init__(self, sensors: int, latent_shape: tuple[int, int, int], conditions: int, hidden: int = 128,
                 layers: int = 1):
        super().__init__()
        self.sensors, self.latent_shape, self.conditions = sensors, tuple(latent_shape), conditions
        self.hidden, self.layers = hidden, layers
        self.inputs = nn.Sequential(nn.Linear(2 * sensors, hidden), nn.SiLU())
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.to_latent = nn.Linear(hidden, int(torch.tensor(latent_shape).prod()))
        self.to_parameters = nn.Linear(hidden, conditions)
        # The layout and the standardisation of the inputs and the parameters (set from the training
        # split), and the calibrated error standard deviations of both estimates (set on held-out data).
        for name, size in (("reading_mean", sensors), ("reading_std", sensors), ("parameter_mean", conditions),
                           ("parameter_std", conditions), ("parameter_error", conditions)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))
        self.register_buffer("latent_whitening", torch.eye(int(torch.tensor(latent_shape).prod())))
        self.register_buffer("channel", torch.zeros(sensors, dtype=torch.long))
        self.register_buffer("index", torch.zeros(sensors, 2, dtype=torch.long))

    def fit(self, channel: Tensor, index: Tensor, mean: Tensor, std: Tensor, parameters: Tensor) -> None:
        """Set the layout, sensor ``s`` reading channel ``channel[s]`` at grid point
        ``index[s]`` (``(S,)``, ``(S, 2)``), and the standardisation: ``mean``, ``std``
        ``(S,)`` of the readings and the parameters ``(N, K)`` of the training split."""
        self.channel.copy_(channel)
        self.index.copy_(index)
        self.reading_mean.copy_(mean)
        self.reading_std.copy_(std.clamp_min(1e-12))
        self.parameter_mean.copy_(parameters.mean(dim=0))
        self.parameter_std.copy_(parameters.std(dim=0, correction=0).clamp_min(1e-6))

    def forward(self, readings: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """``(latents (B, T, c, h, w), parameters (B, T, K), LSTM state)`` of ``readings
        (B, T, S)``; pass the returned state back to continue the sequence one call at a time."""
        seen = torch.isfinite(readings)
        x = torch.where(seen, (readings - self.reading_mean) / self.reading_std, 0.0)
        h, state = self.lstm(self.inputs(torch.cat([x, seen.to(x.dtype)], dim=-1)), state)
        latents = self.to_latent(h).unflatten(-1, self.latent_shape)
        return latents, self.parameter_mean + self.parameter_std * self.to_parameters(h), state

    def calibrate(self, latent_errors: Tensor, parameter_error: Tensor, shrinkage: float = 0.1) -> None:
        r"""Set the error model from held-out errors: ``latent_errors (M, c, h, w)`` give the
        covariance :math:`\Sigma = (1 - \lambda) \hat\Sigma + \lambda\, \mathrm{diag}\,
        \hat\Sigma` (``shrinkage`` :math:`\lambda`: the sample covariance shrunk toward its
        diagonal), kept as the whitening :math:`W` with :math:`W^T W = \Sigma^{-1}`;
        ``parameter_error (K,)`` are the parameters' error standard deviations."""
        errors = latent_errors.flatten(1).double()
        covariance = torch.cov(errors.T, correction=1).reshape(errors.shape[1], errors.shape[1])
        if not 0 < shrinkage <= 1:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        covariance = (1 - shrinkage) * covariance + shrinkage * torch.diag(covariance.diagonal().clamp_min(1e-12))
        precision = torch.linalg.inv(covariance)
        self.latent_whitening.copy_(torch.linalg.cholesky(precision).T.to(self.latent_whitening.dtype))
        self.parameter_error.copy_(parameter_error.clamp_min(1e-6))

    def latent_log_likelihood(self, estimate: Tensor) -> Callable[[Tensor], Tensor]:
        r"""The estimate ``(c, h, w)`` as a likelihood of latents, ``z (N, c h w) ->
        -\frac{1}{2} |W (z - \hat z)|^2`` per member (:meth:`calibrate`)."""
        target = estimate.flatten()

        def log_p(z: Tensor) -> Tensor:
            return -0.5 * ((z - target) @ self.latent_whitening.T).square().sum(dim=-1)

        return log_p

    def arguments(self) -> dict[str, object]:
        """Constructor arguments, to rebuild the module."""
        return {"sensors": self.sensors, "latent_shape": list(self.latent_shape), "conditions": self.conditions,
                "hidden": self.hidden, "layers": self.layers}
