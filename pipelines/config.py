"""Typed configuration: ``params.yaml`` parsed into frozen, validated dataclasses.

``params.yaml`` is the single source of truth for every knob, namespaced by stage
(``simulate:``, ``data:``, ...). Each stage reads its own section with
:func:`load_section`, which converts the YAML mapping into the stage's dataclass and fails
at start with a :class:`ConfigError` naming the file, the key and what would be valid:
unknown keys, wrong types and out-of-range values never reach the stage.

Nothing here reads configuration at import time: callers pass the path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

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


# --------------------------------------------------------------------------- stages


@dataclasses.dataclass(frozen=True)
class Splits:
    """Number of trajectories per split."""

    train: int = 48
    valid: int = 8
    test: int = 8

    def validate(self, key: str) -> None:
        for name, value in dataclasses.asdict(self).items():
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """``simulate:`` section: the built-in Clawpack Euler dataset (The Well's
    ``euler_multi_quadrants`` recipe at a small resolution)."""

    dataset: str = "euler_mini"
    output: str = "data/raw/euler_mini"
    resolution: int = 64
    n_steps: int = 101
    dt: float = 0.015
    trajectories: Splits = Splits()
    seed: int = 0
    workers: int = 0  # 0 = all cores
    boundaries: tuple[Literal["open", "periodic"], ...] = ("open", "periodic")
    gammas: tuple[float, ...] = WELL_EULER_GAMMAS
    quadrants: tuple[int, int] = (2, 4)  # min, max blocks per axis
    density: tuple[float, float] = (0.1, 2.0)
    pressure: tuple[float, float] = (0.1, 2.0)
    velocity: tuple[float, float] = (-0.8, 0.8)
    cfl: float = 0.8
    max_redraws: int = 20

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

    root: str = "data/raw/euler_mini"
    log_fields: tuple[str, ...] = ("energy", "density", "pressure")
    context: int = 1
    horizon: int = 4
    stride: int = 4

    def validate(self, key: str) -> None:
        check(self.context >= 1, f"{key}.context", f"must be >= 1, got {self.context}")
        check(self.horizon >= 0, f"{key}.horizon", f"must be >= 0, got {self.horizon}")
        check(self.stride >= 1, f"{key}.stride", f"must be >= 1, got {self.stride}")


# --------------------------------------------------------------------------- parsing


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read the whole ``params.yaml`` as a mapping, with a clear error when it is missing
    or is not a YAML mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found (run from the repository root "
                          "or pass --params PATH)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections, got {type(data).__name__}")
    return data


def load_section(cls: type[T], section: str, path: str | Path = DEFAULT_PARAMS,
                 overrides: dict[str, Any] | None = None) -> T:
    """Parse ``params.yaml``'s ``section`` into ``cls``; ``overrides`` (dotted keys relative
    to the section) win over the file. Errors are prefixed with the file name."""
    params = load_params(path)
    raw = params.get(section, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {section}: expected a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    try:
        return from_mapping(cls, raw, section)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def from_mapping(cls: type[T], raw: Any, key: str) -> T:
    """Convert a YAML mapping into the dataclass ``cls``, recursively, then run its
    ``validate(key)``. Missing keys take the dataclass defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key; valid keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], value, f"{key}.{name}") for name, value in raw.items()}
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
