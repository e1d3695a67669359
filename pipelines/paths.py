"""Where the stages keep what they make, relative to the repository root: checkpoints of
runs in progress (git-ignored), the registered versions they export (DVC outputs) and their
summaries (DVC metrics, in git)."""

from __future__ import annotations

from pathlib import Path


def checkpoint_dir(dataset: str, model: str) -> Path:
    return Path("checkpoints") / dataset / model


def model_dir(dataset: str, model: str) -> Path:
    """The exported copy of the registered version a training stage made (a DVC output)."""
    return Path("data") / "models" / dataset / model


def summary_path(group: str, name: str) -> Path:
    return Path("metrics") / group / f"{name}.json"
