"""Probability-flow ODE samplers of the diffusion emulator (azula), as configured objects.

An :class:`ODESampler` holds a family (:data:`FAMILIES`), its Adams-Bashforth order and its
number of steps; called on a denoiser it returns the azula sampler that integrates the
probability-flow ODE from noise to data. It is passed whole (training validation, rollouts,
forecasters, the sampler study), never as loose names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azula.denoise import Denoiser
    from azula.sample import Sampler

__all__ = ["FAMILIES", "Family", "ODESampler"]


@dataclass(frozen=True)
class Family:
    """One class of ``azula.sample`` (imported when a sampler is built, so that reading this
    table, as configuration does, needs no torch); ``multistep``: an Adams-Bashforth
    sampler, which has an order."""

    cls: str
    multistep: bool

    def build(self, denoiser: Denoiser, **kwargs: object) -> Sampler:
        return getattr(importlib.import_module("azula.sample"), self.cls)(denoiser, **kwargs)


#: Sampler families by name.
FAMILIES: dict[str, Family] = {
    "zab": Family("zABSampler", multistep=True),
    "vab": Family("vABSampler", multistep=True),
    "euler": Family("EulerSampler", multistep=False),
    "heun": Family("HeunSampler", multistep=False),
}


@dataclass(frozen=True)
class ODESampler:
    """``name`` (a key of :data:`FAMILIES`), ``order`` (Adams-Bashforth order, multistep
    families only) and ``steps`` (denoising steps)."""

    name: str = "zab"
    order: int = 3
    steps: int = 16

    def __call__(self, denoiser: Denoiser) -> Sampler:
        if self.name not in FAMILIES:
            raise ValueError(f"unknown sampler {self.name!r}; valid samplers are {sorted(FAMILIES)}")
        family = FAMILIES[self.name]
        order = {"order": self.order} if family.multistep else {}
        return family.build(denoiser, steps=self.steps, silent=True, **order)
