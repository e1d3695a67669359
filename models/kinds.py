"""The table of model kinds: every place that names a kind (configuration, command line,
forecaster, evaluation, promotion, report, tuning) reads it from here.

Row order is the report order (autoencoders, then emulators). A kind names its class by
module and name, imported on first use, so that reading the table (configuration does,
in every stage) needs no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["AUTOENCODER", "KINDS", "OBS_ENCODER", "Kind", "emulator_kinds", "kind"]


@dataclass(frozen=True)
class Kind:
    """A model kind: ``name`` (tags, params, ``--kind``), its class, whether it is an
    emulator and works in a latent space, its name in tables and its short name in figures."""

    name: str
    module: str
    class_name: str
    emulator: bool
    latent: bool
    stochastic: bool  # forecasts are ensembles of independent draws (scored by ensemble mean and CRPS)
    display: str
    short: str

    @property
    def cls(self) -> type[nn.Module]:
        return getattr(importlib.import_module(self.module), self.class_name)


AUTOENCODER = "autoencoder"
OBS_ENCODER = "obs_encoder"  # LD-EnSF's observation encoder: trained and registered, never scored as a row

KINDS: tuple[Kind, ...] = (
    Kind(AUTOENCODER, "models.autoencoder", "Autoencoder", emulator=False, latent=False, stochastic=False,
         display="autoencoder (reconstruction floor)", short="autoencoder"),
    Kind("diffusion", "models.emulators", "DiffusionEmulator", emulator=True, latent=True, stochastic=True,
         display="diffusion", short="diffusion"),
    Kind("solver", "models.emulators", "NeuralSolver", emulator=True, latent=True, stochastic=False,
         display="neural solver (latent)", short="latent solver"),
    Kind("pixel_solver", "models.emulators", "NeuralSolver", emulator=True, latent=False, stochastic=False,
         display="neural solver (pixel)", short="pixel solver"),
)


def kind(name: str) -> Kind:
    """The kind called ``name``; a ``ValueError`` lists the valid names otherwise."""
    for k in KINDS:
        if k.name == name:
            return k
    raise ValueError(f"unknown model kind {name!r}; valid kinds are {[k.name for k in KINDS]}")


def emulator_kinds(latent: bool | None = None, stochastic: bool | None = None) -> tuple[str, ...]:
    """Names of the emulator kinds, optionally only latent (or pixel) or stochastic ones."""
    return tuple(k.name for k in KINDS if k.emulator and latent in (None, k.latent)
                 and stochastic in (None, k.stochastic))
