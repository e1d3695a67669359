"""The table of model kinds: every place that names a kind (configuration, command line,
forecaster, evaluation, promotion, report, tuning) reads it from here.

Row order is the report order (autoencoders, then emulators). The table holds names and
properties only, so that reading it (configuration does, in every stage) imports no
network; :mod:`models.networks` maps each kind to its class, and only code that builds a
network imports it (so a stage's import closure, and its DVC deps, name the networks it
builds).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AUTOENCODER", "KINDS", "OBS_ENCODER", "Kind", "emulator_kinds", "kind"]


@dataclass(frozen=True)
class Kind:
    """A model kind: ``name`` (tags, params, ``--kind``), whether it is an emulator and works
    in a latent space, whether its forecasts are ensembles, its name in tables and its short
    name in figures."""

    name: str
    emulator: bool
    latent: bool
    stochastic: bool  # forecasts are ensembles of independent draws (scored by ensemble mean and CRPS)
    display: str
    short: str


AUTOENCODER = "autoencoder"
OBS_ENCODER = "obs_encoder"  # LD-EnSF's observation encoder: trained and registered, never scored as a row

KINDS: tuple[Kind, ...] = (
    Kind(AUTOENCODER, emulator=False, latent=False, stochastic=False,
         display="autoencoder (reconstruction floor)", short="autoencoder"),
    Kind("diffusion", emulator=True, latent=True, stochastic=True,
         display="diffusion", short="diffusion"),
    Kind("solver", emulator=True, latent=True, stochastic=False,
         display="neural solver (latent)", short="latent solver"),
    Kind("pixel_solver", emulator=True, latent=False, stochastic=False,
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
