"""Settings of data assimilation: ``assimilate:`` (the twin experiment),
``register_assimilator:`` and ``sweep_observations:``."""

from __future__ import annotations

import dataclasses
from typing import Literal

from models.assimilation import ScoreFilter
from models.kinds import emulator_kinds
from pipelines.settings import Named, check, check_names, check_windows


@dataclasses.dataclass(frozen=True)
class FilterConfig(ScoreFilter):
    """The ensemble score filter's settings: the configured
    :class:`models.assimilation.ScoreFilter` itself, checked (its own ``problems``), every
    setting required (the model's defaults are not the configuration's)."""

    steps: int = dataclasses.field()
    eps_alpha: float = dataclasses.field()
    eps_beta: float = dataclasses.field()
    inflation: float = dataclasses.field()
    min_spread: float = dataclasses.field()

    def __post_init__(self) -> None:  # checked by validate, which names the key
        pass

    def validate(self, key: str) -> None:
        for name, message in self.problems():
            check(False, f"{key}.{name}", message)


@dataclasses.dataclass(frozen=True)
class MMPSConfig:
    """``assimilate.mmps:`` the guided diffusion forecast (``GuidedForecast`` in
    ``pipelines.serving.assimilator``): ``iterations`` of the linear solver (GMRES) in
    azula's ``MMPSDenoiser`` at each denoising step (LoLA: 1 to 3)."""

    iterations: int

    def validate(self, key: str) -> None:
        check(self.iterations >= 1, f"{key}.iterations", f"must be >= 1, got {self.iterations}")


@dataclasses.dataclass(frozen=True)
class EnKFConfig:
    """``assimilate.enkf:`` the full-space baseline (``pipelines.evaluation.letkf``) on the
    first ``trajectories`` trajectories of the twin experiment: ``members`` Clawpack runs
    (the built-in solver's ``simulate.dt`` and ``simulate.cfl``) from the initial state with
    relative noise ``perturbation``, the LETKF with Gaspari-Cohn localisation of ``radius``
    (domain units, [0, 1]^2) and multiplicative ``inflation``. ``trajectories: 0`` skips it."""

    trajectories: int
    members: int
    perturbation: float
    radius: float
    inflation: float

    def validate(self, key: str) -> None:
        check(self.trajectories >= 0, f"{key}.trajectories", f"must be >= 0, got {self.trajectories}")
        check(self.members >= 2, f"{key}.members", f"must be >= 2, got {self.members}")
        check(self.perturbation > 0, f"{key}.perturbation", f"must be > 0, got {self.perturbation}")
        check(self.radius > 0, f"{key}.radius", f"must be > 0, got {self.radius}")
        check(self.inflation >= 1, f"{key}.inflation", f"must be >= 1, got {self.inflation}")


@dataclasses.dataclass(frozen=True)
class AssimilateConfig:
    """``assimilate:`` section: the twin experiment (``pipelines.stages.assimilate``). The
    first ``trajectories`` trajectories of ``split`` are observed by the sensor layout
    ``layout`` (``sensors.layouts``); the best evaluated version of each of ``kinds``
    forecasts them freely and with the latent score filter, its likelihood through the
    decoder (``filter``) and through the layout's observation encoder (``encoder_filter``;
    it estimates the conditioning entries ``estimate`` with the state), a stochastic kind also guided by MMPS (``mmps``),
    and Clawpack with the full-space LETKF (``enkf``) on the first of them."""

    kinds: tuple[str, ...]
    split: Literal["train", "valid", "test"]
    trajectories: int
    layout: str
    estimate: tuple[str, ...]
    members: int
    filter: FilterConfig
    encoder_filter: FilterConfig
    mmps: MMPSConfig
    enkf: EnKFConfig
    lead_windows: tuple[tuple[int, int], ...]
    confidence: float
    seed: int

    def validate(self, key: str) -> None:
        check(len(self.kinds) >= 1, f"{key}.kinds", "needs at least one latent emulator kind")
        check_names(self.kinds, emulator_kinds(latent=True), f"{key}.kinds")
        check(self.trajectories >= 1, f"{key}.trajectories", f"must be >= 1, got {self.trajectories}")
        check(self.members >= 2, f"{key}.members", f"must be >= 2, got {self.members}")
        check_windows(self.lead_windows, f"{key}.lead_windows")
        check(0.5 <= self.confidence < 1, f"{key}.confidence", f"must be in [0.5, 1), got {self.confidence}")


@dataclasses.dataclass(frozen=True)
class AssimilatorConfig:
    """One assimilator of ``register_assimilator.assimilators``: the latent EnSF with
    ``members`` members and the score filter ``filter`` on the exported emulator of ``kind``
    with ``latent_channels``, for the sensor layout ``layout``; its likelihood through the
    decoder, or with ``encoder`` through the layout's observation encoder (which estimates
    ``train_obs_encoder.parameters`` with the state)."""

    kind: str
    latent_channels: int
    layout: str
    encoder: bool
    members: int
    filter: FilterConfig

    def validate(self, key: str) -> None:
        check_names((self.kind,), emulator_kinds(latent=True), f"{key}.kind")
        check(self.latent_channels >= 1, f"{key}.latent_channels", f"must be >= 1, got {self.latent_channels}")
        check(self.members >= 2, f"{key}.members", f"must be >= 2, got {self.members}")


@dataclasses.dataclass(frozen=True)
class RegisterAssimilatorConfig(Named):
    """``register_assimilator:`` section: the assimilators registered as versions of
    ``<dataset>-assimilator``, by name (``pipelines.stages.register_assimilator``)."""

    SECTION, NOUN, LOOKUP_NOUN = "register_assimilator", "assimilator", "assimilator"

    assimilators: dict[str, AssimilatorConfig]

    def assimilator(self, name: str, key: str) -> AssimilatorConfig:
        """The assimilator ``name``; a :class:`ConfigError` naming ``key`` and the valid names otherwise."""
        return self.entry(name, key)


@dataclasses.dataclass(frozen=True)
class SweepObservationsConfig:
    """``sweep_observations:`` section: the twin experiment of one decoder-route assimilator
    (``assimilator``: a name of ``register_assimilator.assimilators``, its exported version)
    over a grid of sensor ``fractions`` x ``noises`` (its layout's fields, cadence and seed
    otherwise), on the first ``trajectories`` trajectories of ``split``
    (``pipelines.stages.sweep_observations``)."""

    assimilator: str
    fractions: tuple[float, ...]
    noises: tuple[float, ...]
    split: Literal["train", "valid", "test"]
    trajectories: int
    lead_windows: tuple[tuple[int, int], ...]
    confidence: float
    seed: int

    def validate(self, key: str) -> None:
        check(len(self.fractions) >= 2 and all(0 < f <= 1 for f in self.fractions), f"{key}.fractions",
              f"must be at least two fractions in (0, 1], got {list(self.fractions)}")
        check(list(self.fractions) == sorted(set(self.fractions)), f"{key}.fractions",
              f"must increase, got {list(self.fractions)}")
        check(len(self.noises) >= 1 and all(n > 0 for n in self.noises), f"{key}.noises",
              f"must be at least one noise level > 0, got {list(self.noises)}")
        check(list(self.noises) == sorted(set(self.noises)), f"{key}.noises", f"must increase, got {list(self.noises)}")
        check(self.trajectories >= 1, f"{key}.trajectories", f"must be >= 1, got {self.trajectories}")
        check_windows(self.lead_windows, f"{key}.lead_windows")
        check(0.5 <= self.confidence < 1, f"{key}.confidence", f"must be in [0.5, 1), got {self.confidence}")
