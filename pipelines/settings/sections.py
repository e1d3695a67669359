"""Every ``params.yaml`` section with its class (:data:`CLASSES`), and what needs them all:
the whole-file check (:func:`check_params`) and ``latentops apply-params``. A stage imports
the settings module of its own sections instead, so that its code deps hold only those."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.settings import DEFAULT_PARAMS, ConfigError, load_params, parse_section
from pipelines.settings.assimilation import AssimilateConfig, RegisterAssimilatorConfig, SweepObservationsConfig
from pipelines.settings.autoencoder import TrainAutoencoderConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import TrainEmulatorConfig
from pipelines.settings.evaluation import EvaluateConfig, PromoteConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.settings.obs_encoder import TrainObsEncoderConfig
from pipelines.settings.sensors import SensorsConfig
from pipelines.settings.simulate import SimulateConfig
from pipelines.settings.tune import TuneConfig

#: Each ``params.yaml`` section (:data:`pipelines.settings.SECTIONS`) and its config class.
CLASSES: dict[str, type] = {
    "simulate": SimulateConfig, "data": DataConfig, "train_autoencoder": TrainAutoencoderConfig,
    "cache_latents": CacheLatentsConfig, "train_emulator": TrainEmulatorConfig, "evaluate": EvaluateConfig,
    "promote": PromoteConfig, "sensors": SensorsConfig, "train_obs_encoder": TrainObsEncoderConfig,
    "assimilate": AssimilateConfig, "register_assimilator": RegisterAssimilatorConfig,
    "sweep_observations": SweepObservationsConfig, "tune": TuneConfig,
}


def check_params(path: str | Path = DEFAULT_PARAMS) -> None:
    """Parse every known section of ``path``; raise :class:`ConfigError` at the first problem."""
    params = load_params(path)
    for section, cls in CLASSES.items():
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


# --------------------------------------------------------------------------- latentops apply-params


def add_apply_params_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Merge FILE's sections into the parameters file, keeping its comments; the result is "
                          "checked before anything is written. Then `dvc repro` rebuilds what the new values change.")
    parser.add_argument("file", help="params file, e.g. tuned/sampler.yaml")


def apply_params_main(args: argparse.Namespace) -> int:
    changed = apply_params(args.file, args.params)
    print(f"{args.params}: " + (f"set {', '.join(changed)} from {args.file}" if changed
                                else f"already has every value of {args.file}"))
    return 0
