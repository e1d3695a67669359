"""Typed configuration: ``params.yaml`` parsed into frozen, validated dataclasses.

``params.yaml`` is the single source of truth for every knob, namespaced by stage
(``simulate:``, ``data:``, ...). Each stage reads its own section with
:func:`load_section`, which converts the YAML mapping into the stage's dataclass and fails
at start with a :class:`ConfigError` naming the file, the key and what would be valid:
unknown or missing keys, wrong types and out-of-range values never reach the stage.

This package holds the machinery only (parsing, checks, the section names); each
section's dataclasses live in the module of its concern (``pipelines.settings.simulate``,
``.data``, ``.training``, ``.autoencoder``, ``.latents``, ``.score``, ``.emulator``,
``.evaluation``, ``.sensors``, ``.obs_encoder``, ``.assimilation``, ``.tune``), so that a
stage's code deps hold only the settings it reads.
``pipelines.settings.sections`` maps every section to its class (the whole-file check and
``latentops apply-params``, which need them all).

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

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")

#: The name of every ``params.yaml`` section (``pipelines.settings.sections.CLASSES`` gives
#: each its class).
SECTIONS: tuple[str, ...] = (
    "simulate", "data", "train_autoencoder", "cache_latents", "train_emulator", "evaluate", "promote", "sensors",
    "train_obs_encoder", "assimilate", "register_assimilator", "sweep_observations", "tune",
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


class Named:
    """A section whose one field maps names to sub-configurations (``sensors.layouts``,
    ``register_assimilator.assimilators``): at least one entry, each name letters, digits and
    underscores, and :meth:`entry` to look one up by name. A subclass says which section it
    is (``SECTION``) and how its messages call an entry: ``NOUN`` ("layout"), and
    ``LOOKUP_NOUN`` in a failed look-up ("sensor layout")."""

    SECTION: typing.ClassVar[str]
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
        check(name in entries, key, f"no {self.LOOKUP_NOUN} {name!r}; {self.SECTION}.{field} has {sorted(entries)}")
        return entries[name]


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
