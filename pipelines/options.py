"""What every ``latentops`` command shares: the protocol of a command module, the sections of
the parameters file with the ``--set`` overrides, and option types (``latentops apply-params``,
which checks every section, is in ``pipelines.settings.sections``).

A command module (named in ``pipelines.cli.COMMANDS``) defines, next to its ``run``::

    def add_arguments(parser: argparse.ArgumentParser) -> None:  # description and options
    def main(args: argparse.Namespace) -> int:                    # run it; print the summary

``args`` holds the global options too (``args.params``, ``args.set``, ``args.verbose``);
:func:`section` reads a section of the parameters file with them. A module with a second
command names its pair in the table: ``add_<name>_arguments`` and ``<name>_main`` (e.g.
``add_compare_arguments`` and ``compare_main``)."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

import yaml

from pipelines.settings import ConfigError, check_sections, load_section

T = TypeVar("T")


def value(text: str) -> Any:
    """A ``--set`` value: YAML (``4``, ``[8, 16]``, ``true``, ``heun``), numbers like ``1e-3`` included."""
    found = yaml.safe_load(text) if text else ""
    if isinstance(found, str):
        try:
            return float(found)
        except ValueError:
            return found
    return found


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``--set SECTION.KEY=VALUE`` (repeatable; one option may hold several, space-separated)
    as ``{section: {dotted key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in (pair for text in args.set for pair in text.split()):
        key, sep, text = item.partition("=")
        name, _, rest = key.partition(".")
        if not sep or not rest:
            raise ConfigError(f"--set {item}: expected SECTION.KEY=VALUE, e.g. train_autoencoder.train.steps=100")
        check_sections([name], f"--set {item}: ")
        out.setdefault(name, {})[rest] = value(text)
    return out


def section(args: argparse.Namespace, cls: type[T], name: str, extra: dict[str, Any] | None = None) -> T:
    """Section ``name`` of ``--params``, with the ``--set`` overrides and then ``extra`` on top."""
    return load_section(cls, name, args.params, {**overrides(args).get(name, {}), **(extra or {})})


def add_steps(parser: argparse.ArgumentParser, name: str) -> None:
    """``--steps`` of the training commands (see :func:`steps_override`)."""
    parser.add_argument("--steps", type=int, help=f"override {name}.train.steps")


def steps_override(args: argparse.Namespace) -> dict[str, int]:
    """``--steps`` of the training commands, as an override of ``<section>.train.steps``."""
    return {"train.steps": args.steps} if args.steps is not None else {}


def channels(text: str) -> int | None:
    """``--latent-channels``: an integer, or ``none`` (as MLproject passes for the pixel solver)."""
    return None if text.lower() == "none" else int(text)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` of the long-running commands."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars; training prints a line every 30 s instead (step, loss, time left)")

