"""Each kind of :mod:`models.kinds` (and the observation encoder) mapped to the network class
that implements it: what code that builds or rebuilds a network imports."""

from __future__ import annotations

from torch import nn

from models.autoencoder import Autoencoder
from models.emulators import DiffusionEmulator, NeuralSolver
from models.kinds import AUTOENCODER, KINDS, OBS_ENCODER
from models.observation import ObservationEncoder

__all__ = ["CLASSES", "network_class"]

#: ``{kind name: network class}``: every row of ``models.kinds.KINDS``, and ``obs_encoder``.
CLASSES: dict[str, type[nn.Module]] = {
    AUTOENCODER: Autoencoder,
    "diffusion": DiffusionEmulator,
    "solver": NeuralSolver,
    "pixel_solver": NeuralSolver,
    OBS_ENCODER: ObservationEncoder,
}
assert set(CLASSES) == {k.name for k in KINDS} | {OBS_ENCODER}, "models.networks.CLASSES must cover models.kinds"


def network_class(kind: str) -> type[nn.Module]:
    """The class of a network of ``kind``; a ``ValueError`` lists the valid kinds otherwise."""
    if kind not in CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds are {sorted(CLASSES)}")
    return CLASSES[kind]
