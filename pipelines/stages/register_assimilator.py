"""Stage ``register_assimilator@<name>``: bundle the assimilator ``name`` of
``register_assimilator.assimilators`` (the exported emulator of its kind and latent width, the
score filter and ensemble size, its sensor layout and, on the encoder route, that layout's
exported observation encoder) as one pyfunc, and register it as a version of
``<dataset>-assimilator``, exported to ``data/models/assimilator_<name>``.

A version whose parts and settings are all those of an existing version is not registered
again: that version is exported. Tags carry the lineage: the emulator version and its
autoencoder version and data hash, the observation encoder version, the layout and its
settings, the filter's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import mlflow

from pipelines import layout as paths
from pipelines.config import DataConfig, RegisterAssimilatorConfig, SensorsConfig
from pipelines.data.observations import layout_of
from pipelines.data.validate import ensure_valid
from pipelines.data.windows import trajectories
from pipelines.options import add_quiet, section
from pipelines.serving.assimilator_model import settings
from pipelines.tracking import registry
from pipelines.tracking import runs as tracking
from pipelines.tracking.cards import ASSIMILATOR

STAGE = "register_assimilator"


def _exported(directory: Path, command: str) -> dict:
    """``registered.json`` of an exported version: which one it is."""
    info = directory / registry.REGISTERED
    if not info.is_file():
        raise FileNotFoundError(f"{info} not found: run `{command}` first (or `dvc repro`)")
    return json.loads(info.read_text())


def run(cfg: RegisterAssimilatorConfig, name: str, sensors: SensorsConfig, data: DataConfig) -> dict[str, object]:
    """Register (or find) the version of assimilator ``name`` and export it; returns its
    summary (``version``, ``registered``: whether it is new, ``uri``, the lineage tags)."""
    spec = cfg.assimilator(name, "--name")
    key = f"register_assimilator.assimilators.{name}"
    sensor_layout = sensors.layout(spec.layout, f"{key}.layout")
    ensure_valid(data.root)
    windows = trajectories(data, "test")
    observing = layout_of(spec.layout, sensor_layout, list(windows.channels), windows.resolution)
    forecaster_dir = paths.model_dir(paths.emulator(spec.kind, spec.latent_channels))
    emulator = _exported(forecaster_dir, f"latentops train-emulator --kind {spec.kind} "
                                         f"--latent-channels {spec.latent_channels}")
    client = tracking.configure()
    emulator_uri = f"models:/{emulator['name']}/{emulator['version']}"
    emulator_tags = client.get_model_version(emulator["name"], str(emulator["version"])).tags
    encoder_dir, parameters, lineage = None, (), {}
    if spec.encoder:
        encoder_dir = paths.model_dir(paths.obs_encoder(spec.layout, spec.latent_channels))
        encoder = registry.load_exported_obs_encoder(encoder_dir)
        registry.check_same_autoencoder(encoder, emulator_tags.get("autoencoder_version"), emulator_uri)
        if encoder.layout != observing.to_dict():
            raise ValueError(f"{encoder_dir}: {encoder.name} version {encoder.version} reads another layout than "
                             f"sensors.layouts.{spec.layout} now gives: re-run `dvc repro train_obs_encoder`")
        parameters = encoder.parameters
        lineage = {"obs_encoder_version": str(encoder.version), "obs_encoder": f"models:/{encoder.name}/{encoder.version}"}
    config = settings(spec.filter, spec.members, parameters, observing.to_dict())
    digest = hashlib.sha256(json.dumps({"config": config, "emulator": emulator_uri, **lineage},
                                       sort_keys=True).encode()).hexdigest()[:16]
    tags = {"kind": ASSIMILATOR, "assimilator": name, "route": "encoder" if spec.encoder else "decoder",
            "emulator": emulator_uri, "emulator_version": str(emulator["version"]), "emulator_kind": spec.kind,
            "latent_channels": str(spec.latent_channels),
            "autoencoder_version": emulator_tags.get("autoencoder_version", ""),
            "data_hash": emulator_tags.get("data_hash", ""), **lineage, "layout": spec.layout,
            "layout_settings": json.dumps(dataclasses.asdict(sensor_layout)), "members": str(spec.members),
            "filter": json.dumps(config["filter"]), "parameters": ",".join(parameters), "digest": digest}
    model = registry.assimilator_name(windows.dataset_name)
    same = [v for v in client.search_model_versions(f"name='{model}'") if v.tags.get("digest") == digest]
    if same:
        version, new = max(same, key=lambda v: int(v.version)), False
    else:
        with tracking.start_run(STAGE, windows.dataset_name, {key: spec, "sensors": sensors}, data.root,
                                run_name=name, tags={"assimilator": name}, system_metrics=False) as active:
            mlflow.log_dict(config, "assimilator.json")
            version = registry.register_assimilator(forecaster_dir, encoder_dir, config, windows.dataset_name,
                                                    {**tags, "run_id": active.info.run_id})
        new = True
    registry.export_version(model, version.version, paths.model_dir(paths.assimilator(name)))
    return {"name": name, "registered_model": model, "version": int(version.version), "registered": new,
            "uri": f"models:/{model}/{version.version}", **tags}


# --------------------------------------------------------------------------- latentops register-assimilator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Bundle the assimilator NAME (the exported emulator of its kind and latent width, its score filter "
        "and members, its sensor layout of sensors.layouts and, with encoder: true, that layout's exported "
        "observation encoder) as one pyfunc and register it as a version of <dataset>-assimilator, tagged "
        "with its lineage (emulator, autoencoder, data hash, encoder, layout); exported to "
        f"{paths.model_dir(paths.assimilator('NAME'))}. When an existing version has the same parts and "
        "settings, that one is exported instead.")
    add_quiet(parser)
    parser.add_argument("--name", required=True, help="an assimilator of register_assimilator.assimilators")


def main(args: argparse.Namespace) -> int:
    summary = run(section(args, RegisterAssimilatorConfig, "register_assimilator"), args.name,
                  section(args, SensorsConfig, "sensors"), section(args, DataConfig, "data"))
    state = "registered as" if summary["registered"] else "unchanged: already"
    print(f"register_assimilator: {args.name} ({summary['route']} route on {summary['emulator']}, layout "
          f"{summary['layout']}) {state} {summary['registered_model']} version {summary['version']}")
    return 0
