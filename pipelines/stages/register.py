"""Stage ``register``: turn what the training stages made into registered, servable models,
and register the assimilators. Training never imports this module, the registry or the
serving runtime, so editing a model card, the registry helpers, the figures or the serving
code re-runs this stage alone (and what reads the registry), never a training stage.

For every trained model under ``data/models/`` (``pipelines.recipes.artifact``), in order
(autoencoders, then the emulators and observation encoders that bundle or name their
autoencoder's version), inside its own training run: its figures (loss curves;
reconstructions of an autoencoder; the rollout VRMSE of an emulator), then a version of
``<dataset>-autoencoder``, ``-emulator`` or ``-obs-encoder`` with its model card, exported to
``data/registry/<model>/``. A model already registered from the same training run is not
registered again: its card is refreshed and it is exported. Then every assimilator of
``register_assimilator.assimilators``: the exported emulator of its kind and latent width,
the score filter and ensemble size, its sensor layout and, on the encoder route, that
layout's exported observation encoder, as one pyfunc version of ``<dataset>-assimilator``
(tags carry the lineage; a version whose parts and settings are all an existing one's is
not registered again), exported to ``data/registry/assimilator_<name>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import mlflow
import torch

from models.forecaster import Forecaster
from models.kinds import AUTOENCODER, OBS_ENCODER
from models.networks import network_class
from models.samplers import ODESampler
from pipelines import layout as paths, plots
from pipelines.data.observations import layout_of
from pipelines.data.validate import ensure_valid
from pipelines.data.windows import trajectories
from pipelines.options import add_quiet, section
from pipelines.recipes import artifact
from pipelines.serving.assimilator_model import settings
from pipelines.settings.assimilation import RegisterAssimilatorConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.sensors import SensorsConfig
from pipelines.tracking import cards, names, registry
from pipelines.tracking import runs as tracking
from pipelines.tracking.cards import ASSIMILATOR

STAGE = "register"
ASSIMILATOR_STAGE = "register_assimilator"  # the experiment of the assimilators' registration runs


def trained_models() -> list[tuple[str, artifact.Trained]]:
    """Every trained model under ``data/models/`` as ``(name, model)``: autoencoders first
    (the others bundle or name their registered version), each role in the order its
    models were trained (so versions are numbered as the training runs started)."""
    client = tracking.configure()
    found = [(d.name, artifact.load(d, network_class)) for d in sorted(paths.MODELS.glob("*"))
             if (d / artifact.MODEL).is_file()]
    started = {name: client.get_run(trained.run_id).info.start_time for name, trained in found}
    return sorted(found, key=lambda item: (item[1].kind != AUTOENCODER, started[item[0]]))


def _log_curves(client: mlflow.MlflowClient, trained: artifact.Trained) -> None:
    """The run's ``train/loss`` and its validation metrics (``config["curves"]``) on one plot."""
    curves = trained.config["curves"]
    series = {}
    for label, key in {"train loss": "train/loss", **curves["validation"]}.items():
        history = client.get_metric_history(trained.run_id, key)
        series[label] = ([m.step for m in history], [m.value for m in history])
    tracking.log_figure(plots.curves(series, curves["title"], "value"), "plots/loss_curves.png")


def _log_figures(client: mlflow.MlflowClient, trained: artifact.Trained) -> None:
    """What a person looks at in the training run: loss curves, reconstructions of an
    autoencoder, the rollout VRMSE of an emulator against persistence."""
    _log_curves(client, trained)
    if trained.kind == AUTOENCODER:
        norm = trained.normalizer
        latent_channels = trained.arguments["latent_channels"]
        for index, x in zip(trained.config["shown"], trained.example["shown"]):
            with torch.no_grad():
                y = trained.network(x[None])
            truth, recon = norm.denormalize(x[None], dim=1)[0].numpy(), norm.denormalize(y, dim=1)[0].numpy()
            tracking.log_figure(plots.reconstruction_panel(truth, recon, norm.channels,
                                                           f"c={latent_channels}, validation state {index}"),
                                f"plots/reconstruction_{index}.png")
    elif "rollout" in trained.config:
        r = trained.config["rollout"]
        tracking.log_figure(plots.curves({trained.config["curves"]["title"]: (r["leads"], r["vrmse"]),
                                          "persistence": (r["leads"], r["persistence"])},
                                         f"rollout VRMSE on {r['split']}", "VRMSE (physical, mean over fields)",
                                         xlabel="lead time (stored steps)"), "plots/rollout_vrmse.png")


def _autoencoder_version(trained: artifact.Trained, model: str) -> tuple[int, Path]:
    """The registered version (and its export) of the autoencoder ``trained`` was made with,
    checked to be the one trained by the same run."""
    lineage = trained.config["autoencoder"]
    directory = paths.registered_dir(lineage["model"])
    exported = _exported(directory, "latentops register")
    if exported["run_id"] != lineage["run_id"]:
        raise ValueError(f"{model} was trained on the latents of {lineage['model']} from run {lineage['run_id']}, "
                         f"but {directory} is run {exported['run_id']}'s: re-run `dvc repro`")
    return int(exported["version"]), directory


def _register_model(name: str, trained: artifact.Trained, dataset: str) -> Any:
    """Log ``trained`` as its pyfunc into the active (training) run and register it."""
    tags = {**trained.tags, "data_hash": trained.data_hash, "run_id": trained.run_id}
    if trained.kind == AUTOENCODER:
        return registry.register_autoencoder(trained.network, trained.normalizer, trained.example["example"], dataset,
                                             tags)
    if trained.kind == OBS_ENCODER:
        version, _ = _autoencoder_version(trained, name)
        return registry.register_obs_encoder(trained.network, {**trained.config["metadata"],
                                                               "autoencoder_version": version},
                                             dataset, {**tags, "autoencoder_version": str(version)})
    autoencoder, autoencoder_dir = None, None
    if trained.config["autoencoder"] is not None:
        version, autoencoder_dir = _autoencoder_version(trained, name)
        autoencoder = registry.load_exported_autoencoder(autoencoder_dir).model
        tags["autoencoder_version"] = str(version)
    s = trained.config["settings"]
    forecaster = Forecaster(trained.kind, trained.network, trained.arguments, trained.normalizer, autoencoder,
                            s["window"], s["stride"], s["overlap"], ODESampler(**s["sampler"]), s["condition_names"])
    example = {key: trained.example[key].numpy() for key in ("states", "cond")}
    return registry.register_forecaster(forecaster, autoencoder_dir, example, dataset, tags)


def register_trained(name: str, trained: artifact.Trained, data: DataConfig) -> dict[str, Any]:
    """Register the trained model ``name`` (once per training run) and export its version."""
    client = tracking.configure()
    run = client.get_run(trained.run_id)
    dataset, stage = run.data.tags["dataset"], run.data.tags["stage"]
    registered = {AUTOENCODER: names.autoencoder_name, OBS_ENCODER: names.obs_encoder_name}.get(
        trained.kind, names.emulator_name)(dataset)
    version = registry.version_of_run(registered, trained.run_id)
    new = version is None
    if new:
        with tracking.start_run(stage, dataset, {}, data.root, run_id=trained.run_id, system_metrics=False):
            _log_figures(client, trained)
            version = _register_model(name, trained, dataset)
    else:
        cards.refresh(client, registered, version.version)
    registry.export_version(registered, version.version, paths.registered_dir(name))
    return {"name": name, "registered_model": registered, "version": int(version.version), "registered": new}


def register_models(data: DataConfig) -> list[dict[str, Any]]:
    """Register every trained model under ``data/models/``; their summaries."""
    return [register_trained(name, trained, data) for name, trained in trained_models()]


def run(cfg: RegisterAssimilatorConfig, sensors: SensorsConfig, data: DataConfig,
        assimilators: bool = True) -> list[dict[str, Any]]:
    """Register every trained model, then (``assimilators``) every assimilator of ``cfg``;
    their summaries."""
    out = register_models(data)
    return out + [register_assimilator(cfg, name, sensors, data) for name in cfg.assimilators if assimilators]


def _exported(directory: Path, command: str) -> dict:
    """``registered.json`` of an exported version: which one it is."""
    info = directory / registry.REGISTERED
    if not info.is_file():
        raise FileNotFoundError(f"{info} not found: run `{command}` first (or `dvc repro`)")
    return json.loads(info.read_text())


def register_assimilator(cfg: RegisterAssimilatorConfig, name: str, sensors: SensorsConfig,
                         data: DataConfig) -> dict[str, object]:
    """Register (or find) the version of assimilator ``name`` and export it; returns its
    summary (``version``, ``registered``: whether it is new, ``uri``, the lineage tags)."""
    spec = cfg.assimilator(name, "--name")
    key = f"register_assimilator.assimilators.{name}"
    sensor_layout = sensors.layout(spec.layout, f"{key}.layout")
    ensure_valid(data.root)
    windows = trajectories(data, "test")
    observing = layout_of(spec.layout, sensor_layout, list(windows.channels), windows.resolution)
    forecaster_dir = paths.registered_dir(paths.emulator(spec.kind, spec.latent_channels))
    emulator = _exported(forecaster_dir, "latentops register")
    client = tracking.configure()
    emulator_uri = f"models:/{emulator['name']}/{emulator['version']}"
    emulator_tags = client.get_model_version(emulator["name"], str(emulator["version"])).tags
    encoder_dir, parameters, lineage = None, (), {}
    if spec.encoder:
        encoder_dir = paths.registered_dir(paths.obs_encoder(spec.layout, spec.latent_channels))
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
    model = names.assimilator_name(windows.dataset_name)
    same = [v for v in client.search_model_versions(f"name='{model}'") if v.tags.get("digest") == digest]
    if same:
        version, new = max(same, key=lambda v: int(v.version)), False
    else:
        with tracking.start_run(ASSIMILATOR_STAGE, windows.dataset_name, {key: spec, "sensors": sensors}, data.root,
                                run_name=name, tags={"assimilator": name}, system_metrics=False) as active:
            mlflow.log_dict(config, "assimilator.json")
            version = registry.register_assimilator(forecaster_dir, encoder_dir, config, windows.dataset_name,
                                                    {**tags, "run_id": active.info.run_id})
        new = True
    registry.export_version(model, version.version, paths.registered_dir(paths.assimilator(name)))
    return {"name": name, "registered_model": model, "version": int(version.version), "registered": new,
            "uri": f"models:/{model}/{version.version}", **tags}


# --------------------------------------------------------------------------- latentops register


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "For every trained model under data/models/ (autoencoders first): its figures into its training run, a "
        "version of <dataset>-autoencoder, -emulator or -obs-encoder with its model card (once per training "
        "run), exported to data/registry/<model>/; then every assimilator of register_assimilator.assimilators "
        "(as register-assimilator does).")
    add_quiet(parser)
    parser.add_argument("--assimilators", choices=["all", "none"], default="all",
                        help="register the assimilators of register_assimilator.assimilators too (all), or only the "
                             "trained models (none: before the emulators and encoders they bundle are trained) "
                             "(default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    for summary in run(section(args, RegisterAssimilatorConfig, "register_assimilator"),
                       section(args, SensorsConfig, "sensors"), section(args, DataConfig, "data"),
                       assimilators=args.assimilators == "all"):
        state = "registered as" if summary["registered"] else "unchanged: already"
        print(f"register: {summary['name']} {state} {summary['registered_model']} version {summary['version']}")
    return 0


# --------------------------------------------------------------------------- latentops register-assimilator


def add_register_assimilator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Bundle the assimilator NAME (the exported emulator of its kind and latent width, its score filter "
        "and members, its sensor layout of sensors.layouts and, with encoder: true, that layout's exported "
        "observation encoder) as one pyfunc and register it as a version of <dataset>-assimilator, tagged "
        "with its lineage (emulator, autoencoder, data hash, encoder, layout); exported to "
        f"{paths.registered_dir(paths.assimilator('NAME'))}. When an existing version has the same parts and "
        "settings, that one is exported instead.")
    add_quiet(parser)
    parser.add_argument("--name", required=True, help="an assimilator of register_assimilator.assimilators")


def register_assimilator_main(args: argparse.Namespace) -> int:
    summary = register_assimilator(section(args, RegisterAssimilatorConfig, "register_assimilator"), args.name,
                                   section(args, SensorsConfig, "sensors"), section(args, DataConfig, "data"))
    state = "registered as" if summary["registered"] else "unchanged: already"
    print(f"register_assimilator: {args.name} ({summary['route']} route on {summary['emulator']}, layout "
          f"{summary['layout']}) {state} {summary['registered_model']} version {summary['version']}")
    return 0
