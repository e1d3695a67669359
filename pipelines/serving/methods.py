"""Assimilation methods: one interface, one result type, one table.

Every method is an :class:`Assimilator`: ``run(initial (C, H, W), cond (P,), sensors,
readings (T, S), generator) -> Analysis``, the readings ``stride`` stored steps apart after
the initial state (NaN: missing), NaN entries of ``cond`` unknown (estimated by the methods
that can). Every method returns the same :class:`Analysis`: the ensemble in the latent space
of its ``forecaster`` (``latents``) or, for a full-space method, in physical units
(``states``), and each member's conditioning at each cycle.

:data:`METHODS` is the table of methods, by name, in the order the twin experiment runs and
reports them. Each row says how to build the method from a :class:`Setup` (a version's
forecaster and observation encoder, the stage's settings) and where it applies. The
``assimilate`` stage runs every row (latent rows on each chosen emulator version, full-space
rows once), the twin experiment (``pipelines.evaluation.twin``) runs any assimilators, and a
registered forecaster serves the rows marked ``served`` (its param ``method``).

Adding an assimilation method (one file, two when it needs a new module):

1. Write its class beside what it needs: ``members``, ``forecaster`` (``None`` in full
   space), ``estimated`` (the conditioning entries hidden from it in twin experiments;
   usually ``()``) and a ``run`` that returns an :class:`Analysis`;
2. register it in the same module, once: ``register(Method("name", "display label",
   build))``, ``build`` a function of a :class:`Setup`; method-specific settings travel in
   ``Setup.options`` (the stage puts its ``assimilate:`` section there under ``"assimilate"``).

Latent methods live in :mod:`pipelines.serving.assimilator`, which registers them; the
full-space LETKF registers itself in :mod:`pipelines.evaluation.letkf` (Clawpack is no
serving dependency). A new module must also be imported by the stage that runs it (and be
among that stage's ``dvc.yaml`` deps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from torch import Generator, Tensor

from models.assimilation import ScoreFilter
from models.forecaster import Forecaster
from models.observation import ObservationEncoder

if TYPE_CHECKING:
    from pipelines.serving.assimilator import Sensors

__all__ = ["METHODS", "Analysis", "Assimilator", "Method", "Setup", "register"]


@dataclass
class Analysis:
    """What every :meth:`Assimilator.run` returns: the analysis ensembles, ``latents (N, c,
    T, h, w)`` in the latent space of the method's forecaster or, for a full-space method,
    ``states (N, T, C, H, W)`` in physical units (``latents`` then ``None``), and each member's
    conditioning at each cycle, ``cond (N, T, P)`` (the given entries, and the estimates of
    the unknown ones)."""

    latents: Tensor | None
    cond: Tensor
    states: Tensor | None = None


class Assimilator(Protocol):
    """An assimilation method (see the module docstring)."""

    members: int

    @property
    def forecaster(self) -> Forecaster | None: ...

    @property
    def estimated(self) -> tuple[str, ...]: ...

    def run(self, initial: Tensor, cond: Tensor, sensors: Sensors, readings: Tensor,
            generator: Generator | None = None) -> Analysis: ...


@dataclass(frozen=True)
class Setup:
    """What a method is built from: a version's ``forecaster`` (``None`` for full-space
    methods), the ensemble size, the score filters of the decoder and the encoder route, the
    observation ``encoder`` of the layout and the entries it estimates (``parameters``, in its
    order), the entries hidden from the encoder route in twin experiments (``estimate``),
    MMPS's solver ``iterations``, and method-specific ``options``."""

    forecaster: Forecaster | None = None
    members: int = 16
    filter: ScoreFilter = field(default_factory=ScoreFilter)
    encoder_filter: ScoreFilter = field(default_factory=ScoreFilter)
    encoder: ObservationEncoder | None = None
    parameters: tuple[str, ...] = ()
    estimate: tuple[str, ...] = ()
    iterations: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A row of :data:`METHODS`: its ``name`` (row labels ``<name>_<version>``), ``label`` for
    reports, ``build``; ``diffusion`` (runs only on a stochastic emulator), ``served`` (a
    registered forecaster's param ``method`` may name it) and ``full_space`` (run once, not
    per emulator version: the version label of its row, e.g. ``clawpack``)."""

    name: str
    label: str
    build: Callable[[Setup], Assimilator]
    diffusion: bool = False
    served: bool = False
    full_space: str | None = None


#: The assimilation methods, by name (see the module docstring).
METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a name registers once)."""
    if method.name in METHODS:
        raise ValueError(f"assimilation method {method.name!r} is registered twice")
    if "_" in method.name:
        raise ValueError(f"assimilation method {method.name!r}: names hold no '_' (rows are <name>_<version>)")
    METHODS[method.name] = method
    return method
