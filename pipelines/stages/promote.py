"""Stage ``promote``: recorded, gated decisions to move the ``production`` aliases of
``<dataset>-emulator`` and ``<dataset>-assimilator`` to their best evaluated version.

Each registered model has its gate (``promote:`` in params.yaml for emulators,
``promote.assimilators`` for assimilators), applied to its versions evaluated under the
current evaluation key (``pipelines.stages.evaluate``):

1. kind in ``promote.kinds`` (emulators);
2. latency: ``seconds_per_trajectory <= max_seconds``;
3. calibration (ensembles): mean spread-skill ratio over the lead windows within
   ``spread_skill = [low, high]``;
4. skill (where ``baselines`` is true): its ``metric`` must beat the best trivial
   baseline's (persistence, the conserved mean, climatology: the lowest ``metric`` of those
   its evaluation scored on the same trajectories), with at least ``probability`` by a
   paired bootstrap; a model tied with a constant field never becomes production;
5. the best passing version by ``metric`` (lower is better) must beat the current
   production version's value by the relative ``margin``, and
6. on evidence: a paired bootstrap over the same test trajectories
   (``pipelines.evaluation.bootstrap.paired``) must give at least ``probability`` that the candidate's
   ``metric`` is lower than production's; the decision records that probability and the
   interval of the difference, so a difference inside the noise never promotes.

A promotion keeps the previous production version as ``challenger``. Every decision (made
or refused) is an MLflow run in ``<dataset>/promote`` (reason, metric values, probability,
user); the candidate version is tagged with the decision and its run (``promotion.*``), every
version whose alias moved gets the move appended to its ``promotion.history``, and the model
cards of them all are rewritten (``pipelines.tracking.cards``). ``--dry-run`` only shows
the decision. ``metrics/promotion.json`` has both decisions.
"""

from __future__ import annotations

import argparse
import getpass
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import mlflow
from mlflow.exceptions import MlflowException

from pipelines import layout
from pipelines.data.windows import trajectories
from pipelines.evaluation.bootstrap import Difference, paired
from pipelines.evaluation.key import evaluation_key
from pipelines.evaluation.scorecard import Result, Scorecard
from pipelines.io import write_json
from pipelines.options import section
from pipelines.settings.data import DataConfig
from pipelines.settings.evaluation import EvaluateConfig, GateConfig, PromoteConfig
from pipelines.tracking import runs as tracking
from pipelines.tracking import cards
from pipelines.tracking.cards import ASSIMILATOR
from pipelines.tracking.evaluations import evaluated
from pipelines.tracking.locks import store_lock
from pipelines.tracking.names import CHALLENGER, PRODUCTION, assimilator_name, emulator_name

STAGE = "promote"


@dataclass(frozen=True)
class Family:
    """A registered model whose ``production`` alias promote moves: its versions of
    ``kinds``, gated by ``gate`` (configured at ``key``)."""

    name: str
    kinds: tuple[str, ...]
    gate: GateConfig
    key: str


def families(cfg: PromoteConfig, dataset: str) -> dict[str, Family]:
    """The emulators and the assimilators of ``dataset``, each with its gate."""
    return {"emulator": Family(emulator_name(dataset), cfg.kinds, cfg, "promote"),
            "assimilator": Family(assimilator_name(dataset), (ASSIMILATOR,), cfg.assimilators,
                                  "promote.assimilators")}


@dataclass
class Decision:
    """What the gate decided: ``promoted``; the ``candidate`` and current ``production``
    results (``None`` if none); ``reason``; the paired ``comparison`` of the candidate
    against production (``None`` without one); and why each other version was passed over
    (a rule it fails, or a worse ``metric`` than the candidate's)."""

    promoted: bool
    reason: str
    candidate: Result | None = None
    production: Result | None = None
    rejected: dict[str, str] = field(default_factory=dict)
    comparison: Difference | None = None


def gate(result: Result, family: Family) -> str | None:
    """The first rule (1-3) ``result`` fails, or ``None``."""
    card, cfg, key = result.card, family.gate, family.key
    if result.kind not in family.kinds:
        return f"kind {result.kind} is not in {key}.kinds {list(family.kinds)}"
    if cfg.metric not in card.trajectories:
        return f"has no per-trajectory {cfg.metric!r} (has: {sorted(card.trajectories)})"
    if card.seconds > cfg.max_seconds:
        return f"latency {card.seconds:.2f} s per trajectory exceeds {key}.max_seconds = {cfg.max_seconds:g}"
    ratio = card.mean_of("spread_skill")
    lo, hi = cfg.spread_skill
    if ratio is not None and not lo <= ratio <= hi:  # an ensemble (only ensembles have spread-skill ratios)
        return f"spread-skill ratio {ratio:.3f} is outside {key}.spread_skill [{lo:g}, {hi:g}]"
    return None


def skill(result: Result, family: Family, baselines: Mapping[str, Scorecard], seed: int = 0) -> str | None:
    """Rule 4: why ``result`` does not beat the best of ``baselines`` (scored on its
    trajectories) on the gate's metric, or ``None`` if it does."""
    cfg, metric = family.gate, family.gate.metric
    scored = {kind: card for kind, card in baselines.items() if metric in card.trajectories}
    if not scored:
        return (f"no baseline was scored by {metric} beside it, so its skill is unknown (re-run `latentops "
                f"evaluate --force`, or set {family.key}.baselines: false)")
    kind, best = min(scored.items(), key=lambda item: item[1].value(metric))
    ours, theirs = result.card.trajectories[metric], best.trajectories[metric]
    if len(ours) != len(theirs):
        return f"its {metric} covers {len(ours)} trajectories and the baselines' {len(theirs)}: not comparable"
    d = paired(ours, theirs, seed=seed)
    if d.mean < 0 and d.probability >= cfg.probability:
        return None
    return (f"no skill: {metric} {result.card.value(metric):.4f} does not beat the best trivial baseline, {kind} "
            f"({best.value(metric):.4f}), with {family.key}.probability = {cfg.probability:g}: "
            f"{d.describe(f'{metric} - {kind}')}")


def decide(results: list[Result], production: Result | None, production_version: int | None,
           family: Family, seed: int = 0, baselines: Mapping[str, Scorecard] | None = None) -> Decision:
    """Apply ``family``'s gate to its evaluated versions among ``results`` against its current
    production version (``production``: its result under the current key, if any);
    ``baselines``: the trivial baselines' cards on the same trajectories (rule 4)."""
    candidates = [r for r in results if r.name == family.name and r.version]
    rejected = {}
    for r in candidates:
        reason = gate(r, family)
        if reason is None and family.gate.baselines:
            reason = skill(r, family, baselines or {}, seed)
        if reason is not None:
            rejected[f"v{r.version}"] = reason
    passing = [r for r in candidates if f"v{r.version}" not in rejected]
    cfg, key = family.gate, family.key
    metric = cfg.metric
    if not passing:
        detail = "; ".join(f"{v}: {why}" for v, why in rejected.items()) or f"no evaluated version of {family.name}"
        return Decision(False, f"refused: no candidate passes the gate ({detail})", None, production, rejected)
    best = min(passing, key=lambda r: r.card.value(metric))
    value = best.card.value(metric)
    rejected |= {f"v{r.version}": f"{metric} {r.card.value(metric):.4f} is not the lowest of the versions that pass "
                                  f"the gate (v{best.version}: {value:.4f})"
                 for r in passing if r is not best and r.version != production_version}
    if production_version is None:
        return Decision(True, f"promoted v{best.version} ({metric} = {best.card.get(metric)}): there is no production "
                              "version yet", best, None, rejected)
    if best.version == production_version:
        return Decision(False, f"refused: the best candidate v{best.version} ({metric} = {value:.4f}) is already "
                               "production", best, production, rejected)
    if production is None or metric not in production.card.trajectories:
        return Decision(False, f"refused: production v{production_version} has no {metric} under the current "
                               "evaluation settings; run `latentops evaluate` first", best, production, rejected)
    current = production.card.value(metric)
    needed = current * (1 - cfg.margin)
    comparison = paired(best.card.trajectories[metric], production.card.trajectories[metric], seed=seed)
    evidence = comparison.describe(f"v{best.version} - v{production_version}")
    if value >= needed:
        return Decision(False, f"refused: candidate v{best.version} {metric} {value:.4f} does not beat production "
                               f"v{production_version} ({current:.4f}) by the margin {cfg.margin:g} (needed < "
                               f"{needed:.4f}); {evidence}", best, production, rejected, comparison)
    if comparison.probability < cfg.probability:
        return Decision(False, f"refused: candidate v{best.version} {metric} {value:.4f} against production "
                               f"v{production_version} ({current:.4f}) is inside the noise: {evidence} < "
                               f"{key}.probability = {cfg.probability:g}", best, production, rejected, comparison)
    return Decision(True, f"promoted v{best.version}: {metric} {value:.4f} beats production v{production_version} "
                          f"({current:.4f}) by more than the margin {cfg.margin:g}; {evidence} >= "
                          f"{key}.probability = {cfg.probability:g}", best, production, rejected, comparison)


def current_production(client: mlflow.MlflowClient, name: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, PRODUCTION).version)
    except MlflowException:
        return None


def run(cfg: PromoteConfig, evaluation: EvaluateConfig, data: DataConfig, dry_run: bool = False,
        set_stage: bool = False) -> dict[str, Decision]:
    """Decide for the emulators and the assimilators, and unless ``dry_run`` record each
    decision and move the aliases (and, with ``set_stage``, the deprecated ``Production``
    stage). Returns the decisions, by family (``emulator``, ``assimilator``)."""
    key = evaluation_key(evaluation, data)
    dataset = trajectories(data, evaluation.split).dataset_name
    client = tracking.configure()
    decisions, record = {}, {}
    with store_lock(STAGE):  # read the aliases, decide and move them with no other promote in between
        results = evaluated(client, dataset, key)
        for label, family in families(cfg, dataset).items():
            production_version = current_production(client, family.name)
            production = next((r for r in results if r.name == family.name and r.version == production_version),
                              None)
            decisions[label] = decision = decide(results, production, production_version, family, evaluation.seed,
                                                 _baselines(results, family))
            if not dry_run:
                record[label] = _record(client, decision, family, production_version, dataset, key, data, set_stage)
        if not dry_run:
            write_json(layout.PROMOTION, record)
    return decisions


def _baselines(results: list[Result], family: Family) -> dict[str, Scorecard]:
    """The baselines' cards recorded beside the family's evaluated versions (all scored on
    the same trajectories under one evaluation key, so any version's run has them)."""
    if not family.gate.baselines:
        return {}
    for r in results:
        if r.name == family.name and r.run_id and (found := cards.baselines(r.run_id)):
            return found
    return {}


def _record(client: mlflow.MlflowClient, decision: Decision, family: Family, production_version: int | None,
            dataset: str, key: str, data: DataConfig, set_stage: bool) -> dict:
    """Track ``decision`` as a run, tag its candidate (unless it is production already: its
    tags keep the decision that promoted it), move the aliases; what
    ``metrics/promotion.json`` says of it."""
    when, user = time.strftime("%Y-%m-%dT%H:%M:%S%z"), getpass.getuser()
    candidate, comparison, cfg = decision.candidate, decision.comparison, family.gate
    with tracking.start_run(STAGE, dataset, {family.key: cfg}, data.root, run_name=f"promote {family.name}",
                            tags={"decision": "promoted" if decision.promoted else "refused", "model": family.name},
                            system_metrics=False) as active:
        mlflow.log_params({"candidate_version": candidate.version if candidate else None,
                           "production_version": production_version, "evaluation_key": key, "user": user})
        mlflow.set_tag("reason", decision.reason[:5000])
        if candidate is not None:
            mlflow.log_metric(f"candidate/{cfg.metric}", candidate.card.value(cfg.metric))
        if decision.production is not None and cfg.metric in decision.production.card:
            mlflow.log_metric(f"production/{cfg.metric}", decision.production.card.value(cfg.metric))
        if comparison is not None:
            mlflow.log_metrics({"probability_better": comparison.probability, "difference": comparison.mean,
                                "difference_low": comparison.low, "difference_high": comparison.high})
        run_id = active.info.run_id
    if candidate is not None and candidate.version != production_version:  # else the run alone records it
        version = str(candidate.version)
        client.set_model_version_tag(family.name, version, f"{cards.PROMOTION}decision",
                                     "promoted" if decision.promoted else "refused")
        client.set_model_version_tag(family.name, version, f"{cards.PROMOTION}run_id", run_id)
        moved = [version]
        if decision.promoted:
            moved += _move_aliases(client, family.name, version, production_version)
            if set_stage:
                client.transition_model_version_stage(family.name, version, "Production",
                                                      archive_existing_versions=True)
        for changed in moved:
            cards.refresh(client, family.name, changed)
    return {"model": family.name, "promoted": decision.promoted, "reason": decision.reason, "time": when,
            "user": user, "metric": cfg.metric, "candidate": _summary(candidate, cfg.metric),
            "production_before": production_version,
            "comparison": asdict(comparison) if comparison is not None else None,
            "rejected": decision.rejected, "run_id": run_id, "gate": asdict(cfg)}


def _move_aliases(client: mlflow.MlflowClient, name: str, version: str, production_version: int | None) -> list[str]:
    """Make ``version`` production and the previous production version challenger, appending
    each move to the ``promotion.history`` of the versions whose alias changed (the previous
    challenger loses its alias: "retired"); returns those other versions."""
    when = time.strftime("%Y-%m-%d %H:%M")
    moves = {version: f"{PRODUCTION} {when}"}
    if production_version is not None:
        try:
            retired = client.get_model_version_by_alias(name, CHALLENGER).version
        except MlflowException:
            retired = None  # no challenger yet
        if retired not in (None, version):
            moves[retired] = f"retired {when}"
        moves[str(production_version)] = f"{CHALLENGER} {when}"
        client.set_registered_model_alias(name, CHALLENGER, str(production_version))
    client.set_registered_model_alias(name, PRODUCTION, version)
    for changed, event in moves.items():
        tags = client.get_model_version(name, changed).tags
        client.set_model_version_tag(name, changed, f"{cards.PROMOTION}history", cards.history(tags, event))
    return [v for v in moves if v != version]


def _summary(result: Result | None, metric: str) -> dict | None:
    """What ``metrics/promotion.json`` says of a version: which one, and its ``metric``."""
    if result is None:
        return None
    estimate = result.card.get(metric)
    return {"label": result.label, "version": result.version, "kind": result.kind,
            "compression_rate": result.compression_rate, metric: estimate.value,
            f"{metric}_interval": [estimate.low, estimate.high]}


# --------------------------------------------------------------------------- latentops promote


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Select the best evaluated <dataset>-emulator version by promote.metric among those passing the gate "
        "(kinds, latency ceiling, spread-skill window for ensembles, and skill: beating the best trivial baseline "
        "by promote.metric with promote.probability) and move the 'production' alias to "
        "it if it beats the current production by promote.margin and a paired bootstrap over the same test "
        "trajectories gives at least promote.probability that it is better; the previous one becomes "
        "'challenger'. The decision (with that probability and the interval of the difference) is recorded "
        "as an MLflow run, as promotion.* tags and in the model cards; a refusal says which rule failed. The same "
        "for <dataset>-assimilator versions, with the gate promote.assimilators.")
    parser.add_argument("--dry-run", action="store_true",
                        help="show the decision, its probability and the interval of the difference; change nothing")
    parser.add_argument("--stage", action="store_true", help="also set the deprecated 'Production' stage (older UIs)")


def main(args: argparse.Namespace) -> int:
    cfg = section(args, PromoteConfig, "promote")
    evaluation = section(args, EvaluateConfig, "evaluate")
    data = section(args, DataConfig, "data")
    decisions = run(cfg, evaluation, data, dry_run=args.dry_run, set_stage=args.stage)
    for family, decision in decisions.items():
        print(("dry run, nothing changed: " if args.dry_run else "promote: ") + f"{family}s: {decision.reason}")
        for version, why in decision.rejected.items():
            print(f"  {version} rejected: {why}")
    return 0
