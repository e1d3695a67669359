"""Stage ``cache_latents@<c>``: encode every split once with the trained autoencoder, so
emulators train on latents and never touch pixel data (LoLA, section 3).

Output ``<output>/c<c>/{train,valid,test}.h5`` (and ``train_augmented.h5`` with
``augmented_copies`` randomly flipped / permuted / rolled copies of the train split), each::

    latents  (N, T, c, h, w) float32, one chunk per trajectory, gzip
    cond     (N, P)          float32, the loader's conditioning vector
    attrs    autoencoder name and training run id, data hash, dataset, split, channels,
             condition names, latent channels, compression rate

The directory is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from pipelines import layout
from pipelines.data.latent import encode_trajectory
from pipelines.data.validate import ensure_valid
from pipelines.data.welldata import SPLITS
from pipelines.data.windows import WellWindows, trajectories
from pipelines.io import atomic_path, require_space
from pipelines.options import add_quiet, section
from pipelines.recipes import artifact
from pipelines.settings.data import DataConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.tracking.runs import data_hash

STAGE = "cache_latents"


def cache_shape(windows: WellWindows, autoencoder: LoadedAutoencoder, count: int) -> tuple[int, ...]:
    """The latents of ``count`` trajectories of ``windows``: ``(N, T, c, h, w)``."""
    model = autoencoder.model
    return (count, windows.well.n_steps_input, model.latent_channels,
            *(n // model.downsampling for n in windows.resolution))


def encode_split(path: Path, windows: WellWindows, autoencoder: LoadedAutoencoder, cfg: CacheLatentsConfig,
                 attrs: dict, seeds: list[int | None], desc: str, progress: bool) -> None:
    count = len(seeds)
    shape = cache_shape(windows, autoencoder, count)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        latents = f.create_dataset("latents", shape=shape, dtype=np.float32, chunks=(1, *shape[1:]),
                                   compression="gzip", shuffle=True)
        cond = f.create_dataset("cond", shape=(count, len(windows.condition_names)), dtype=np.float32)
        for i, seed in enumerate(tqdm(seeds, desc=desc, unit="traj", disable=not progress)):
            index = i % len(windows)
            if seed is None:
                item = windows[index]
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    item = windows[index]
            latents[i] = encode_trajectory(autoencoder.model, item["x"], cfg.batch_size).numpy()
            cond[i] = item["cond"].numpy()
        for key, value in attrs.items():
            f.attrs[key] = value


def run(cfg: CacheLatentsConfig, data: DataConfig, latent_channels: int, progress: bool = True) -> Path:
    """Encode every split with the autoencoder the ``train_autoencoder`` stage saved to
    ``data/models/autoencoder_c<c>``."""
    ensure_valid(data.root)
    splits = {split: trajectories(data, split) for split in SPLITS}
    dataset = splits["train"].dataset_name
    autoencoder = artifact.load_autoencoder(layout.model_dir(layout.autoencoder(latent_channels)))
    label = autoencoder.name
    if autoencoder.model.latent_channels != latent_channels:
        raise ValueError(f"{label} has {autoencoder.model.latent_channels} latent channels, not {latent_channels}")
    if list(autoencoder.normalizer.channels) != splits["train"].channels:
        raise ValueError(f"{label} was trained on channels {list(autoencoder.normalizer.channels)}, "
                         f"the data has {splits['train'].channels}")
    for windows in splits.values():  # encode with the autoencoder's own normalisation
        windows.normalizer = autoencoder.normalizer
    digest, _ = data_hash(data.root)
    base_attrs = {
        "dataset": dataset, "autoencoder": autoencoder.name, "autoencoder_run_id": autoencoder.run_id,
        "data_hash": digest,
        "latent_channels": latent_channels, "compression_rate": float(autoencoder.model.compression_rate),
        "channels": json.dumps(splits["train"].channels), "condition_names": json.dumps(splits["train"].condition_names),
    }
    output = layout.latent_cache(cfg.output, latent_channels)
    counts = [len(w) for w in splits.values()] + [cfg.augmented_copies * len(splits["train"])]
    require_space(output, 4 * sum(math.prod(cache_shape(splits["train"], autoencoder, n)) for n in counts))
    with atomic_path(output) as tmp:
        tmp.mkdir(parents=True)
        for split, windows in splits.items():
            encode_split(tmp / f"{split}.h5", windows, autoencoder, cfg, {**base_attrs, "split": split},
                         [None] * len(windows), f"encode {split} c={latent_channels}", progress)
        if cfg.augmented_copies:
            augmented = trajectories(data, "train", augment=True)
            augmented.normalizer = autoencoder.normalizer
            n = len(augmented)
            seeds = [cfg.seed * 2**32 + i for i in range(cfg.augmented_copies * n)]
            encode_split(tmp / "train_augmented.h5", augmented, autoencoder, cfg,
                         {**base_attrs, "split": "train", "augmented_copies": cfg.augmented_copies},
                         seeds, f"encode augmented train c={latent_channels}", progress)
    return output


# --------------------------------------------------------------------------- latentops cache-latents


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Encode every split of data.root with the autoencoder train-autoencoder saved to "
                          f"{layout.model_dir(layout.autoencoder('<C>'))} into chunked, compressed HDF5 under "
                          "cache_latents.output/c<C>/.")
    add_quiet(parser)
    parser.add_argument("--latent-channels", type=int, required=True, help="latent channels c of the autoencoder")


def main(args: argparse.Namespace) -> int:
    cfg = section(args, CacheLatentsConfig, "cache_latents")
    data = section(args, DataConfig, "data")
    output = run(cfg, data, args.latent_channels, progress=not args.quiet)
    print(f"cache_latents: c={args.latent_channels} encoded into {output}")
    return 0
