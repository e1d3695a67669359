"""Stage ``promote``: a recorded, gated decision to move the ``production`` alias of
``<dataset>-emulator`` to the best evaluated version.

The gate (``promote:`` in params.yaml), on the versions evaluated under the current
evaluation key (``pipelines.evaluate``):

1. kind in ``promote.kinds``;
2. latency: ``seconds_per_trajectory <= max_seconds``;
3. calibration (stochastic emulators): mean spread-skill ratio over the lead windows within
   ``spread_skill = [low, high]``;
4. the best passing version by ``metric`` (lower is better) must beat the current
   production version's value by the relative ``margin``.

A promotion keeps the previous production version as ``challenger``. Every decision (made
or refused) is an MLflow run in ``<dataset>/promote`` and tags on the candidate version
(``promotion.*``: decision, reason, metric values, time, user); ``--dry-run`` only shows it.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from pipelines import tracking
from pipelines.config import DataConfig, EvaluateConfig, PromoteConfig
from pipelines.data import trajectories
from pipelines.evaluate import evaluated, evaluation_key
from pipelines.io import write_json
from pipelines.registry import emulator_name

STAGE = "promote"
PRODUCTION, CHALLENGER = "production", "challenger"
DECISION = Path("metrics") / "promotion.json"


@dataclass
class Decision:
    """What the gate decided: ``promoted``; the ``candidate`` and current ``production``
    results (``None`` if none); ``reason``; and why each rejected version failed."""

    promoted: bool
    reason: str
    candidate: dict | None = None
    production: dict | None = None
    rejected: dict[str, str] = field(default_factory=dict)


def _stochastic_calibration(metrics: dict[str, float]) -> float | None:
    ratios = [v for k, v in metrics.items() if k.startswith("spread_skill_")]
    return sum(ratios) / len(ratios) if ratios else None


def gate(result: dict, cfg: PromoteConfig) -> str | None:
    """The first rule (1-3) ``result`` fails, or ``None``."""
    metrics = result["metrics"]
    if result["kind"] not in cfg.kinds:
        return f"kind {result['kind']} is not in promote.kinds {list(cfg.kinds)}"
    if cfg.metric not in metrics:
        return f"has no metric {cfg.metric!r} (valid: {sorted(k for k in metrics if '/' not in k)})"
    seconds = metrics.get("seconds_per_trajectory", float("inf"))
    if seconds > cfg.max_seconds:
        return f"latency {seconds:.2f} s per trajectory exceeds promote.max_seconds = {cfg.max_seconds:g}"
    ratio = _stochastic_calibration(metrics)
    lo, hi = cfg.spread_skill
    if result["kind"] == "diffusion" and ratio is not None and not lo <= ratio <= hi:
        return f"spread-skill ratio {ratio:.3f} is outside promote.spread_skill [{lo:g}, {hi:g}]"
    return None


def decide(results: list[dict], production: dict | None, production_version: int | None,
           cfg: PromoteConfig) -> Decision:
    """Apply the gate to the evaluated emulator versions (``results``) against the current
    production version (``production``: its results under the current key, if any)."""
    emulators = [r for r in results if r["kind"] != "autoencoder"]
    rejected = {f"v{r['version']}": reason for r in emulators if (reason := gate(r, cfg)) is not None}
    passing = [r for r in emulators if f"v{r['version']}" not in rejected]
    if not passing:
        detail = "; ".join(f"{v}: {why}" for v, why in rejected.items()) or "no evaluated emulator version"
        return Decision(False, f"refused: no candidate passes the gate ({detail})", None, production, rejected)
    best = min(passing, key=lambda r: r["metrics"][cfg.metric])
    value = best["metrics"][cfg.metric]
    if production_version is None:
        return Decision(True, f"promoted v{best['version']} ({cfg.metric} = {value:.4f}): there is no production "
                              "version yet", best, None, rejected)
    if best["version"] == production_version:
        return Decision(False, f"refused: the best candidate v{best['version']} ({cfg.metric} = {value:.4f}) is "
                               "already production", best, production, rejected)
    if production is None or cfg.metric not in production["metrics"]:
        return Decision(False, f"refused: production v{production_version} has no {cfg.metric} under the current "
                               "evaluation settings; run `latentops evaluate` first", best, production, rejected)
    current = production["metrics"][cfg.metric]
    needed = current * (1 - cfg.margin)
    if value < needed:
        return Decision(True, f"promoted v{best['version']}: {cfg.metric} {value:.4f} beats production "
                              f"v{production_version} ({current:.4f}) by more than the margin {cfg.margin:g} "
                              f"(needed < {needed:.4f})", best, production, rejected)
    return Decision(False, f"refused: candidate v{best['version']} {cfg.metric} {value:.4f} does not beat production "
                           f"v{production_version} ({current:.4f}) by the margin {cfg.margin:g} (needed < {needed:.4f})",
                    best, production, rejected)


def current_production(client: mlflow.MlflowClient, name: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, PRODUCTION).version)
    except MlflowException:
        return None


def run(cfg: PromoteConfig, evaluation: EvaluateConfig, data: DataConfig, dry_run: bool = False,
        set_stage: bool = False) -> Decision:
    """Decide, and unless ``dry_run`` record the decision and move the aliases (and, with
    ``set_stage``, the deprecated ``Production`` stage)."""
    key = evaluation_key(evaluation, data)
    dataset = trajectories(data, evaluation.split).dataset_name
    client = tracking.configure()
    name = emulator_name(dataset)
    results = evaluated(client, dataset, key)
    production_version = current_production(client, name)
    production = next((r for r in results if r["kind"] != "autoencoder" and r["version"] == production_version), None)
    decision = decide(results, production, production_version, cfg)
    if dry_run:
        return decision
    when, user = time.strftime("%Y-%m-%dT%H:%M:%S%z"), getpass.getuser()
    with tracking.start_run(STAGE, dataset, {STAGE: cfg}, data.root, run_name="promote",
                            tags={"decision": "promoted" if decision.promoted else "refused"},
                            system_metrics=False) as active:
        mlflow.log_params({"candidate_version": decision.candidate["version"] if decision.candidate else None,
                           "production_version": production_version, "evaluation_key": key, "user": user})
        mlflow.set_tag("reason", decision.reason[:5000])
        if decision.candidate is not None:
            mlflow.log_metric(f"candidate/{cfg.metric}", decision.candidate["metrics"][cfg.metric])
        if production is not None and cfg.metric in production["metrics"]:
            mlflow.log_metric(f"production/{cfg.metric}", production["metrics"][cfg.metric])
        run_id = active.info.run_id
    if decision.candidate is not None:
        version = str(decision.candidate["version"])
        tags = {"decision": "promoted" if decision.promoted else "refused", "reason": decision.reason,
                "metric": cfg.metric, "value": f"{decision.candidate['metrics'][cfg.metric]:.6g}",
                "time": when, "user": user, "run_id": run_id}
        for key_, value in tags.items():
            client.set_model_version_tag(name, version, f"promotion.{key_}", value)
        if decision.promoted:
            if production_version is not None:
                client.set_registered_model_alias(name, CHALLENGER, str(production_version))
            client.set_registered_model_alias(name, PRODUCTION, version)
            if set_stage:
                client.transition_model_version_stage(name, version, "Production", archive_existing_versions=True)
    write_json(DECISION, {"promoted": decision.promoted, "reason": decision.reason, "time": when, "user": user,
                          "metric": cfg.metric, "candidate": decision.candidate, "production_before": production_version,
                          "rejected": decision.rejected, "run_id": run_id, "gate": asdict(cfg)})
    return decision
