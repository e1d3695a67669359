"""``latentops``: the command line. One sub-command per stage or tool; each handler is a
thin call into its stage module. Dispatch is a mapping from name to handler."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.config import DEFAULT_PARAMS, ConfigError, DataConfig, SimulateConfig, load_section


def _simulate(args: argparse.Namespace) -> int:
    from pipelines import simulate
    from pipelines.io import write_yaml

    overrides = {"workers": args.workers} if args.workers is not None else {}
    cfg = load_section(SimulateConfig, "simulate", args.params, overrides)
    output = Path(args.output or cfg.output)
    summary = simulate.run(cfg, output, progress=not args.quiet)
    print(f"simulate: {summary['trajectories']} trajectories in {summary['files']} files under {output} "
          f"in {summary['seconds']} s; {summary['redrawn']} redrawn ({summary['redraws']} redraws) "
          "after going non-finite or non-physical")
    if args.summary:
        write_yaml(args.summary, summary)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pipelines.validate import validate_dataset

    root = args.path or load_section(DataConfig, "data", args.params).root
    problems = validate_dataset(root, require_stats=not args.no_stats)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    if problems:
        print(f"{root}: {len(problems)} problem(s); not a valid The Well dataset", file=sys.stderr)
        return 1
    print(f"{root}: OK (The Well format)")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from pipelines.validate import ensure_valid
    from pipelines.welldata import write_stats

    ensure_valid(args.path, require_stats=False)
    path = write_stats(args.path, args.split)
    print(f"wrote {path} over the {args.split} split")
    return 0


def _train_autoencoder(args: argparse.Namespace) -> int:
    from pipelines import train_autoencoder
    from pipelines.config import TrainAutoencoderConfig

    overrides = {"train.steps": args.steps} if args.steps is not None else {}
    cfg = load_section(TrainAutoencoderConfig, "train_autoencoder", args.params, overrides)
    data = load_section(DataConfig, "data", args.params)
    summary = train_autoencoder.run(cfg, data, args.latent_channels, progress=not args.quiet)
    print(f"train_autoencoder: c={args.latent_channels} (rate {summary['compression_rate']:g}) registered as "
          f"{summary['registered_model']} version {summary['version']}; validation VRMSE "
          f"{summary.get('val_vrmse', float('nan')):.4f} (median {summary.get('val_vrmse_median', float('nan')):.4f})")
    return 0


def _cache_latents(args: argparse.Namespace) -> int:
    from pipelines import cache_latents
    from pipelines.config import CacheLatentsConfig

    cfg = load_section(CacheLatentsConfig, "cache_latents", args.params)
    data = load_section(DataConfig, "data", args.params)
    output = cache_latents.run(cfg, data, args.latent_channels, args.version, progress=not args.quiet)
    print(f"cache_latents: c={args.latent_channels} encoded into {output}")
    return 0


def _command(sub: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int],
             help: str, description: str, quiet: bool = True) -> argparse.ArgumentParser:
    """A sub-command running ``handler``; long-running ones get ``-q/--quiet``."""
    p = sub.add_parser(name, help=help, description=description)
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentops",
        description="MLOps for latent-space physics emulators: data, training, evaluation, registry. "
                    "Every stage reads its settings from params.yaml (section named like the stage).",
    )
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="parameters file (default: %(default)s)")
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
                 "train, track and register one autoencoder (params: train_autoencoder)",
                 "Train the autoencoder of one latent width on data.root with the shared training loop, track "
                 "it in MLflow and register it as <dataset>-autoencoder. Resumes from its latest checkpoint if "
                 "a previous run was interrupted.")
    p.add_argument("--latent-channels", type=int, required=True, help="latent channels c (sets the compression rate)")
    p.add_argument("--steps", type=int, help="override train_autoencoder.train.steps")

    p = _command(sub, "cache-latents", _cache_latents,
                 "encode every split with a registered autoencoder (params: cache_latents)",
                 "Encode every split of data.root with a registered <dataset>-autoencoder version into chunked, "
                 "compressed HDF5 under cache_latents.output/<dataset>/c<C>/.")
    p.add_argument("--latent-channels", type=int, required=True, help="latent channels c of the autoencoder")
    p.add_argument("--version", help="registered version to load from the Model Registry (default: the version "
                                     "train-autoencoder exported to data/models/<dataset>/autoencoder_c<C>)")

    p = _command(sub, "stats", _stats, "compute The Well's stats.yaml for a dataset directory",
                 "Compute mean/std/rms (and of one-step deltas) per field over a split and write "
                 "PATH/stats.yaml.", quiet=False)
    p.add_argument("path", help="dataset directory")
    p.add_argument("--split", default="train", choices=["train", "valid", "test"])
    return parser


HandledErrors = (ConfigError, FileNotFoundError, ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # MLflow's INFO lines (database migrations, monitor start/stop) are noise here
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except HandledErrors as error:
        print(f"latentops {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
