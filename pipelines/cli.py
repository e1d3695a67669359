"""``latentops``: the command line. One sub-command per stage or tool; each handler is a
thin call into its stage module. Dispatch is a mapping from name to handler."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from typing import Any, TypeVar

import yaml

from models.kinds import emulator_kinds
from pipelines.config import (DEFAULT_PARAMS, ConfigError, DataConfig, SimulateConfig, check_sections,
                              load_section)
from pipelines.io import OutputError

T = TypeVar("T")


def _value(text: str) -> Any:
    """A ``--set`` value: YAML (``4``, ``[8, 16]``, ``true``, ``heun``), numbers like ``1e-3`` included."""
    value = yaml.safe_load(text) if text else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``--set SECTION.KEY=VALUE`` (repeatable; one option may hold several, space-separated)
    as ``{section: {dotted key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in (pair for text in args.set for pair in text.split()):
        key, sep, text = item.partition("=")
        section, _, rest = key.partition(".")
        if not sep or not rest:
            raise ConfigError(f"--set {item}: expected SECTION.KEY=VALUE, e.g. train_autoencoder.train.steps=100")
        check_sections([section], f"--set {item}: ")
        out.setdefault(section, {})[rest] = _value(text)
    return out


def _section(args: argparse.Namespace, cls: type[T], section: str, extra: dict[str, Any] | None = None) -> T:
    """``section`` of ``--params``, with the ``--set`` overrides and then ``extra`` on top."""
    return load_section(cls, section, args.params, {**_overrides(args).get(section, {}), **(extra or {})})


def _channels(text: str) -> int | None:
    """``--latent-channels``: an integer, or ``none`` (as MLproject passes for the pixel solver)."""
    return None if text.lower() == "none" else int(text)


def _simulate(args: argparse.Namespace) -> int:
    from pipelines.stages import simulate
    from pipelines.io import write_yaml

    overrides = {"workers": args.workers} if args.workers is not None else {}
    cfg = _section(args, SimulateConfig, "simulate", overrides)
    output = Path(args.output or cfg.output)
    summary = simulate.run(cfg, output, progress=not args.quiet)
    print(f"simulate: {summary['trajectories']} trajectories in {summary['files']} files under {output} "
          f"in {summary['seconds']} s; {summary['redrawn']} redrawn ({summary['redraws']} redraws) "
          "after going non-finite or non-physical")
    if args.summary:
        write_yaml(args.summary, summary)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pipelines.data.validate import validate_dataset

    root = args.path or _section(args, DataConfig, "data").root
    problems = validate_dataset(root, require_stats=not args.no_stats)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    if problems:
        print(f"{root}: {len(problems)} problem(s); not a valid The Well dataset", file=sys.stderr)
        return 1
    print(f"{root}: OK (The Well format)")
    return 0


def _steps_override(args: argparse.Namespace) -> dict[str, int]:
    """``--steps`` of the training commands, as an override of ``<section>.train.steps``."""
    return {"train.steps": args.steps} if args.steps is not None else {}


def _stats(args: argparse.Namespace) -> int:
    from pipelines.data.validate import ensure_valid
    from pipelines.data.welldata import write_stats

    ensure_valid(args.path, require_stats=False)
    path = write_stats(args.path, args.split)
    print(f"wrote {path} over the {args.split} split")
    return 0


def _train_autoencoder(args: argparse.Namespace) -> int:
    from pipelines.stages import train_autoencoder
    from pipelines.config import TrainAutoencoderConfig

    cfg = _section(args, TrainAutoencoderConfig, "train_autoencoder", _steps_override(args))
    data = _section(args, DataConfig, "data")
    summary = train_autoencoder.run(cfg, data, args.latent_channels, progress=not args.quiet)
    if summary.rank:  # a torchrun worker: rank 0 reports
        return 0
    print(f"train_autoencoder: c={args.latent_channels} (rate {summary['compression_rate']:g}) saved to "
          f"{summary['model']}; validation VRMSE "
          f"{summary.get('val_vrmse', float('nan')):.4f} (median {summary.get('val_vrmse_median', float('nan')):.4f})")
    return 0


def _cache_latents(args: argparse.Namespace) -> int:
    from pipelines.stages import cache_latents
    from pipelines.config import CacheLatentsConfig

    cfg = _section(args, CacheLatentsConfig, "cache_latents")
    data = _section(args, DataConfig, "data")
    output = cache_latents.run(cfg, data, args.latent_channels, progress=not args.quiet)
    print(f"cache_latents: c={args.latent_channels} encoded into {output}")
    return 0


def _train_emulator(args: argparse.Namespace) -> int:
    from pipelines import layout
    from pipelines.config import CacheLatentsConfig, TrainEmulatorConfig
    from pipelines.stages import train_emulator

    cfg = _section(args, TrainEmulatorConfig, "train_emulator", _steps_override(args))
    data = _section(args, DataConfig, "data")
    cache = _section(args, CacheLatentsConfig, "cache_latents")
    summary = train_emulator.run(cfg, data, cache, args.kind, args.latent_channels, progress=not args.quiet).summary
    if summary.rank:  # a torchrun worker: rank 0 reports
        return 0
    split = cfg.score.split
    scores = ", ".join(f"{key.split('vrmse_')[1]}: {value:.3f} (persistence {summary[key.replace('vrmse', 'persistence')]:.3f})"
                       for key, value in summary.values.items() if key.startswith(f"rollout_{split}_vrmse_"))
    print(f"train_emulator: {layout.emulator(args.kind, args.latent_channels)} saved to {summary['model']}; "
          f"{split} rollout VRMSE by lead window: {scores}")
    return 0


def _train_obs_encoder(args: argparse.Namespace) -> int:
    from pipelines.config import CacheLatentsConfig, SensorsConfig, TrainObsEncoderConfig
    from pipelines.stages import train_obs_encoder

    cfg = _section(args, TrainObsEncoderConfig, "train_obs_encoder", _steps_override(args))
    sensors = _section(args, SensorsConfig, "sensors")
    data, cache = _section(args, DataConfig, "data"), _section(args, CacheLatentsConfig, "cache_latents")
    summary = train_obs_encoder.run(cfg, sensors, data, cache, args.layout, args.latent_channels,
                                    progress=not args.quiet)
    if summary.rank:
        return 0
    print(f"train_obs_encoder: layout {args.layout}, c={args.latent_channels} saved to "
          f"{summary['model']}; on valid: latent RMSE "
          f"{summary['latent_rmse']:.3f}, {', '.join(cfg.parameters)} MAE {summary['parameter_mae']:.4f} "
          f"(at the last reading {summary['parameter_mae_last']:.4f})")
    return 0


def _register_assimilator(args: argparse.Namespace) -> int:
    from pipelines.config import RegisterAssimilatorConfig, SensorsConfig
    from pipelines.stages import register

    summary = register.register_assimilator(_section(args, RegisterAssimilatorConfig, "register_assimilator"),
                                            args.name, _section(args, SensorsConfig, "sensors"),
                                            _section(args, DataConfig, "data"))
    state = "registered as" if summary["registered"] else "unchanged: already"
    print(f"register_assimilator: {args.name} ({summary['route']} route on {summary['emulator']}, layout "
          f"{summary['layout']}) {state} {summary['registered_model']} version {summary['version']}")
    return 0


def _register(args: argparse.Namespace) -> int:
    from pipelines.config import RegisterAssimilatorConfig, SensorsConfig
    from pipelines.stages import register

    for summary in register.run(_section(args, RegisterAssimilatorConfig, "register_assimilator"),
                                _section(args, SensorsConfig, "sensors"), _section(args, DataConfig, "data")):
        state = "registered as" if summary["registered"] else "unchanged: already"
        print(f"register: {summary['name']} {state} {summary['registered_model']} "
              f"version {summary['version']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pipelines import layout
    from pipelines.config import EvaluateConfig
    from pipelines.stages import evaluate

    cfg = _section(args, EvaluateConfig, "evaluate")
    data = _section(args, DataConfig, "data")
    outcome = evaluate.run(cfg, data, force=args.force, progress=not args.quiet)
    print(f"evaluate: evaluated {len(outcome['evaluated'])} version(s) {outcome['evaluated']}; "
          f"{len(outcome['skipped'])} already evaluated under the current data and settings")
    print(f"wrote {layout.EVALUATION}, {layout.EVALUATION_CURVES}/ and {layout.REPORTS}/comparison.md")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pipelines.config import EvaluateConfig
    from pipelines.evaluation import report
    from pipelines.evaluation.key import evaluation_key
    from pipelines.evaluation.scoring import Truth, window_label
    from pipelines.stages import evaluate
    from pipelines.tracking import runs as tracking
    from pipelines.tracking.evaluations import evaluated

    cfg = _section(args, EvaluateConfig, "evaluate")
    data = _section(args, DataConfig, "data")
    truth = Truth.load(data, cfg.split, cfg.trajectories)
    results = evaluated(tracking.configure(), truth.dataset, evaluation_key(cfg, data))
    results += [result for result, _ in evaluate.score_baselines(truth, cfg, data)]
    print(report.table(results, [window_label(a, b) for a, b in cfg.lead_windows], cfg.confidence), end="")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from pipelines.stages import promote
    from pipelines.config import EvaluateConfig, PromoteConfig

    cfg = _section(args, PromoteConfig, "promote")
    evaluation = _section(args, EvaluateConfig, "evaluate")
    data = _section(args, DataConfig, "data")
    decisions = promote.run(cfg, evaluation, data, dry_run=args.dry_run, set_stage=args.stage)
    for family, decision in decisions.items():
        print(("dry run, nothing changed: " if args.dry_run else "promote: ") + f"{family}s: {decision.reason}")
        for version, why in decision.rejected.items():
            print(f"  {version} rejected: {why}")
    return 0


def _assimilate(args: argparse.Namespace) -> int:
    from pipelines.config import AssimilateConfig
    from pipelines.stages import assimilate

    summary = assimilate.assimilate(_section(args, AssimilateConfig, "assimilate"), _section(args, DataConfig, "data"),
                                    args.model, args.observations, args.split, args.trajectory, args.members,
                                    args.seed, args.output, args.save_members)
    estimated = "".join(f"; estimated {name} {value:.4f}" for name, value in summary["estimated"].items())
    print(f"assimilate: {summary['model']}: {summary['cycles']} cycles ({summary['readings_used']} with readings), "
          f"{summary['seconds_per_cycle']:.3f} s per cycle; VRMSE of the analysis {summary['vrmse_analysis']:.3f}, "
          f"of the free forecast {summary['vrmse_free']:.3f}{estimated} -> {summary['output']}, {summary['figure']}")
    return 0


def _twin_experiment(args: argparse.Namespace) -> int:
    from pipelines import layout
    from pipelines.config import AssimilateConfig, SensorsConfig, SimulateConfig
    from pipelines.stages import assimilate

    outcome = assimilate.run(_section(args, AssimilateConfig, "assimilate"), _section(args, SensorsConfig, "sensors"),
                             _section(args, DataConfig, "data"), _section(args, SimulateConfig, "simulate"),
                             progress=not args.quiet)
    for label, by in outcome["ratios"].items():
        print(f"twin-experiment: {label}: VRMSE / the free forecast's, by lead window: "
              + ", ".join(f"{w} {ratio}" for w, ratio in by.items()))
    print(f"twin-experiment: seconds per cycle {outcome['seconds_per_cycle']}; LETKF's cycle time over each "
          f"latent method's {outcome['cycle_time_letkf_over']}; through the decoder over through the observation "
          f"encoder {outcome['cycle_time_decoder_over_encoder']}; error of the estimated conditioning "
          f"{outcome['parameter_error']} -> {layout.ASSIMILATION}, {layout.ASSIMILATION_REPORT}")
    return 0


def _sweep_observations(args: argparse.Namespace) -> int:
    from pipelines import layout
    from pipelines.config import SweepObservationsConfig
    from pipelines.stages import sweep_observations

    cfg = _section(args, SweepObservationsConfig, "sweep_observations")
    outcome = sweep_observations.run(cfg, _section(args, DataConfig, "data"), args.model, progress=not args.quiet)
    window, values = list(outcome["vrmse"].items())[-1]
    for noise, column in zip(outcome["noises"], zip(*values)):
        print(f"sweep-observations: {outcome['model']}: VRMSE {window} at noise {noise:g}, by sensor fraction "
              + ", ".join(f"{f:g}: {v:.3f}" for f, v in zip(outcome["fractions"], column)))
    print(f"wrote {layout.SWEEP}, {layout.SWEEP_CURVES}/ and {layout.SWEEP_FIGURE}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from pipelines.stages import tune
    from pipelines.config import CacheLatentsConfig, TrainAutoencoderConfig, TrainEmulatorConfig, TuneConfig

    overrides = {key: value for key, value in (("storage", args.storage), (f"{args.study}.trials", args.trials),
                                               ("sampler.version", args.version)) if value is not None}
    job = tune.Job(args.study, _section(args, TuneConfig, "tune", overrides),
                   _section(args, DataConfig, "data"),
                   _section(args, TrainAutoencoderConfig, "train_autoencoder"),
                   _section(args, TrainEmulatorConfig, "train_emulator"),
                   _section(args, CacheLatentsConfig, "cache_latents"))
    result = tune.run(job, workers=args.workers, name=args.name, trial=args.trial, register=args.register,
                      progress=not args.quiet)
    study = result.study
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    print(f"tune: study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
          + f"; MLflow run {result.parent_run_id}")
    names = tune.OBJECTIVES[args.study].names
    print(("Pareto front" if len(names) > 1 else "best trial") + ":")
    for t in sorted(result.front, key=lambda t: t.values[0]):
        values = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, t.values))
        print(f"  trial {t.number}: {values}; {t.params}")
    if result.params_file is not None:
        print(f"wrote {result.params_file} (trial {result.chosen.number}); apply it with "
              f"`latentops apply-params {result.params_file}`, then `dvc repro`")
    if result.registered:
        print(f"registered trial {result.chosen.number} as {result.registered}; `latentops evaluate` scores it")
    return 0


def _apply_params(args: argparse.Namespace) -> int:
    from pipelines.config import apply_params

    changed = apply_params(args.file, args.params)
    print(f"{args.params}: " + (f"set {', '.join(changed)} from {args.file}" if changed
                                else f"already has every value of {args.file}"))
    return 0


def _forecast(args: argparse.Namespace) -> int:
    from pipelines.stages import forecast

    data = _section(args, DataConfig, "data")
    summary = forecast.run(data, args.model, args.split, args.trajectory, args.horizon, args.members, args.seed,
                           args.output)
    scores = ", ".join(f"{lead}: {v:.3f}" for lead, v in zip(summary["leads"], summary["vrmse"]))
    figure = f" and {summary['figure']}" if summary["figure"] else ""
    print(f"forecast: {summary['model']} -> {summary['output']} {summary['shape']} (members, states, H, W, C)"
          + figure + (f"; VRMSE by lead: {scores}" if scores else ""))
    return 0


def _observe(args: argparse.Namespace) -> int:
    from pipelines import layout
    from pipelines.stages import observe

    data = _section(args, DataConfig, "data")
    output = args.output or layout.observations(args.split, args.trajectory)
    found = observe.run(data, output, args.split, args.trajectory, args.fraction, args.sensors, args.fields, args.every,
                        args.noise, args.seed)
    sensors = len(set(map(tuple, found.index.tolist())))
    print(f"observe: {args.split} trajectory {args.trajectory}: {sensors} sensor position(s), fields "
          f"{sorted(set(found.fields))}, {len(found.times)} times -> {output}")
    return 0


def _validate_observations(args: argparse.Namespace) -> int:
    from pipelines.stages import observe

    found = observe.validate(args.file, _section(args, DataConfig, "data"), args.split, args.trajectory)
    missing = int((found.values != found.values).sum())  # NaN != NaN: the missing readings
    print(f"{args.file}: OK ({len(found.fields)} sensor readings per time, {len(found.times)} times, "
          f"{missing} missing)")
    return 0


def _command(sub: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int],
             help: str, description: str, quiet: bool = True) -> argparse.ArgumentParser:
    """A sub-command running ``handler``; long-running ones get ``-q/--quiet``."""
    p = sub.add_parser(name, help=help, description=description)
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars; training prints a line every 30 s instead (step, loss, time left)")
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    from pipelines import layout

    parser = argparse.ArgumentParser(
        prog="latentops",
        description="MLOps for latent-space physics emulators: data, training, evaluation, registry. "
                    "Every stage reads its settings from params.yaml (section named like the stage).",
    )
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="parameters file (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a value of the parameters file for this command, e.g. --set "
                             "train_autoencoder.train.steps=100 (repeatable; space-separated pairs allowed)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "simulate", _simulate, "generate the built-in dataset with Clawpack (params: simulate)",
                 "Simulate the 2-D Euler multi-quadrant dataset with Clawpack in The Well's format, with "
                 "stats.yaml over the train split. Writes atomically.")
    p.add_argument("--output", help="dataset directory (default: simulate.output)")
    p.add_argument("--workers", type=int, help="processes (default: simulate.workers; 0 = all cores)")
    p.add_argument("--summary", help="also write the run summary (counts, redraws, seconds) as YAML here")

    p = _command(sub, "validate-data", _validate, "check a dataset directory against The Well's format",
                 "Report every problem (file, group/attribute, what was expected) with a The Well dataset "
                 "directory. Exit status 1 if there is any.", quiet=False)
    p.add_argument("path", nargs="?", help="dataset directory (default: data.root)")
    p.add_argument("--no-stats", action="store_true", help="do not require stats.yaml")

    p = _command(sub, "train-autoencoder", _train_autoencoder,
                 "train, track and save one autoencoder (params: train_autoencoder)",
                 "Train the autoencoder of one latent width on data.root with the shared training loop, track "
                 "it in MLflow and save it to data/models/autoencoder_c<C> (`latentops register` registers it "
                 "as <dataset>-autoencoder). Resumes from its latest checkpoint if "
                 "a previous run was interrupted.")
    p.add_argument("--latent-channels", type=int, required=True, help="latent channels c (sets the compression rate)")
    p.add_argument("--steps", type=int, help="override train_autoencoder.train.steps")

    p = _command(sub, "cache-latents", _cache_latents,
                 "encode every split with the trained autoencoder (params: cache_latents)",
                 "Encode every split of data.root with the autoencoder train-autoencoder saved to "
                 "data/models/autoencoder_c<C> into chunked, compressed HDF5 under cache_latents.output/c<C>/.")
    p.add_argument("--latent-channels", type=int, required=True, help="latent channels c of the autoencoder")

    p = _command(sub, "train-emulator", _train_emulator,
                 "train, score, track and save one emulator (params: train_emulator)",
                 "Train a latent emulator (diffusion or solver, on the latent cache of --latent-channels) or the "
                 "pixel-space neural solver with the shared training loop; score its rollouts against persistence "
                 "on train_emulator.score.split; track it in MLflow and save it to data/models/emulator_<kind>[_c<C>] "
                 "(`latentops register` registers it as a forecaster version of <dataset>-emulator). Resumes from its latest checkpoint if a previous run was interrupted.")
    p.add_argument("--kind", required=True, choices=emulator_kinds(), help="emulator kind")
    p.add_argument("--latent-channels", type=_channels, help="latent channels c of the autoencoder and cache "
                                                             "(latent kinds only; 'none' = not given)")
    p.add_argument("--steps", type=int, help="override train_emulator.train.steps")

    p = _command(sub, "train-obs-encoder", _train_obs_encoder,
                 "train, calibrate, track and save one observation encoder (params: train_obs_encoder, sensors)",
                 "Train LD-EnSF's observation encoder for one sensor layout of sensors.layouts: sequences of its "
                 "noisy readings (some dropped at random) to the latents of the trained autoencoder with "
                 "--latent-channels (targets: its latent cache) and the conditioning entries "
                 "train_obs_encoder.parameters, with the shared training loop; calibrate its errors on the valid "
                 "split (the Gaussian likelihood of the encoder route of the latent EnSF); track it in MLflow and "
                 "save it to data/models/obs_encoder_<layout>_c<C> (`latentops register` registers it as "
                 "<dataset>-obs-encoder, tagged with the layout, the autoencoder version and the data hash). Resumes from its latest checkpoint if a previous run was interrupted.")
    p.add_argument("--layout", required=True, help="sensor layout: a key of sensors.layouts")
    p.add_argument("--latent-channels", type=int, required=True, help="latent channels c of the autoencoder and cache")
    p.add_argument("--steps", type=int, help="override train_obs_encoder.train.steps")

    _command(sub, "register", _register,
             "register every trained model and the assimilators (params: register_assimilator, sensors)",
             "For every trained model under data/models/ (autoencoders first): its figures into its training "
             "run, a version of <dataset>-autoencoder, -emulator or -obs-encoder with its model card (once per "
             "training run), exported to data/registry/<model>/; then every assimilator of "
             "register_assimilator.assimilators (as register-assimilator does).")

    p = _command(sub, "register-assimilator", _register_assimilator,
                 "register an assimilator of register_assimilator.assimilators (params: register_assimilator)",
                 "Bundle the assimilator NAME (the exported emulator of its kind and latent width, its score filter "
                 "and members, its sensor layout of sensors.layouts and, with encoder: true, that layout's exported "
                 "observation encoder) as one pyfunc and register it as a version of <dataset>-assimilator, tagged "
                 "with its lineage (emulator, autoencoder, data hash, encoder, layout); exported to "
                 f"{layout.registered_dir(layout.assimilator('NAME'))}. When an existing version has the same parts and "
                 "settings, that one is exported instead.")
    p.add_argument("--name", required=True, help="an assimilator of register_assimilator.assimilators")

    p = _command(sub, "evaluate", _evaluate, "score every registered version the same way (params: evaluate)",
                 "Query the Model Registry for every version of <dataset>-autoencoder, <dataset>-emulator and "
                 "<dataset>-assimilator and evaluate each one that has no result for the current test data, "
                 "evaluate settings and scoring code: VRMSE of the ensemble mean, member VRMSE, fair CRPS, "
                 "spread-skill and power-spectrum RMSE per trajectory and lead time, against the truth and the "
                 "auto-encoded truth, with bootstrap intervals; the same for the baselines (persistence, conserved "
                 "mean, climatology). Assimilators: the twin experiment on the first "
                 "evaluate.assimilation_trajectories trajectories, observed by each one's sensor layout, with the "
                 "wall time per cycle and the error of the conditioning it estimates. One nested MLflow run per "
                 "version with plots; its scorecard as eval.* tags on the version; metrics/evaluation.json, "
                 "metrics/evaluation/*.csv and reports/comparison.{md,png} with the paper's findings checked.")
    p.add_argument("--force", action="store_true", help="re-evaluate versions that already have a result")

    _command(sub, "compare", _compare, "print the comparison table of the evaluated versions",
             "Print the comparison report (the paper's table layout, with intervals, baselines and the "
             "paper's four findings checked) of every version evaluated under the current evaluate settings, "
             "read from the Model Registry.", quiet=False)

    p = _command(sub, "promote", _promote,
                 "move the production aliases to the best evaluated emulator and assimilator (params: promote)",
                 "Select the best evaluated <dataset>-emulator version by promote.metric among those passing the gate "
                 "(kinds, latency ceiling, spread-skill window for ensembles) and move the 'production' alias to "
                 "it if it beats the current production by promote.margin and a paired bootstrap over the same test "
                 "trajectories gives at least promote.probability that it is better; the previous one becomes "
                 "'challenger'. The decision (with that probability and the interval of the difference) is recorded "
                 "as an MLflow run, as promotion.* tags and in the model cards; a refusal says which rule failed. The same for "
                 "<dataset>-assimilator versions, with the gate promote.assimilators.", quiet=False)
    p.add_argument("--dry-run", action="store_true",
                   help="show the decision, its probability and the interval of the difference; change nothing")
    p.add_argument("--stage", action="store_true", help="also set the deprecated 'Production' stage (older UIs)")

    p = _command(sub, "assimilate", _assimilate, "assimilate an observation file with a registered emulator or assimilator",
                 "Run the latent ensemble score filter (LD-EnSF; settings: assimilate.filter) with a registered latent "
                 "<dataset>-emulator version (by default the 'production' alias), or a registered <dataset>-assimilator "
                 "version with its own filter, members and observation encoder (estimating the conditioning entries "
                 "it was trained to), on an observation file (HDF5 or CSV, "
                 "see `latentops observe`) of one trajectory of data.root, starting from its first state. Readings "
                 "at forecast times (multiples of the emulator's stride) are assimilated; the others are ignored and "
                 "counted. Writes OUTPUT.h5 (analysis mean and spread, free-forecast mean and truth, (T, H, W, C); "
                 "the members with --save-members) and OUTPUT.png (truth and sensors, free forecast, analysis, "
                 "spread at the last time); one MLflow run with the model URI and the file's SHA-256.", quiet=False)
    p.add_argument("--model", default="production",
                   help="alias or version number of <dataset>-emulator, or a models:/ URI of an emulator or of an "
                        "assimilator, e.g. models:/euler_mini-assimilator@production (default: %(default)s)")
    p.add_argument("--observations", required=True, help="observation file (.h5, .hdf5 or .csv)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")
    p.add_argument("--members", type=int, help="ensemble members (default: assimilate.members)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-members", action="store_true", help="also write every member of the analysis")
    p.add_argument("--output", default="assimilations/analysis", help="output path without suffix "
                                                                      "(default: %(default)s)")

    _command(sub, "twin-experiment", _twin_experiment,
             "latent data assimilation on synthetic observations of test trajectories (params: assimilate)",
             "The twin experiment of the assimilate stage: observe the first assimilate.trajectories trajectories "
             "of assimilate.split with the sensor layout assimilate.layout of sensors.layouts (written under "
             "data/observations/), forecast them with the best evaluated version of each of assimilate.kinds "
             "freely, with the latent ensemble score filter (LD-EnSF; assimilate.filter) through the decoder and "
             "through the layout's observation encoder (assimilate.encoder_filter; estimating assimilate.estimate), "
             "diffusion also guided by MMPS, and Clawpack with the LETKF (assimilate.enkf); score them all: VRMSE "
             "and CRPS by lead window with bootstrap intervals, VRMSE over the free forecast's with a paired "
             "interval, wall time per cycle, the error of the estimated conditioning. Writes "
             "metrics/assimilation.json, metrics/assimilation/*.csv, reports/assimilation.{md,png} and "
             "reports/assimilation_panel.png; one MLflow run.")

    p = _command(sub, "sweep-observations", _sweep_observations,
                 "an assimilator's skill against sensor density and noise (params: sweep_observations)",
                 "Run the twin experiment of a decoder-route <dataset>-assimilator version on the first "
                 "sweep_observations.trajectories trajectories of sweep_observations.split over a grid of sensor "
                 "fractions (sweep_observations.fractions, nested layouts: denser ones hold every sensor of sparser "
                 "ones) and noise levels (sweep_observations.noises, times each field's std), keeping its fields and "
                 "cadence; score each cell like evaluate (VRMSE and CRPS of the analysis by lead window, bootstrap "
                 f"intervals). Writes {layout.SWEEP}, {layout.SWEEP_CURVES}/noise_<n>.csv (dvc plots) and "
                 f"{layout.SWEEP_FIGURE} (a heat map per lead window and the curves); one MLflow run.")
    p.add_argument("--model", help="version, alias or models:/ URI of <dataset>-assimilator (default: the exported "
                                   "version of sweep_observations.assimilator)")

    p = _command(sub, "tune", _tune, "run or resume an Optuna study (params: tune)",
                 "Optuna studies, tracked in MLflow (a parent run per study, a child run per trial). "
                 "'sampler': sampler family, order and steps of a registered diffusion emulator; objectives "
                 "validation VRMSE and seconds per trajectory; reports the Pareto front. 'compression': latent "
                 "channels, learning rate and width of a short-budget autoencoder, judged by an emulator trained on "
                 "its latents, with pruning. Re-running the command resumes the study up to its number of trials. "
                 "The chosen trial's settings are written to tune.output/<study>.yaml for `latentops apply-params`.")
    p.add_argument("--study", required=True, choices=["sampler", "compression"], help="which study")
    p.add_argument("--trials", type=int, help="finished trials to reach (default: tune.<study>.trials)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on the study (default: %(default)s)")
    p.add_argument("--storage", help="Optuna storage: SQLAlchemy URL or journal:<file> (default: tune.storage)")
    p.add_argument("--name", help="study name (default: <dataset>-sampler-v<version> or <dataset>-compression)")
    p.add_argument("--version", help="sampler study: registered emulator version or alias (default: "
                                     "tune.sampler.version; 'latest' = newest diffusion version)")
    p.add_argument("--trial", type=int, help="the trial to write out (and register); default: the best, or the "
                                             "most accurate of the Pareto front")
    p.add_argument("--register", action="store_true", help="sampler study: register the chosen trial as a new "
                                                           "emulator version (same weights, its sampler settings)")

    p = _command(sub, "forecast", _forecast, "forecast a trajectory with a registered emulator",
                 "Load a registered <dataset>-emulator version (by default the 'production' alias) and forecast one "
                 "trajectory of a split of data.root from its first state(s); write OUTPUT.h5 (forecast, truth, "
                 "VRMSE per lead and field) and OUTPUT.png (one field at four lead times).", quiet=False)
    p.add_argument("--model", default="production", help="alias, version number or models:/ URI (default: %(default)s)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")
    p.add_argument("--horizon", type=int, default=25, help="states to forecast, data.stride steps apart "
                                                            "(default: %(default)s)")
    p.add_argument("--members", type=int, default=1, help="ensemble members (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="forecasts/forecast", help="output path without suffix (default: %(default)s)")

    p = _command(sub, "observe", _observe, "make synthetic sensor observations of a trajectory (twin experiments)",
                 "Draw sensor positions on the grid of data.root, read the chosen fields of one trajectory there "
                 "every EVERY stored steps, add Gaussian noise of NOISE times each field's standard deviation, and "
                 "write the observation file (HDF5; the format is in pipelines/data/observations.py).", quiet=False)
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--fraction", type=float, default=0.01, help="share of grid points with a sensor "
                                                                     "(default: %(default)s)")
    group.add_argument("--sensors", type=int, help="number of sensor positions instead of --fraction")
    p.add_argument("--fields", nargs="+", help="fields the sensors read (default: every field)")
    p.add_argument("--every", type=int, default=4, help="observe every N-th stored step (default: %(default)s)")
    p.add_argument("--noise", type=float, default=0.1, help="noise std relative to each field's std "
                                                            "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="observation file (default: data/observations/<split>_<trajectory>.h5)")

    p = _command(sub, "validate-observations", _validate_observations,
                 "check an observation file (HDF5 or CSV) against the trajectory it observes",
                 "Read FILE (HDF5 or CSV) and check it against a trajectory of data.root: known fields, sensors "
                 "inside the grid, times inside the trajectory, consistent shapes. Exit status 2 with the problem "
                 "named otherwise.", quiet=False)
    p.add_argument("file", help="observation file (.h5, .hdf5 or .csv)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")

    p = _command(sub, "apply-params", _apply_params, "merge a params file (e.g. a tuned result) into params.yaml",
                 "Merge FILE's sections into the parameters file, keeping its comments; the result is checked "
                 "before anything is written. Then `dvc repro` rebuilds what the new values change.", quiet=False)
    p.add_argument("file", help="params file, e.g. tuned/sampler.yaml")

    p = _command(sub, "stats", _stats, "compute The Well's stats.yaml for a dataset directory",
                 "Compute mean/std/rms (and of one-step deltas) per field over a split and write "
                 "PATH/stats.yaml.", quiet=False)
    p.add_argument("path", help="dataset directory")
    p.add_argument("--split", default="train", choices=["train", "valid", "test"])
    return parser


HandledErrors = (ConfigError, FileNotFoundError, ValueError, ConnectionError, OutputError)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a scheduler's pre-emption, ``docker stop``) as ``SystemExit(143)``:
    open MLflow runs end ``FAILED`` and atomic outputs are cleaned up on the way out."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
