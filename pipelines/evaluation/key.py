"""The evaluation key: what a score depends on. A version evaluated under the same key is
not evaluated again; a change to the test data, the ``evaluate:`` settings or the scoring
code re-scores every version."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import models
from pipelines.data import observations
from pipelines.data.welldata import split_files
from pipelines.evaluation import bootstrap, metrics, scorecard, scoring, twin
from pipelines.settings.data import DataConfig
from pipelines.settings.evaluation import EvaluateConfig

__all__ = ["evaluation_key", "scoring_code"]


def scoring_code() -> list[Path]:
    """The code a score depends on: the scoring modules (the twin experiment's observations
    too) and every module of ``models/``."""
    modules = (scoring, metrics, bootstrap, scorecard, twin, observations)
    return [Path(m.__file__) for m in modules] + sorted(Path(models.__file__).parent.glob("*.py"))


def evaluation_key(cfg: EvaluateConfig, data: DataConfig, code: list[Path] | None = None) -> str:
    """Digest of the evaluation data (the split's files), the settings and the scoring
    ``code`` (default :func:`scoring_code`): a version evaluated under the same key is not
    evaluated again; a change to any of them re-scores every version."""
    digest = hashlib.sha256()
    for path in split_files(data.root, cfg.split):
        digest.update(path.name.encode())
        digest.update(hashlib.md5(path.read_bytes()).digest())
    settings = {**asdict(cfg), "context": data.context, "stride": data.stride, "log_fields": list(data.log_fields)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in scoring_code() if code is None else code:
        digest.update(path.name.encode())
        digest.update(hashlib.md5(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


