"""``latentops``: the command line. One sub-command per stage or tool, each implemented by
the module ``COMMANDS`` names; ``latentops CMD`` imports that module only (the protocol is in
``pipelines.options``): it adds CMD's options and runs it. ``latentops --help`` imports none."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pipelines.io import OutputError
from pipelines.settings import DEFAULT_PARAMS, ConfigError


class Command(NamedTuple):
    """A sub-command: the module implementing it, its line in ``latentops --help``, and the
    module's functions adding its options and running it."""
    module: str
    help: str
    add_arguments: str = "add_arguments"
    main: str = "main"


COMMANDS: dict[str, Command] = {
    "simulate": Command("pipelines.stages.simulate",
                        "generate the built-in dataset with Clawpack (params: simulate)"),
    "validate-data": Command("pipelines.data.validate", "check a dataset directory against The Well's format"),
    "train-autoencoder": Command("pipelines.stages.train_autoencoder",
                                 "train, track and save one autoencoder (params: train_autoencoder)"),
    "cache-latents": Command("pipelines.stages.cache_latents",
                             "encode every split with the trained autoencoder (params: cache_latents)"),
    "train-emulator": Command("pipelines.stages.train_emulator",
                              "train, score, track and save one emulator (params: train_emulator)"),
    "train-obs-encoder": Command("pipelines.stages.train_obs_encoder",
                                 "train, calibrate, track and save one observation encoder "
                                 "(params: train_obs_encoder, sensors)"),
    "register": Command("pipelines.stages.register",
                        "register every trained model and the assimilators (params: register_assimilator, sensors)"),
    "register-assimilator": Command("pipelines.stages.register",
                                    "register an assimilator of register_assimilator.assimilators "
                                    "(params: register_assimilator)", "add_register_assimilator_arguments",
                                    "register_assimilator_main"),
    "evaluate": Command("pipelines.stages.evaluate", "score every registered version the same way (params: evaluate)"),
    "compare": Command("pipelines.stages.evaluate", "print the comparison table of the evaluated versions",
                       "add_compare_arguments", "compare_main"),
    "promote": Command("pipelines.stages.promote",
                       "move the production aliases to the best evaluated emulator and assimilator (params: promote)"),
    "assimilate": Command("pipelines.stages.assimilate",
                          "assimilate an observation file with a registered emulator or assimilator",
                          "add_assimilate_arguments", "assimilate_main"),
    "twin-experiment": Command("pipelines.stages.assimilate",
                               "latent data assimilation on synthetic observations of test trajectories "
                               "(params: assimilate)"),
    "sweep-observations": Command("pipelines.stages.sweep_observations",
                                  "an assimilator's skill against sensor density and noise (params: sweep_observations)"),
    "tune": Command("pipelines.stages.tune", "run or resume an Optuna study (params: tune)"),
    "forecast": Command("pipelines.stages.forecast", "forecast a trajectory with a registered emulator"),
    "observe": Command("pipelines.stages.observe",
                       "make synthetic sensor observations of a trajectory (twin experiments)"),
    "validate-observations": Command("pipelines.stages.observe",
                                     "check an observation file (HDF5 or CSV) against the trajectory it observes",
                                     "add_validate_observations_arguments", "validate_observations_main"),
    "apply-params": Command("pipelines.settings.sections", "merge a params file (e.g. a tuned result) into params.yaml",
                            "add_apply_params_arguments", "apply_params_main"),
    "stats": Command("pipelines.data.validate", "compute The Well's stats.yaml for a dataset directory",
                     "add_stats_arguments", "stats_main"),
}


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="parameters file (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a value of the parameters file for this command, e.g. --set "
                             "train_autoencoder.train.steps=100 (repeatable; space-separated pairs allowed)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, with the options of ``command`` only (its module
    imported); the others' are added when they are the command."""
    parser = argparse.ArgumentParser(
        prog="latentops",
        description="MLOps for latent-space physics emulators: data, training, evaluation, registry. "
                    "Every stage reads its settings from params.yaml (section named like the stage).",
    )
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        p = sub.add_parser(name, help=entry.help)
        if name == command:
            module = importlib.import_module(entry.module)
            getattr(module, entry.add_arguments)(p)
            p.set_defaults(handler=getattr(module, entry.main))
    return parser


class _Peek(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (after the global options), if any."""
    peek = _Peek(add_help=False, allow_abbrev=False)
    _add_global_options(peek)
    try:
        _, rest = peek.parse_known_args(argv)
    except ValueError:  # the full parser says what is wrong
        return None
    return next((word for word in rest if word in COMMANDS), None)


HandledErrors = (ConfigError, FileNotFoundError, ValueError, ConnectionError, OutputError)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a scheduler's pre-emption, ``docker stop``) as ``SystemExit(143)``:
    open MLflow runs end ``FAILED`` and atomic outputs are cleaned up on the way out."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_of(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # MLflow's INFO lines (database migrations, monitor start/stop) are noise here
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # MLflow draws a bar per artifact download, a scorecard or a model card's file included: a
    # wall of bars around our own progress (set MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true for them)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    handler: Callable[[argparse.Namespace], int] = args.handler
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return handler(args)
    except HandledErrors as error:
        print(f"latentops {args.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
