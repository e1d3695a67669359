"""Typed configuration: ``params.yaml`` parsed into frozen, validated dataclasses.

``params.yaml`` is the single source of truth for every knob, namespaced by stage
(``simulate:``, ``data:``, ...). Each stage reads its own section with
:func:`load_section`, which converts the YAML mapping into the stage's dataclass and fails
at start with a :class:`ConfigError` naming the file, the key and what would be valid:
unknown or missing keys, wrong types and out-of-range values never reach the stage.

The dataclasses hold no values of their own: a key that ``params.yaml`` sets has no
dataclass default (a params file must give it), so no default can silently disagree with
the file. Only keys that a params file may leave out keep one, equal to ``params.yaml``'s
(``tests/code/test_config.py`` checks both).

Nothing here reads configuration at import time: callers pass the path.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from models.assimilation import ScoreFilter
from models.kinds import emulator_kinds
from models.samplers import FAMILIES, ODESampler
from pipelines.evaluation.scorecard import HEADLINE, Scorecard

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")

#: The ten heat-capacity ratios of The Well's ``euler_multi_quadrants``.
WELL_EULER_GAMMAS: tuple[float, ...] = (
    1.13, 1.22, 1.3, 1.33, 1.365, 1.4, 1.404, 1.453, 1.597, 1.76,
)


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def check(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<key>: <message>"`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def did_you_mean(name: str, valid: typing.Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when ``name`` is a likely typo of ``x``, one of ``valid``; ``""`` otherwise."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_names(names: tuple[str, ...], valid: tuple[str, ...], key: str) -> None:
    """Every entry of ``names`` is one of ``valid`` (a table's keys: kinds, samplers)."""
    for i, name in enumerate(names):
        check(name in valid, f"{key}[{i}]", f"must be one of {list(valid)}, got {name!r}")


def check_windows(windows: tuple[tuple[int, int], ...], key: str) -> None:
    """Lead windows ``[[first, last], ...]``, at least one, each with ``1 <= first <= last``."""
    check(len(windows) >= 1 and all(1 <= a <= b for a, b in windows), key,
          f"must be [[first, last], ...] with 1 <= first <= last, got {[list(w) for w in windows]}")


# --------------------------------------------------------------------------- stages


@dataclasses.dataclass(frozen=True)
class Splits:
    """Number of trajectories per split."""

    train: int
    valid: int
    test: int

    def validate(self, key: str) -> None:
        for name, value in dataclasses.asdict(self).items():
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """``simulate:`` section: the built-in Clawpack Euler dataset (The Well's
    ``euler_multi_quadrants`` recipe at a small resolution)."""

    dataset: str
    output: str
    resolution: int
    n_steps: int
    dt: float
    trajectories: Splits
    seed: int
    workers: int  # 0 = all cores
    boundaries: tuple[Literal["open", "periodic"], ...]
    gammas: tuple[float, ...]
    quadrants: tuple[int, int]  # min, max blocks per axis
    density: tuple[float, float]
    pressure: tuple[float, float]
    velocity: tuple[float, float]
    cfl: float
    max_redraws: int

    def validate(self, key: str) -> None:
        check(self.dataset.replace("_", "").isalnum(), f"{key}.dataset",
              f"must be letters, digits and underscores, got {self.dataset!r}")
        check(self.resolution >= 8, f"{key}.resolution", f"must be >= 8, got {self.resolution}")
        check(self.n_steps >= 2, f"{key}.n_steps", f"must be >= 2, got {self.n_steps}")
        check(self.dt > 0, f"{key}.dt", f"must be > 0, got {self.dt}")
        self.trajectories.validate(f"{key}.trajectories")
        check(self.workers >= 0, f"{key}.workers", f"must be >= 0 (0 = all cores), got {self.workers}")
        check(len(self.boundaries) >= 1, f"{key}.boundaries", "needs at least one of open, periodic")
        check(len(self.gammas) >= 1 and all(g > 1 for g in self.gammas), f"{key}.gammas",
              f"needs at least one value > 1, got {list(self.gammas)}")
        lo, hi = self.quadrants
        check(1 <= lo <= hi, f"{key}.quadrants", f"must be [min, max] with 1 <= min <= max, got {[lo, hi]}")
        for name in ("density", "pressure", "velocity"):
            lo_, hi_ = getattr(self, name)
            check(lo_ <= hi_, f"{key}.{name}", f"must be [low, high] with low <= high, got {[lo_, hi_]}")
        for name in ("density", "pressure"):
            check(getattr(self, name)[0] > 0, f"{key}.{name}", "must be positive")
        check(0 < self.cfl <= 1, f"{key}.cfl", f"must be in (0, 1], got {self.cfl}")
        check(self.max_redraws >= 0, f"{key}.max_redraws", f"must be >= 0, got {self.max_redraws}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``data:`` section: which dataset the learning stages read and how it is windowed
    and normalised."""

    root: str
    log_fields: tuple[str, ...]
    context: int
    horizon: int
    stride: int
    cache: bool  # keep file reads in memory (small datasets; off for large real ones)

    def validate(self, key: str) -> None:
        check(self.context >= 1, f"{key}.context", f"must be >= 1, got {self.context}")
        check(self.horizon >= 0, f"{key}.horizon", f"must be >= 0, got {self.horizon}")
        check(self.stride >= 1, f"{key}.stride", f"must be >= 1, got {self.stride}")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule of the shared training loop."""

    optimizer: Literal["psgd", "adamw", "muon"]
    lr: float
    weight_decay: float
    warmup: int  # linear warm-up steps, then cosine decay to 0
    grad_clip: float  # max gradient norm; 0 = off

    def validate(self, key: str) -> None:
        check(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, f"{key}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.warmup >= 0, f"{key}.warmup", f"must be >= 0, got {self.warmup}")
        check(self.grad_clip >= 0, f"{key}.grad_clip", f"must be >= 0 (0 = off), got {self.grad_clip}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of the shared training loop (``pipelines/recipes/training.py``)."""

    steps: int
    batch_size: int
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["bf16", "fp32"]  # bf16 autocast applies on GPU only
    num_workers: int  # DataLoader processes
    log_every: int
    val_every: int
    val_batches: int
    checkpoint_every: int
    optim: OptimConfig

    def validate(self, key: str) -> None:
        for name in ("steps", "batch_size", "log_every", "val_every"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        for name in ("num_workers", "val_batches", "checkpoint_every"):
            value = getattr(self, name)
            check(value >= 0, f"{key}.{name}", f"must be >= 0, got {value}")


@dataclasses.dataclass(frozen=True)
class AutoencoderModelConfig:
    """Architecture of ``models.autoencoder.Autoencoder``."""

    patch: int
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    attention_heads: int
    dropout: float
    bound: float

    @property
    def downsampling(self) -> int:
        return self.patch * 2 ** (len(self.widths) - 1)

    def validate(self, key: str) -> None:
        check(self.patch >= 1, f"{key}.patch", f"must be >= 1, got {self.patch}")
        check(len(self.widths) >= 1 and all(w >= 1 for w in self.widths), f"{key}.widths",
              f"must be positive channel counts, got {list(self.widths)}")
        check(len(self.blocks) == len(self.widths), f"{key}.blocks",
              f"needs one entry per level ({len(self.widths)} widths), got {list(self.blocks)}")
        check(all(b >= 0 for b in self.blocks), f"{key}.blocks", f"must be >= 0, got {list(self.blocks)}")
        check(self.attention_heads >= 1 and self.widths[-1] % self.attention_heads == 0,
              f"{key}.attention_heads", f"must divide the deepest width {self.widths[-1]}, got {self.attention_heads}")
        check(0 <= self.dropout < 1, f"{key}.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.bound > 0, f"{key}.bound", f"must be > 0, got {self.bound}")

    def check_resolution(self, resolution: tuple[int, ...], key: str) -> None:
        """Fail unless the total downsampling divides every spatial size of the data."""
        check(all(size % self.downsampling == 0 for size in resolution), key,
              f"downsampling patch * 2^(levels - 1) = {self.downsampling} does not divide the data's "
              f"resolution {list(resolution)}; change patch or the number of widths")


@dataclasses.dataclass(frozen=True)
class TrainAutoencoderConfig:
    """``train_autoencoder:`` section, one model per entry of ``latent_channels``."""

    latent_channels: tuple[int, ...]
    loss: Literal["mse", "vrmse"]
    augment: bool  # random axis flips, permutations and periodic rolls
    model: AutoencoderModelConfig
    train: TrainConfig

    def validate(self, key: str) -> None:
        check(len(self.latent_channels) >= 1, f"{key}.latent_channels", "needs at least one width")
        for i, c in enumerate(self.latent_channels):
            check(c >= 1, f"{key}.latent_channels[{i}]", f"must be >= 1, got {c}")


@dataclasses.dataclass(frozen=True)
class CacheLatentsConfig:
    """``cache_latents:`` section: encoding every split once with a registered autoencoder."""

    output: str
    batch_size: int
    augmented_copies: int  # extra randomly flipped/permuted/rolled copies of the train split
    seed: int

    def validate(self, key: str) -> None:
        check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.augmented_copies >= 0, f"{key}.augmented_copies", f"must be >= 0, got {self.augmented_copies}")


@dataclasses.dataclass(frozen=True)
class EmulatorModelConfig:
    """Architecture of the emulators' space-time transformer (``models.transformer``)."""

    width: int
    depth: int
    heads: int
    patch: int  # spatial patch per token: 1 on latents, e.g. 8 on pixels
    mlp_ratio: int

    def validate(self, key: str) -> None:
        for name in ("width", "depth", "heads", "patch", "mlp_ratio"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        check(self.width % self.heads == 0, f"{key}.heads", f"must divide width {self.width}, got {self.heads}")
        check(self.width // self.heads >= 6, f"{key}.heads",
              f"width / heads = {self.width // self.heads} is too small for rotary embeddings over (t, x, y); "
              "needs >= 6")


@dataclasses.dataclass(frozen=True)
class SamplerConfig(ODESampler):
    """Probability-flow ODE sampler of the diffusion emulator: the configured
    :class:`models.samplers.ODESampler` itself, checked, every setting required (the model's
    defaults are not the configuration's)."""

    name: str = dataclasses.field()
    order: int = dataclasses.field()
    steps: int = dataclasses.field()

    def validate(self, key: str) -> None:
        check(self.name in FAMILIES, f"{key}.name", f"must be one of {list(FAMILIES)}, got {self.name!r}")
        check(1 <= self.order <= 3, f"{key}.order", f"must be 1, 2 or 3, got {self.order}")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """How rollouts are scored (``pipelines.evaluation.scoring``): the first ``trajectories``
    trajectories of ``split``, ``members`` ensemble members, metrics per lead-time window,
    power-spectrum RMSE in ``bands`` log-spaced bands."""

    split: Literal["train", "valid", "test"]
    trajectories: int  # first N trajectories of the split
    members: int  # ensemble members (stochastic emulators)
    lead_windows: tuple[tuple[int, int], ...]  # in stored time steps
    # optional (only evaluate: sets them in params.yaml), with its values
    bands: int = 3
    batch: int = 4  # trajectories forecast at once
    seed: int = 0

    @property
    def last_lead(self) -> int:
        return max(last for _, last in self.lead_windows)

    def validate(self, key: str) -> None:
        for name in ("trajectories", "members", "bands", "batch"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        check(len(self.lead_windows) >= 1, f"{key}.lead_windows", "needs at least one [first, last] window")
        for i, (first, last) in enumerate(self.lead_windows):
            check(1 <= first <= last, f"{key}.lead_windows[{i}]",
                  f"must be [first, last] with 1 <= first <= last, got {[first, last]}")


@dataclasses.dataclass(frozen=True)
class TrainEmulatorConfig:
    """``train_emulator:`` section: latent emulators (one per kind and latent width) and the
    pixel-space neural solver. Windows are ``data.context + data.horizon`` states every
    ``data.stride`` stored steps; forecasts start from ``data.context`` states."""

    kinds: tuple[str, ...]
    context_rate: float  # Poisson rate lambda of the training context size k = 1 + Poisson(lambda) mod (L - 1)
    flip: float  # share of training masks reversed (backward-in-time prediction; LoLA)
    overlap: int  # states carried from one rollout window to the next
    sampler: SamplerConfig
    latent: EmulatorModelConfig
    pixel: EmulatorModelConfig
    train: TrainConfig
    score: ScoreConfig

    def validate(self, key: str) -> None:
        check(len(self.kinds) >= 1, f"{key}.kinds", f"needs at least one of {list(emulator_kinds(latent=True))}")
        check_names(self.kinds, emulator_kinds(latent=True), f"{key}.kinds")
        check(self.context_rate > 0, f"{key}.context_rate", f"must be > 0, got {self.context_rate}")
        check(0 <= self.flip <= 1, f"{key}.flip", f"must be in [0, 1], got {self.flip}")
        check(self.overlap >= 1, f"{key}.overlap", f"must be >= 1, got {self.overlap}")

    def check_window(self, data: DataConfig, key: str) -> None:
        """The rollout needs ``overlap < window`` and ``context < window``."""
        window = data.context + data.horizon
        check(data.horizon >= 1, "data.horizon", f"emulators need a horizon >= 1, got {data.horizon}")
        check(self.overlap < window, f"{key}.overlap",
              f"must be < the window of data.context + data.horizon = {window} states, got {self.overlap}")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(ScoreConfig):
    """``evaluate:`` section: how every registered version is scored, the same way for all."""

    # keyword-only, so that they can be required after the score's optional keys:
    confidence: float = dataclasses.field(kw_only=True)  # level of the bootstrap intervals and the findings' verdicts
    assimilation_trajectories: int = dataclasses.field(kw_only=True)  # the first N observed by each assimilator

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.assimilation_trajectories >= 1, f"{key}.assimilation_trajectories",
              f"must be >= 1, got {self.assimilation_trajectories}")
        check(0.5 <= self.confidence < 1, f"{key}.confidence", f"must be in [0.5, 1), got {self.confidence}")


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """The gate a candidate version must pass to become ``production`` of its registered
    model (``pipelines.stages.promote``). Lower ``metric`` is better."""

    metric: str  # a headline evaluation number against the truth, e.g. vrmse_61-100 or crps_61-100
    margin: float  # relative improvement over the current production required (0.05 = 5 %)
    probability: float  # paired-bootstrap probability that the candidate beats production, at least
    spread_skill: tuple[float, float]  # allowed spread-skill ratio of ensembles
    max_seconds: float  # latency ceiling: seconds per trajectory (all members, decoded)
    baselines: bool  # must beat the best trivial baseline on metric, with probability (emulators)

    def validate(self, key: str) -> None:
        check(bool(self.metric), f"{key}.metric", "must name an evaluation metric, e.g. vrmse_mean")
        check(Scorecard.is_headline(self.metric) and not self.metric.startswith("spread_skill"), f"{key}.metric",
              f"must be vrmse_mean or <metric>_<window> with <metric> one of "
              f"{[m for m in HEADLINE if m != 'spread_skill']}, e.g. vrmse_61-100; got {self.metric!r}")
        check(0 <= self.margin < 1, f"{key}.margin", f"must be in [0, 1), got {self.margin}")
        check(0.5 <= self.probability < 1, f"{key}.probability", f"must be in [0.5, 1), got {self.probability}")
        lo, hi = self.spread_skill
        check(0 <= lo <= hi, f"{key}.spread_skill", f"must be [low, high] with 0 <= low <= high, got {[lo, hi]}")
        check(self.max_seconds > 0, f"{key}.max_seconds", f"must be > 0, got {self.max_seconds}")


@dataclasses.dataclass(frozen=True)
class PromoteConfig(GateConfig):
    """``promote:`` section: the gate of ``<dataset>-emulator`` versions of ``kinds`` (its own
    fields), and that of ``<dataset>-assimilator`` versions (``assimilators``)."""

    kinds: tuple[str, ...]
    assimilators: GateConfig

    def validate(self, key: str) -> None:
        super().validate(key)
        check(len(self.kinds) >= 1, f"{key}.kinds", "needs at least one emulator kind")
        check_names(self.kinds, emulator_kinds(), f"{key}.kinds")


@dataclasses.dataclass(frozen=True)
class SensorLayoutConfig:
    """One sensor layout of ``sensors.layouts``: ``fraction`` of the grid points (at least
    one), drawn once from ``seed``, each reading every field of ``fields`` (empty: all)
    every ``every`` stored steps, with Gaussian noise of ``noise`` times the field's standard
    deviation over the trajectory (``pipelines.data.observations``)."""

    fraction: float
    fields: tuple[str, ...]
    every: int
    noise: float
    seed: int

    def validate(self, key: str) -> None:
        check(0 < self.fraction <= 1, f"{key}.fraction", f"must be a fraction in (0, 1], got {self.fraction}")
        check(self.every >= 1, f"{key}.every", f"must be >= 1, got {self.every}")
        check(self.noise > 0, f"{key}.noise", f"must be > 0, got {self.noise}")


class Named:
    """A section whose one field maps names to sub-configurations (``sensors.layouts``,
    ``register_assimilator.assimilators``): at least one entry, each name letters, digits and
    underscores, and :meth:`entry` to look one up by name. A subclass says how its messages
    call an entry: ``NOUN`` ("layout"), and ``LOOKUP_NOUN`` in a failed look-up ("sensor layout")."""

    NOUN: typing.ClassVar[str]
    LOOKUP_NOUN: typing.ClassVar[str]

    def _entries(self) -> tuple[str, dict[str, Any]]:
        """The field's name and its mapping of names to entries."""
        (field,) = dataclasses.fields(self)  # type: ignore[arg-type]
        return field.name, getattr(self, field.name)

    def validate(self, key: str) -> None:
        field, entries = self._entries()
        check(len(entries) >= 1, f"{key}.{field}", f"needs at least one {self.NOUN}")
        article = "an" if self.NOUN[0] in "aeiou" else "a"
        for name in entries:
            check(name.replace("_", "").isalnum(), f"{key}.{field}.{name}",
                  f"{article} {self.NOUN}'s name must be letters, digits and underscores")

    def entry(self, name: str, key: str) -> Any:
        """The entry ``name``; a :class:`ConfigError` naming ``key`` and the valid names otherwise."""
        field, entries = self._entries()
        section = next(s for s, cls in SECTIONS.items() if cls is type(self))
        check(name in entries, key, f"no {self.LOOKUP_NOUN} {name!r}; {section}.{field} has {sorted(entries)}")
        return entries[name]


@dataclasses.dataclass(frozen=True)
class SensorsConfig(Named):
    """``sensors:`` section: the sensor layouts, by name. The twin experiment observes one
    (``assimilate.layout``); an observation encoder is trained for each."""

    NOUN, LOOKUP_NOUN = "layout", "sensor layout"

    layouts: dict[str, SensorLayoutConfig]

    def layout(self, name: str, key: str) -> SensorLayoutConfig:
        """The layout ``name``; a :class:`ConfigError` naming ``key`` and the valid names otherwise."""
        return self.entry(name, key)


@dataclasses.dataclass(frozen=True)
class ObsEncoderModelConfig:
    """Architecture of ``models.observation.ObservationEncoder``."""

    hidden: int
    layers: int

    def validate(self, key: str) -> None:
        check(self.hidden >= 1, f"{key}.hidden", f"must be >= 1, got {self.hidden}")
        check(self.layers >= 1, f"{key}.layers", f"must be >= 1, got {self.layers}")


@dataclasses.dataclass(frozen=True)
class TrainObsEncoderConfig:
    """``train_obs_encoder:`` section, one encoder per sensor layout and autoencoder width:
    sequences of ``length`` readings of the layout to the latents of the autoencoder and the
    conditioning entries ``parameters``; each training sequence loses a share of its
    readings drawn uniformly from ``[0, dropout]``, and gets the layout's noise. Its latent
    errors' covariance on the valid split is shrunk toward its diagonal by ``shrinkage``."""

    parameters: tuple[str, ...]
    length: int
    dropout: float
    shrinkage: float
    model: ObsEncoderModelConfig
    train: TrainConfig

    def validate(self, key: str) -> None:
        check(self.length >= 1, f"{key}.length", f"must be >= 1, got {self.length}")
        check(0 <= self.dropout < 1, f"{key}.dropout", f"must be in [0, 1), got {self.dropout}")
        check(0 < self.shrinkage <= 1, f"{key}.shrinkage", f"must be in (0, 1], got {self.shrinkage}")


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

    NOUN, LOOKUP_NOUN = "assimilator", "assimilator"

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


@dataclasses.dataclass(frozen=True)
class SamplerStudyConfig:
    """``tune.sampler:`` the sampler study (``latentops tune --study sampler``): azula
    samplers and their settings for one registered diffusion emulator, two objectives
    (validation VRMSE, seconds per trajectory)."""

    trials: int  # finished trials the study aims at (resumed studies run the rest)
    version: str  # registered <dataset>-emulator version, alias, or latest diffusion version
    samplers: tuple[str, ...]
    orders: tuple[int, int]  # Adams-Bashforth order range (zab, vab)
    steps: tuple[int, int]  # denoising steps, searched on a log scale
    score: ScoreConfig

    def validate(self, key: str) -> None:
        check(self.trials >= 1, f"{key}.trials", f"must be >= 1, got {self.trials}")
        check(len(self.samplers) >= 1, f"{key}.samplers", f"needs at least one of {list(FAMILIES)}")
        check_names(self.samplers, tuple(FAMILIES), f"{key}.samplers")
        check(1 <= self.orders[0] <= self.orders[1] <= 3, f"{key}.orders",
              f"must be [low, high] within [1, 3], got {list(self.orders)}")
        check(1 <= self.steps[0] <= self.steps[1], f"{key}.steps",
              f"must be [low, high] with 1 <= low <= high, got {list(self.steps)}")


@dataclasses.dataclass(frozen=True)
class CompressionStudyConfig:
    """``tune.compression:`` the compression study (``latentops tune --study compression``):
    latent channels, learning rate and width of a short-budget autoencoder, judged by the
    validation VRMSE of an emulator trained on its latents. Intermediate values (the
    autoencoder's validation loss) let ``pruner`` stop bad trials early."""

    trials: int
    latent_channels: tuple[int, ...]
    lr: tuple[float, float]  # autoencoder learning rate, log scale
    widths: tuple[int, ...]  # first-level width; deeper levels double it
    kind: str  # a latent emulator kind
    autoencoder_steps: int
    emulator_steps: int
    pruner: Literal["median", "hyperband", "none"]  # keys of pipelines.stages.tune.PRUNERS
    startup_trials: int  # trials the median pruner lets finish before pruning
    score: ScoreConfig

    def validate(self, key: str) -> None:
        check(self.trials >= 1, f"{key}.trials", f"must be >= 1, got {self.trials}")
        check(self.kind in emulator_kinds(latent=True), f"{key}.kind",
              f"must be one of {list(emulator_kinds(latent=True))}, got {self.kind!r}")
        check(len(self.latent_channels) >= 1 and min(self.latent_channels) >= 1, f"{key}.latent_channels",
              f"must list positive channel counts, got {list(self.latent_channels)}")
        check(0 < self.lr[0] <= self.lr[1], f"{key}.lr", f"must be [low, high] with 0 < low <= high, got {list(self.lr)}")
        check(len(self.widths) >= 1 and min(self.widths) >= 1, f"{key}.widths",
              f"must list positive widths, got {list(self.widths)}")
        for name in ("autoencoder_steps", "emulator_steps"):
            check(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(self.startup_trials >= 0, f"{key}.startup_trials", f"must be >= 0, got {self.startup_trials}")


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """``tune:`` section: Optuna studies (``pipelines.stages.tune``)."""

    storage: str  # SQLAlchemy URL, or journal:<file> for parallel workers on one machine
    heartbeat: int  # seconds (SQL storages): a trial silent for twice this is failed and retried
    seed: int
    output: str  # best params files: <output>/<study>.yaml
    sampler: SamplerStudyConfig
    compression: CompressionStudyConfig

    def validate(self, key: str) -> None:
        check(bool(self.storage), f"{key}.storage", "must be a SQLAlchemy URL or journal:<file>")
        check(self.storage != "journal:", f"{key}.storage", "journal: needs a file name, e.g. journal:optuna.log")
        check(self.heartbeat >= 1, f"{key}.heartbeat", f"must be >= 1 second, got {self.heartbeat}")


#: Each ``params.yaml`` section and its config class.
SECTIONS: dict[str, type] = {
    "simulate": SimulateConfig, "data": DataConfig, "train_autoencoder": TrainAutoencoderConfig,
    "cache_latents": CacheLatentsConfig, "train_emulator": TrainEmulatorConfig, "evaluate": EvaluateConfig,
    "promote": PromoteConfig, "sensors": SensorsConfig, "train_obs_encoder": TrainObsEncoderConfig,
    "assimilate": AssimilateConfig, "register_assimilator": RegisterAssimilatorConfig,
    "sweep_observations": SweepObservationsConfig, "tune": TuneConfig,
}


# --------------------------------------------------------------------------- parsing


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read the whole ``params.yaml`` as a mapping of sections, with a clear error when it
    is missing, is not a YAML mapping or has a section that is not one of :data:`SECTIONS`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found (run from the repository root "
                          "or pass --params PATH)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections, got {type(data).__name__}")
    check_sections(data, f"{path}: ")
    return data


def check_sections(names: typing.Iterable[str], where: str) -> None:
    """Every one of ``names`` is a section of :data:`SECTIONS`: a misspelt section would
    otherwise be ignored and its stage fail on missing keys. The :class:`ConfigError` starts
    with ``where`` and names the first unknown one, the valid ones and the likely intended one."""
    unknown = sorted(str(name) for name in names if name not in SECTIONS)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown section; valid sections are {sorted(SECTIONS)}"
                          f"{did_you_mean(unknown[0], SECTIONS)}")


def load_section(cls: type[T], section: str, path: str | Path = DEFAULT_PARAMS,
                 overrides: dict[str, Any] | None = None) -> T:
    """Parse ``params.yaml``'s ``section`` into ``cls``; ``overrides`` (dotted keys relative
    to the section) win over the file. Errors are prefixed with the file name."""
    return parse_section(load_params(path), cls, section, path, overrides)


def parse_section(params: dict[str, Any], cls: type[T], section: str, path: str | Path,
                  overrides: dict[str, Any] | None = None) -> T:
    """:func:`load_section` on ``params``, the file ``path`` already read by :func:`load_params`."""
    raw = params.get(section, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {section}: expected a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for depth, parent in enumerate(parents):
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                where = ".".join((section, *parents[: depth + 1]))
                raise ConfigError(f"{path}: {section}.{dotted}: {where} is {node!r}, not a mapping with keys to set")
        node[leaf] = value
    try:
        return from_mapping(cls, raw, section)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def has_default(field: dataclasses.Field) -> bool:
    """Whether a params file may leave ``field`` out (it has a default or a default factory)."""
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def from_mapping(cls: type[T], raw: Any, key: str) -> T:
    """Convert a YAML mapping into the dataclass ``cls``, recursively, then run its
    ``validate(key)``. Every key without a dataclass default must be given (``params.yaml``
    is the one source of the values); the few optional ones take their defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key; valid keys are {sorted(fields)}"
                          f"{did_you_mean(unknown[0], fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], value, f"{key}.{name}") for name, value in raw.items()}
    required = [name for name, field in fields.items() if not has_default(field)]
    missing = [name for name in required if name not in raw]
    if missing:  # after the given values: a wrong one is named wherever it is
        raise ConfigError(f"{key}.{missing[0]}: missing; required keys are {sorted(required)}"
                          + (f" (also missing: {missing[1:]})" if len(missing) > 1 else ""))
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(key)
    return obj


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Convert one YAML value to the type ``hint``, or raise :class:`ConfigError`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_convert(args[0], k, key): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {list(value)!r}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported config type {hint!r}")  # a programming error


def check_params(path: str | Path = DEFAULT_PARAMS) -> None:
    """Parse every known section of ``path``; raise :class:`ConfigError` at the first problem."""
    params = load_params(path)
    for section, cls in SECTIONS.items():
        if section in params:
            parse_section(params, cls, section, path)


def apply_params(fragment: str | Path, path: str | Path = DEFAULT_PARAMS) -> list[str]:
    """Merge the params file ``fragment`` (nested sections, e.g. a tuned result) into
    ``path``, keeping its comments and layout, after checking that the merged file is
    valid; nothing is written otherwise. Returns the dotted keys that changed."""
    from ruamel.yaml import YAML

    from pipelines.io import atomic_path

    fragment, path = Path(fragment), Path(path)
    update = load_params(fragment)
    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    load_params(path)  # a clear error if it is missing or not a mapping
    document = yaml_rt.load(path.read_text())
    changed: list[str] = []

    def merge(node: Any, values: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                merge(node[key], value, f"{prefix}{key}.")
            elif node.get(key) != value:
                node[key] = value
                changed.append(f"{prefix}{key}")

    merge(document, update, "")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            yaml_rt.dump(document, f)
        try:
            check_params(tmp)
        except ConfigError as error:
            raise ConfigError(f"{fragment} would make {path} invalid: {str(error).split(': ', 1)[1]}") from None
    return changed
