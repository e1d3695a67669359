r"""The local ensemble transform Kalman filter (LETKF; Hunt, Kostelich and Szunyogh 2007,
Physica D 230, "Efficient data assimilation for spatiotemporal chaos"), the full-space
baseline of latent data assimilation.

For an ensemble of ``k`` states :math:`x_j \in \mathbb{R}^n` with mean :math:`\bar x` and
anomalies :math:`X = [x_j - \bar x]` (``n x k``), observations :math:`y \in \mathbb{R}^p`
with error variances :math:`r`, and the ensemble's observed anomalies
:math:`Y = [H x_j - \overline{H x}]`, each grid point :math:`g` is analysed on its own with
the observations near it, each weighted by :math:`\rho_{g,s}` (Gaspari and Cohn 1999,
"R-localisation": :math:`R^{-1}_{loc} = \mathrm{diag}(\rho / r)`):

.. math::

    \tilde P = \left[(k - 1) I / \lambda + Y^T R^{-1}_{loc} Y\right]^{-1}, \qquad
    \bar w = \tilde P Y^T R^{-1}_{loc} (y - \overline{H x}), \qquad
    W = \left[(k - 1) \tilde P\right]^{1/2},

    x^a_j(g) = \bar x(g) + X(g) (\bar w + W_{:, j}),

with multiplicative inflation :math:`\lambda`. Without localisation (an infinite radius)
and with a linear :math:`H`, the analysis mean and covariance are the Kalman filter's with
the ensemble covariance :math:`X X^T / (k - 1)` as prior.

:class:`LETKF` is NumPy only (states are any ``(k, n)`` arrays, the observation operator is
the caller's); :class:`ClawpackLETKF` runs it on Euler states with Clawpack as the forecast
model; :class:`LETKFAssimilator` is that as an assimilation method (``letkf`` in
:data:`pipelines.serving.methods.METHODS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pipelines.data.euler import conserved, solve, to_well_fields
from pipelines.serving.assimilator import Sensors
from pipelines.serving.methods import Analysis, Method, Setup, register

__all__ = ["LETKF", "ClawpackLETKF", "LETKFAssimilator", "euler_parameters", "gaspari_cohn"]


def gaspari_cohn(distance: np.ndarray, radius: float) -> np.ndarray:
    """Gaspari and Cohn's (1999, eq. 4.10) compactly supported correlation, 1 at distance 0
    and 0 beyond ``2 * radius``; ``radius = inf``: 1 everywhere (no localisation)."""
    if np.isinf(radius):
        return np.ones_like(distance, dtype=np.float64)
    z = np.abs(distance) / radius
    near = -0.25 * z**5 + 0.5 * z**4 + 0.625 * z**3 - 5 / 3 * z**2 + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        far = z**5 / 12 - 0.5 * z**4 + 0.625 * z**3 + 5 / 3 * z**2 - 5 * z + 4 - 2 / (3 * z)
    return np.where(z <= 1, near, np.where(z < 2, far, 0.0))


@dataclass(frozen=True)
class LETKF:
    """The LETKF analysis (see the module docstring): ``radius`` of the localisation (in the
    units of the positions given to :meth:`analysis`), multiplicative ``inflation`` >= 1."""

    radius: float = float("inf")
    inflation: float = 1.0

    def __post_init__(self) -> None:
        if not self.radius > 0 or self.inflation < 1:
            raise ValueError(f"need radius > 0 and inflation >= 1; got {self.radius}, {self.inflation}")

    def analysis(self, ensemble: np.ndarray, observed: np.ndarray, y: np.ndarray, variance: np.ndarray,
                 points: np.ndarray | None = None, sensors: np.ndarray | None = None) -> np.ndarray:
        """The analysis ensemble ``(k, n)``.

        Args:
            ensemble: forecast states ``(k, n)``; state element ``i`` sits at ``points[i]``.
            observed: ``H x_j`` for each member, ``(k, p)``.
            y: observations ``(p,)``; variance: their error variances ``(p,)``.
            points: ``(n, d)`` positions of the state elements; sensors: ``(p, d)`` positions
                of the observations (both needed unless ``radius`` is infinite).
        """
        k = ensemble.shape[0]
        mean, anomalies = ensemble.mean(axis=0), ensemble - ensemble.mean(axis=0)  # (n,), (k, n)
        y_mean = observed.mean(axis=0)
        y_anom = observed - y_mean  # (k, p)
        if np.isinf(self.radius):
            where, rho = np.zeros(ensemble.shape[1], dtype=np.int64), np.ones((1, len(y)))
        else:
            if points is None or sensors is None:
                raise ValueError("a finite localisation radius needs the state's and the sensors' positions")
            unique, where = np.unique(points, axis=0, return_inverse=True)
            rho = gaspari_cohn(np.linalg.norm(unique[:, None, :] - sensors[None, :, :], axis=-1), self.radius)
        transforms = self._transforms(y_anom, y - y_mean, rho / variance, k)  # (G, k, k), one per position
        return mean + np.einsum("nij,in->jn", transforms[where.ravel()], anomalies)

    def _transforms(self, y_anom: np.ndarray, innovation: np.ndarray, precision: np.ndarray, k: int) -> np.ndarray:
        """``w_mean + W`` for each row of localised precisions ``(G, p)``: ``(G, k, k)``,
        column ``j`` the weights of member ``j`` (batched over positions)."""
        inverse = (k - 1) / self.inflation * np.eye(k) + np.einsum("ip,gp,jp->gij", y_anom, precision, y_anom)
        values, vectors = np.linalg.eigh(inverse)  # (G, k), (G, k, k)
        p_tilde = (vectors / values[:, None, :]) @ vectors.transpose(0, 2, 1)
        w_mean = np.einsum("gij,gj->gi", p_tilde, np.einsum("ip,gp,p->gi", y_anom, precision, innovation))
        w = (vectors * np.sqrt((k - 1) / values)[:, None, :]) @ vectors.transpose(0, 2, 1)
        return w_mean[:, :, None] + w



@dataclass
class ClawpackLETKF:
    """The full-space twin of the latent filter: an ensemble of Euler states advanced by
    Clawpack (``pipelines.data.euler``, the solver that made the data: a perfect model) and
    corrected by the :class:`LETKF` at each reading.

    States are The Well's Euler fields ``(C, H, W)`` in ``channels`` order (``energy``,
    ``density``, ``pressure``, ``momentum_x``, ``momentum_y``); the filter analyses the
    conserved variables and reads the sensors from the fields each member implies (pressure
    is nonlinear in them). An analysis that leaves density or pressure non-positive is
    repaired to ``floor`` times the field's mean (counted in ``repairs``)."""

    filter: LETKF
    channels: list[str]
    gamma: float
    boundary: str
    dt: float
    stride: int
    cfl: float
    floor: float = 1e-3
    repairs: int = 0

    def to_conserved(self, fields: np.ndarray) -> np.ndarray:
        """``(..., C, H, W)`` Well fields to conserved ``(..., 4, H, W)``."""
        c = {name: fields[..., self.channels.index(name), :, :] for name in
             ("density", "momentum_x", "momentum_y", "energy")}
        return np.stack([c["density"], c["momentum_x"], c["momentum_y"], c["energy"]], axis=-3)

    def to_fields(self, q: np.ndarray) -> np.ndarray:
        """Conserved ``(k, 4, H, W)`` to Well fields ``(k, C, H, W)``."""
        well = to_well_fields(q, self.gamma)
        named = {"energy": well["energy"], "density": well["density"], "pressure": well["pressure"],
                 "momentum_x": well["momentum"][..., 0], "momentum_y": well["momentum"][..., 1]}
        return np.stack([named[name] for name in self.channels], axis=1)

    def _repair(self, q: np.ndarray) -> np.ndarray:
        """Density and pressure kept positive (energy raised to the kinetic energy plus the
        floor pressure's share)."""
        rho_floor = self.floor * max(float(q[:, 0].mean()), 1e-12)
        bad = q[:, 0] < rho_floor
        q[:, 0] = np.where(bad, rho_floor, q[:, 0])
        kinetic = 0.5 * (q[:, 1] ** 2 + q[:, 2] ** 2) / q[:, 0]
        p_floor = self.floor * max(float(((self.gamma - 1) * (q[:, 3] - kinetic)).clip(min=0).mean()), 1e-12)
        low = q[:, 3] < kinetic + p_floor / (self.gamma - 1)
        q[:, 3] = np.where(low, kinetic + p_floor / (self.gamma - 1), q[:, 3])
        self.repairs += int(bad.sum() + low.sum())
        return q

    def run(self, initial: np.ndarray, members: int, perturbation: float, channel: np.ndarray, index: np.ndarray,
            values: np.ndarray, variance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """From the Well state ``initial (C, H, W)``: ``members`` states, each density,
        pressure and velocity perturbed by ``perturbation`` relative noise, then one cycle per
        row of ``values (T, S)`` (sensor ``s`` reads channel ``channel[s]`` at ``index[s]``;
        NaN: missing). Returns the analysis ensembles as Well fields ``(k, T, C, H, W)``."""
        q0 = self.to_conserved(initial)
        rho, mx, my, energy = q0
        u, v = mx / rho, my / rho
        p = (self.gamma - 1) * (energy - 0.5 * rho * (u**2 + v**2))
        noise = rng.standard_normal((members, 4, *rho.shape))
        speed = max(float(np.sqrt(u**2 + v**2).std()), 1e-3)
        primitive = np.stack([rho * (1 + perturbation * noise[:, 0]), u + perturbation * speed * noise[:, 1],
                              v + perturbation * speed * noise[:, 2], p * (1 + perturbation * noise[:, 3])], axis=1)
        q = self._repair(np.stack([conserved(state, self.gamma) for state in primitive]))
        h, w = rho.shape
        points = np.stack(np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij"), axis=-1)
        points = np.broadcast_to(points.reshape(1, h * w, 2), (4, h * w, 2)).reshape(-1, 2)  # per conserved element
        sensors = (index + 0.5) / np.array([h, w])
        out = []
        for row in values:
            q = np.stack([solve(member, self.gamma, self.boundary, self.dt, self.stride, self.cfl)[-1] for member in q])
            seen = np.isfinite(row)
            if seen.any():
                observed = self.to_fields(q)[:, channel[seen], index[seen, 0], index[seen, 1]]  # (k, S')
                analysed = self.filter.analysis(q.reshape(len(q), -1), observed, row[seen], variance[seen], points,
                                                sensors[seen])
                q = self._repair(analysed.reshape(q.shape))
            out.append(self.to_fields(q))
        return np.stack(out, axis=1)


def euler_parameters(cond: Tensor, names: Sequence[str]) -> tuple[float, str]:
    """gamma and the boundary type (``open`` or ``periodic``) of an Euler trajectory, from its
    conditioning (The Well's ``gamma`` and ``bc_0_lo_*`` entries)."""
    names = list(names)
    if "gamma" not in names or "bc_0_lo_periodic" not in names:
        raise ValueError(f"assimilate.enkf: the Clawpack baseline needs an Euler dataset with gamma and boundary "
                         f"conditions; this one's conditioning is {names} (set assimilate.enkf.trajectories: 0)")
    periodic = float(cond[names.index("bc_0_lo_periodic")]) > 0.5
    return float(cond[names.index("gamma")]), "periodic" if periodic else "open"


@dataclass
class LETKFAssimilator:
    """:class:`ClawpackLETKF` as an assimilation method: a fresh one per :meth:`run`, gamma and
    the boundary from the trajectory's conditioning (entries ``condition_names``), its
    perturbations drawn from the generator's seed; ``repairs`` counts over all runs."""

    filter: LETKF
    channels: list[str]
    condition_names: list[str]
    members: int
    perturbation: float
    dt: float
    stride: int
    cfl: float
    repairs: int = 0
    forecaster: None = None
    estimated: tuple[str, ...] = ()

    def run(self, initial: Tensor, cond: Tensor, sensors: Sensors, readings: Tensor,
            generator: torch.Generator | None = None) -> Analysis:
        """The analysis ensembles of :meth:`ClawpackLETKF.run` as ``states (N, T, C, H, W)``."""
        gamma, boundary = euler_parameters(cond, self.condition_names)
        model = ClawpackLETKF(self.filter, self.channels, gamma, boundary, self.dt, self.stride, self.cfl)
        rng = np.random.default_rng(None if generator is None else generator.initial_seed())
        ensemble = model.run(initial.double().numpy(), self.members, self.perturbation, sensors.channel.numpy(),
                             sensors.index.numpy(), readings.double().numpy(), sensors.noise_std.double().numpy() ** 2,
                             rng)
        self.repairs += model.repairs
        cycles = readings.shape[0]
        return Analysis(None, cond.float()[None, None].expand(self.members, cycles, -1),
                        torch.from_numpy(ensemble).float())


def _letkf(setup: Setup) -> LETKFAssimilator:
    """The ``letkf`` row: ``options`` has ``enkf`` (``assimilate.enkf``), ``simulate``
    (``dt``, ``cfl``), ``channels``, ``condition_names`` and ``stride``."""
    o = setup.options
    enkf, simulate = o["enkf"], o["simulate"]
    return LETKFAssimilator(LETKF(enkf.radius, enkf.inflation), list(o["channels"]), list(o["condition_names"]),
                            enkf.members, enkf.perturbation, simulate.dt, o["stride"], simulate.cfl)


register(Method("letkf", "full-space LETKF", _letkf, full_space="clawpack"))
