"""evaluate and promote on a real MLflow store with the tiny registered autoencoder and
emulators: every version scored once (a second run evaluates nothing, a new version alone, a
change to the scoring code everything), the baselines scored beside them, nested runs with
lead-time curves and plots, scorecards with intervals on the versions, the comparison report
with the findings, and a gated promotion whose production alias loads in a fresh process."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipelines.evaluation import report
from pipelines.evaluation.key import evaluation_key, scoring_code
from pipelines.evaluation.scorecard import Estimate, Result, Scorecard
from pipelines.settings.evaluation import EvaluateConfig, PromoteConfig
from pipelines.stages import evaluate
from pipelines.stages import promote
from pipelines.stages import register
from pipelines.stages import train_emulator
from pipelines.tracking import cards
from pipelines.tracking.evaluations import registered
from tests.conftest import configured, params_with, tool_env
from tests.pipeline.conftest import CACHE, finish, latentops, tiny_emulator_cfg, write_params

EVAL = configured(EvaluateConfig, "evaluate", trajectories=2, members=3, lead_windows=((1, 20), (21, 100)), batch=2)
NAME = "euler_mini-emulator"


@pytest.fixture
def evaluated_once(trained, workspace):
    """The first evaluation of the workspace's registry (kept for the module)."""
    return evaluate.run(EVAL, workspace, progress=False)


def test_every_version_is_evaluated_once_then_a_new_one_alone(evaluated_once, trained, workspace):
    first = evaluated_once
    labels = {r.label for r in first["results"] if r.version}
    assert labels == {"autoencoder_c4_v1", "solver_c4_v1", "diffusion_c4_v2", "pixel_solver_v3"}
    assert {r.label for r in first["results"] if not r.version} == {"persistence", "conserved_mean", "climatology"}
    assert set(first["evaluated"]) == labels  # nothing was evaluated before

    again = evaluate.run(EVAL, workspace, progress=False)
    assert again["evaluated"] == [] and set(again["skipped"]) == labels

    # Two evaluations at once (two people, or `dvc repro` and a hand-run command): the new
    # version is scored once, by one of them; the other waits and finds it scored.
    train_emulator.run(tiny_emulator_cfg(steps=2), workspace, CACHE, "solver", 4, progress=False)
    version = next(r["version"] for r in register.register_models(workspace) if r["registered"])
    label = f"solver_c4_v{version}"
    params = write_params(Path.cwd() / "params-evaluate.yaml", {"evaluate": EVAL, "data": workspace})
    both = [latentops(Path.cwd(), params, "evaluate", "-q", env=_store_env()) for _ in range(2)]
    outputs = [finish(process) for process in both]
    assert sorted(f"evaluated 1 version(s) ['{label}']" in out for out in outputs) == [False, True], outputs
    assert sorted("evaluated 0 version(s) []" in out for out in outputs) == [False, True], outputs
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("euler_mini/evaluate").experiment_id
    scored = client.search_runs([experiment], f"tags.model_version = '{version}' and "
                                              f"tags.model = '{NAME}' and tags.evaluation_key = '{_key(workspace)}'")
    assert len(scored) == 1


def test_results_runs_tags_and_report(evaluated_once, workspace):
    results = {r.label: r for r in evaluated_once["results"]}
    diffusion, solver, ae = results["diffusion_c4_v2"], results["solver_c4_v1"], results["autoencoder_c4_v1"]
    for r in (diffusion, solver, ae, results["climatology"]):
        assert {"vrmse_mean", "vrmse_1-20", "vrmse_21-100", "crps_1-20", "vrmse_members_21-100", "psrmse_low_21-100",
                "psrmse_high_1-20", "seconds_per_trajectory", "vrmse_1-20/density", "crps_21-100/energy"} <= \
            set(r.card.estimates) | {"seconds_per_trajectory"}
        for estimate in r.card.estimates.values():
            assert estimate.low <= estimate.value <= estimate.high
        assert len(r.card.trajectories["vrmse_mean"]) == EVAL.trajectories
    assert "spread_skill_1-20" in diffusion.card and "spread_skill_1-20" not in solver.card
    assert diffusion.card.ensemble and not solver.card.ensemble
    assert "ae_truth/vrmse_1-20" in diffusion.card and "ae_truth/vrmse_1-20" not in ae.card
    assert "ae_truth/crps_1-20" in diffusion.card and "ae_truth/psrmse_low_1-20" in diffusion.card
    assert "ae_truth/vrmse_1-20" not in results["pixel_solver_v3"].card
    # A deterministic forecast's ensemble mean is itself: both VRMSEs agree; an ensemble's mean scores better.
    assert solver.card.value("vrmse_1-20") == pytest.approx(solver.card.value("vrmse_members_1-20"), rel=1e-5)
    assert diffusion.card.value("vrmse_1-20") < diffusion.card.value("vrmse_members_1-20")
    # The conserved mean is a constant field: VRMSE 1 by construction wherever the spatial mean holds.
    assert results["conserved_mean"].card.value("vrmse_1-20/density") == pytest.approx(1.0, abs=0.05)

    on_disk = json.loads(Path("metrics/evaluation.json").read_text())
    assert on_disk["solver_c4_v1"]["metrics"]["vrmse_mean"] == pytest.approx(solver.card.value("vrmse_mean"), rel=1e-5)
    low, high = on_disk["diffusion_c4_v2"]["intervals"]["crps_21-100"]
    assert low <= on_disk["diffusion_c4_v2"]["metrics"]["crps_21-100"] <= high
    assert "vrmse_1-20/density" not in on_disk["solver_c4_v1"]["metrics"]  # headline numbers only
    assert Path("metrics/evaluation/solver_c4_v1.csv").read_text().startswith("lead,vrmse,crps\n4,")
    assert Path("metrics/evaluation/diffusion_c4_v2.csv").read_text().startswith("lead,vrmse,crps,spread_skill\n4,")
    assert Path("metrics/evaluation/climatology.csv").read_text().startswith("lead,vrmse,crps\n4,")

    client = mlflow.MlflowClient()
    version = client.get_model_version(NAME, "2")
    assert version.tags["eval.key"] == evaluation_key(EVAL, workspace)
    assert version.tags["eval.vrmse_21-100"] == str(diffusion.card.get("vrmse_21-100"))  # "value [low, high]"
    assert version.tags["eval.status"].endswith("on 2 trajectories")
    assert cards.scorecard(version, version.tags["eval.key"]) == diffusion.card  # the evaluation run's scorecard.json
    assert len([t for t in version.tags if t.startswith("eval.")]) == 4  # a person can scan them
    card = version.description  # the model card, rewritten by evaluate
    for part in (f"**diffusion**, c = 4, compression rate 20 · vrmse_21-100 = {diffusion.card.get('vrmse_21-100')}",
                 "### What it is", "### Lineage", "### Scorecard",
                 "### How to load", 'mlflow.pyfunc.load_model("models:/euler_mini-emulator/2")',
                 f"| VRMSE of the ensemble mean (`vrmse`) | {diffusion.card.get('vrmse_1-20').cell()} | "
                 f"{diffusion.card.get('vrmse_21-100').cell()} |",
                 f"| persistence (baseline): VRMSE of the ensemble mean | "  # (as stored: 6 significant digits)
                 f"{Scorecard.from_dict(results['persistence'].card.to_dict()).get('vrmse_1-20').cell()} |",
                 f"| trainable parameters | {int(client.get_run(version.run_id).data.params['parameters']):,} |"):
        assert part in card, (part, card)
    autoencoder = client.get_model_version("euler_mini-autoencoder", "1")
    assert autoencoder.tags["kind"] == "autoencoder" and "(baseline)" not in autoencoder.description
    child = client.get_run(diffusion.run_id)
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["stage"] == "evaluate" and child.data.tags["model_version"] == "2"
    assert [m.step for m in client.get_metric_history(child.info.run_id, "vrmse")] == list(range(4, 101, 4))
    assert len(client.get_metric_history(child.info.run_id, "spread_skill")) == 25
    assert len(client.get_metric_history(child.info.run_id, "ae_truth/crps")) == 25
    assert client.get_run(child.info.run_id).data.metrics["vrmse_1-20_low"] <= diffusion.card.value("vrmse_1-20")
    plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
    assert {"plots/vrmse_vs_lead.png", "plots/spectra.png", "plots/rollout_density.png",
            "plots/rollout_density.gif", "plots/rank_histogram.png"} <= plots
    assert "scorecard.json" in {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} == {
        "report/comparison.md", "report/comparison.png"}

    markdown = Path("reports/comparison.md").read_text()
    assert "| autoencoder (reconstruction floor) | 20 |" in markdown and "| neural solver (pixel) | 1 |" in markdown
    assert "| climatology (baseline) |" in markdown and "| conserved mean (baseline) |" in markdown
    assert "61-100" not in markdown and "| 21-100 |" in markdown
    assert "Fair CRPS" in markdown and "against the auto-encoded truth D(E(x))" in markdown
    assert "high vs truth | low vs D(E(x))" in markdown
    findings = markdown[markdown.index("findings, checked"):]
    assert findings.count("**") == 8 and all(f"{i}. **" in findings for i in range(1, 5))
    # One autoencoder rate only: the compression findings cannot be decided.
    assert "across compression rates while reconstruction error grows: inconclusive" in findings
    assert Path("reports/comparison.png").stat().st_size > 1000


def test_promotion_is_gated_recorded_and_loads_in_a_fresh_process(evaluated_once, workspace, tmp_path):
    client = mlflow.MlflowClient()
    # The skill rule reads the baselines each emulator's evaluation recorded beside it: a
    # barely trained emulator is refused for want of skill, or promoted beating them, never
    # promoted on an unknown skill.
    skilled = promote.run(configured(PromoteConfig, "promote", baselines=True), EVAL, workspace, dry_run=True)
    skilled = skilled["emulator"]
    assert "so its skill is unknown" not in skilled.reason + str(skilled.rejected)
    assert any("no skill: vrmse_mean" in why for why in skilled.rejected.values()) or skilled.promoted
    gate = configured(PromoteConfig, "promote", baselines=False)  # the rest is about the other rules
    dry = promote.run(gate, EVAL, workspace, dry_run=True)["emulator"]
    assert dry.promoted and "no production version yet" in dry.reason
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(NAME, "production")  # a dry run changes nothing

    # Two promotions at once: one promotes, the other waits for it and finds the alias moved;
    # both are on record, and the alias is the one the first decided.
    params = write_params(Path.cwd() / "params-promote.yaml", {"promote": gate, "evaluate": EVAL, "data": workspace})
    before = _promote_runs(client)
    both = [latentops(Path.cwd(), params, "promote", env=_store_env()) for _ in range(2)]
    outputs = [finish(process) for process in both]
    promoted = [out for out in outputs if "promote: emulators: promoted v" in out]
    refused = [out for out in outputs if "promote: emulators: refused: the best candidate" in out]
    assert len(promoted) == len(refused) == 1 and "no production version yet" in promoted[0], outputs
    audit = [run for run in _promote_runs(client) if run.info.run_id not in before]
    assert sorted(run.data.tags["decision"] for run in audit) == ["promoted", "refused"]
    best = int(client.get_model_version_by_alias(NAME, "production").version)
    assert f"promoted v{best} " in promoted[0] and f"v{best} " in refused[0] and "already production" in refused[0]
    first = next(r for r in evaluated_once["results"] if r.name == NAME and r.version == best)
    assert str(client.get_model_version_by_alias(NAME, "production").version) == str(best)
    tags = client.get_model_version(NAME, str(best)).tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.run_id"]
    assert tags["promotion.history"].startswith("production ") and ";" not in tags["promotion.history"]
    card = client.get_model_version(NAME, str(best)).description  # rewritten by the promotion
    assert "**@production**" in card and "### Promotion\n\n**promoted** " in card and "no production version yet" in card
    record = json.loads(Path("metrics/promotion.json").read_text())["emulator"]  # the later of the two
    assert record["candidate"]["version"] == best and record["run_id"] in {run.info.run_id for run in audit}
    assert client.get_run(record["run_id"]).info.status == "FINISHED"

    again = promote.run(gate, EVAL, workspace)["emulator"]
    assert not again.promoted and "already production" in again.reason

    other_kinds = tuple(k for k in ("diffusion", "solver", "pixel_solver") if k != first.kind)
    worse = promote.run(dataclasses.replace(gate, kinds=other_kinds), EVAL, workspace)["emulator"]
    assert not worse.promoted and "does not beat production" in worse.reason
    assert worse.comparison is not None and "P(better) = " in worse.reason
    decision = json.loads(Path("metrics/promotion.json").read_text())["emulator"]
    assert decision["comparison"]["probability"] == pytest.approx(worse.comparison.probability)
    refused = client.get_run(decision["run_id"]).data.metrics
    assert refused["probability_better"] == pytest.approx(worse.comparison.probability)
    assert str(client.get_model_version_by_alias(NAME, "production").version) == str(best)
    candidate = client.get_model_version(NAME, str(worse.candidate.version))
    assert candidate.tags["promotion.decision"] == "refused" and "promotion.history" not in candidate.tags
    assert "**refused** " in candidate.description and "P(better than production) = " in candidate.description

    # The production alias loads in a fresh process and forecasts.
    script = (
        "import numpy as np, mlflow\n"
        "from pipelines.tracking.registry import load_pyfunc\n"
        "model = load_pyfunc('models:/euler_mini-emulator@production')\n"
        "states = np.ones((1, 1, 16, 16, 5), dtype=np.float32)\n"
        "cond = np.zeros((1, 13), dtype=np.float32); cond[0, 0] = 1.4\n"
        "out = model.predict({'states': states, 'cond': cond}, params={'horizon': 3})\n"
        "assert out.shape == (1, 1, 4, 16, 16, 5) and np.isfinite(out).all(), out.shape\n"
        "print('forecast', out.shape)\n"
    )
    env = {**tool_env(), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "forecast (1, 1, 4, 16, 16, 5)" in result.stdout


def _store_env() -> dict[str, str]:
    """A subprocess's environment, on this test's MLflow store."""
    return {**tool_env(), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}


def _key(data) -> str:
    return evaluation_key(EVAL, data)


def _promote_runs(client: mlflow.MlflowClient) -> list[mlflow.entities.Run]:
    """The emulator promotions on record (each a run of the promote experiment)."""
    experiment = client.get_experiment_by_name("euler_mini/promote")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.model = '{NAME}'")


def _result(version: int, kind: str, vrmse: float | list[float], seconds: float = 1.0,
            spread: float | None = None) -> Result:
    """A synthetic result with per-trajectory ``vrmse`` (a constant over 8 when a number)."""
    values = [vrmse] * 8 if isinstance(vrmse, float) else vrmse
    mean = sum(values) / len(values)
    card = Scorecard({"vrmse_mean": Estimate(mean, min(values), max(values))}, {"vrmse_mean": values}, seconds)
    if spread is not None:
        card.estimates["spread_skill_1-20"] = Estimate(spread, spread, spread)
        card.trajectories["spread_skill_1-20"] = [spread] * len(values)
    return Result(f"{kind}_v{version}", kind, card, NAME, version)


def _emulators(gate: PromoteConfig) -> promote.Family:
    return promote.families(gate, "euler_mini")["emulator"]


def test_each_gate_rule_states_why_it_refuses():
    gate = configured(PromoteConfig, "promote", margin=0.1, max_seconds=5.0, spread_skill=(0.5, 2.0), baselines=False)
    slow = _result(2, "solver", 0.1, seconds=9.0)
    overconfident = _result(3, "diffusion", 0.1, spread=0.2)
    decision = promote.decide([slow, overconfident], None, None, _emulators(gate))
    assert not decision.promoted
    assert "latency 9.00 s per trajectory exceeds promote.max_seconds = 5" in decision.rejected["v2"]
    assert "spread-skill ratio 0.200 is outside promote.spread_skill [0.5, 2]" in decision.rejected["v3"]
    assert "no candidate passes the gate" in decision.reason

    production = _result(1, "solver", 1.0)
    close = _result(4, "solver", 0.95)  # better, but not by the 10 % margin
    decision = promote.decide([production, close], production, 1, _emulators(gate))
    assert not decision.promoted and "does not beat production v1 (1.0000) by the margin 0.1" in decision.reason
    clear = _result(5, "diffusion", 0.5, spread=1.0)
    best = promote.decide([production, close, clear], production, 1, _emulators(gate))
    assert best.candidate.version == 5 and "v1" not in best.rejected
    assert "vrmse_mean 0.9500 is not the lowest of the versions that pass the gate (v5: 0.5000)" in best.rejected["v4"]


def test_promotion_needs_evidence_beyond_the_noise():
    """Paired bootstrap over the same trajectories: an advantage inside the trajectory-to-
    trajectory noise is refused, a consistent one accepted, and both say why."""
    rng = np.random.default_rng(0)
    hardness = rng.lognormal(0.0, 0.5, 16)  # trajectories differ far more than the models
    production = _result(1, "solver", list(hardness))
    noisy = _result(2, "solver", list(hardness * 0.97 + rng.normal(0, 0.15, 16)))  # 3 % better on average, noisy
    steady = _result(3, "solver", list(hardness * 0.9 + rng.normal(0, 0.01, 16)))  # 10 % better on every trajectory
    gate = configured(PromoteConfig, "promote", probability=0.95, baselines=False)

    refused = promote.decide([production, noisy], production, 1, _emulators(gate))
    assert noisy.card.value("vrmse_mean") < production.card.value("vrmse_mean")  # the point estimate is better
    assert not refused.promoted and "inside the noise" in refused.reason
    assert refused.comparison.probability < 0.95 and refused.comparison.low < 0 < refused.comparison.high
    assert f"P(better) = {refused.comparison.probability:.3f} < promote.probability = 0.95" in refused.reason

    accepted = promote.decide([production, steady], production, 1, _emulators(gate))
    assert accepted.promoted and accepted.candidate.version == 3
    assert accepted.comparison.probability >= 0.95 and accepted.comparison.high < 0
    assert "P(better) = 1.000 >= promote.probability = 0.95" in accepted.reason


def test_promotion_refuses_a_model_that_does_not_beat_the_best_trivial_baseline():
    """Rule 4: the candidate must beat the lowest of the baselines on the gate's metric, by a
    paired bootstrap; a model tied with the conserved mean is refused, whatever it beats."""
    rng = np.random.default_rng(1)
    hardness = rng.lognormal(0.0, 0.5, 16)
    baselines = {"persistence": _result(0, "persistence", list(hardness * 1.5)).card,
                 "conserved_mean": _result(0, "conserved_mean", list(hardness)).card}
    tied = _result(1, "solver", list(hardness * 1.005 + rng.normal(0, 0.05, 16)))  # far better than persistence
    skilled = _result(2, "diffusion", list(hardness * 0.8 + rng.normal(0, 0.01, 16)), spread=1.0)
    gate = configured(PromoteConfig, "promote", probability=0.95, baselines=True)

    refused = promote.decide([tied], None, None, _emulators(gate), baselines=baselines)
    assert not refused.promoted and "no candidate passes the gate" in refused.reason
    why = refused.rejected["v1"]
    assert why.startswith("no skill: vrmse_mean") and "best trivial baseline, conserved_mean" in why, why
    assert "promote.probability = 0.95" in why and "P(better) = " in why

    promoted = promote.decide([tied, skilled], None, None, _emulators(gate), baselines=baselines)
    assert promoted.promoted and promoted.candidate.version == 2 and "v1" in promoted.rejected
    unknown = promote.decide([skilled], None, None, _emulators(gate), baselines={})
    assert not unknown.promoted and "its skill is unknown" in unknown.rejected["v2"]
    off = promote.decide([tied], None, None, _emulators(configured(PromoteConfig, "promote", baselines=False)))
    assert off.promoted  # the rule is the setting's: promote.baselines: false lifts it


def test_compare_prints_the_table(evaluated_once, workspace, capsys):
    from pipelines.cli import main

    params = params_with(Path("params.yaml"), {"evaluate": {"trajectories": 2, "members": 3, "batch": 2,
                                                            "lead_windows": [[1, 20], [21, 100]]},
                                               "data": {"root": workspace.root}})
    assert main(["--params", str(params), "compare"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Every number: the mean over 2 test trajectories") and "| diffusion | 20 |" in out
    assert "The LoLA paper's findings, checked" in out
    assert report.latest(evaluated_once["results"])[0].kind == "autoencoder"


def test_new_settings_or_force_evaluate_everything_again(evaluated_once, workspace):
    from pipelines.cli import main

    count = len([r for r in evaluated_once["results"] if r.version])  # baselines are not registered versions
    changed = evaluate.run(dataclasses.replace(EVAL, members=2), workspace, progress=False)
    assert len(changed["evaluated"]) == count
    section = {"trajectories": 2, "members": 2, "batch": 2, "lead_windows": [[1, 20], [21, 100]]}
    params = params_with(Path("params.yaml"), {"evaluate": section, "data": {"root": workspace.root}})
    assert main(["--params", str(params), "evaluate", "--quiet"]) == 0  # same settings: nothing to do
    assert evaluate.run(dataclasses.replace(EVAL, members=2), workspace, progress=False)["evaluated"] == []
    assert main(["--params", str(params), "evaluate", "--quiet", "--force"]) == 0
    assert json.loads(Path("metrics/evaluation.json").read_text())["solver_c4_v1"]["run_id"] != \
        next(r.run_id for r in changed["results"] if r.label == "solver_c4_v1")  # a new run


def test_a_change_to_the_scoring_code_rescores_every_version(trained, workspace, tmp_path, monkeypatch):
    settings = dataclasses.replace(EVAL, members=2)  # the settings the test before left every version under
    code = scoring_code()
    assert {"scoring.py", "metrics.py", "bootstrap.py", "scorecard.py", "emulators.py"} <= {p.name for p in code}
    edited = tmp_path / code[0].name
    edited.write_text(code[0].read_text() + "\n# a change to the scoring code\n")
    changed = [edited, *code[1:]]
    assert evaluation_key(settings, workspace, changed) != evaluation_key(settings, workspace)
    evaluate.run(settings, workspace, progress=False)
    assert evaluate.run(settings, workspace, progress=False)["evaluated"] == []  # the same code: nothing to do
    monkeypatch.setattr("pipelines.evaluation.key.scoring_code", lambda: changed)
    again = evaluate.run(settings, workspace, progress=False)
    versions = registered(mlflow.MlflowClient(), "euler_mini")
    assert again["skipped"] == [] and len(again["evaluated"]) == len(versions)
