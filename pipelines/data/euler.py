"""The 2-D Euler equations of an ideal gas, solved by Clawpack (``pipelines.stages.simulate``
makes the built-in dataset with it; the full-space assimilation baseline forecasts with it).

    rho_t + div(rho u) = 0,   (rho u)_t + div(rho u u^T + p I) = 0,   E_t + div(u (E + p)) = 0,
    p = (gamma - 1) (E - rho |u|^2 / 2),

on [0, 1]^2 with Clawpack's Roe-type ``euler_4wave_2D`` Riemann solver (MC limiter,
transverse waves), open (extrapolation) or periodic boundaries. States are conserved
``(4, N, N)`` arrays: density, x-momentum, y-momentum, energy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator

import numpy as np

__all__ = ["BOUNDARIES", "conserved", "is_physical", "solve", "to_well_fields"]

BOUNDARIES = ("open", "periodic")


@contextlib.contextmanager
def _quiet_pyclaw_import() -> Iterator[None]:
    """Import pyclaw without leaving its ``pyclaw.log`` in the working directory.

    pyclaw's logging configuration opens ``pyclaw.log`` in the current directory at import
    time; import it from a scratch directory and drop that file handler.
    """
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            from clawpack import pyclaw  # noqa: F401
        finally:
            os.chdir(cwd)
            for logger in (logging.getLogger(n) for n in ("pyclaw", "pyclaw.io", "pyclaw.solution", "root")):
                for handler in list(logger.handlers):
                    if isinstance(handler, logging.FileHandler):
                        logger.removeHandler(handler)
                        handler.close()
        yield


def conserved(primitive: np.ndarray, gamma: float) -> np.ndarray:
    """Primitive ``(rho, u, v, p)`` ``(4, N, N)`` to conserved ``(rho, rho u, rho v, E)``."""
    rho, u, v, p = primitive
    return np.stack([rho, rho * u, rho * v, p / (gamma - 1.0) + 0.5 * rho * (u**2 + v**2)])


def solve(state: np.ndarray, gamma: float, boundary: str, dt: float, steps: int, cfl: float) -> np.ndarray:
    """Solve from the conserved ``state (4, N, N)``; ``(steps + 1, 4, N, N)`` conserved
    frames, float64, ``dt`` apart, the first being ``state``."""
    with _quiet_pyclaw_import():
        from clawpack import pyclaw, riemann

    solver = pyclaw.ClawSolver2D(riemann.euler_4wave_2D)
    solver.dimensional_split = False
    solver.transverse_waves = 2
    solver.limiters = pyclaw.limiters.tvd.MC
    solver.cfl_desired = cfl
    solver.cfl_max = min(1.0, cfl * 1.25)
    solver.all_bcs = {"open": pyclaw.BC.extrap, "periodic": pyclaw.BC.periodic}[boundary]

    n = state.shape[-1]
    domain = pyclaw.Domain([0.0, 0.0], [1.0, 1.0], [n, n])
    solution = pyclaw.Solution(4, domain)
    solution.problem_data["gamma"] = gamma
    solution.q[...] = state

    claw = pyclaw.Controller()
    claw.solution = solution
    claw.solver = solver
    claw.tfinal = dt * steps
    claw.num_output_times = steps
    claw.keep_copy = True
    claw.output_format = None
    claw.verbosity = 0
    claw.run()
    return np.stack([frame.q for frame in claw.frames])  # (steps + 1, 4, N, N)


def to_well_fields(q: np.ndarray, gamma: float) -> dict[str, np.ndarray]:
    """Conserved frames ``(T, 4, X, Y)`` to The Well's Euler fields (float64)."""
    rho, mx, my, energy = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    with np.errstate(all="ignore"):
        pressure = (gamma - 1.0) * (energy - 0.5 * (mx**2 + my**2) / rho)
    return {
        "energy": energy,
        "density": rho,
        "pressure": pressure,
        "momentum": np.stack([mx, my], axis=-1),  # (T, X, Y, 2)
    }


def is_physical(fields: dict[str, np.ndarray]) -> bool:
    """Finite everywhere, with positive density and pressure in every frame."""
    return (
        all(np.isfinite(v).all() for v in fields.values())
        and bool((fields["density"] > 0).all())
        and bool((fields["pressure"] > 0).all())
    )
