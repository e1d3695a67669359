"""`latentops tune`: Optuna studies on a real storage (journal file, SQLite), with real
worker processes, tracked in the workspace's real MLflow store, on the tiny registered
diffusion emulator."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from pipelines.evaluation.scoring import Truth
from pipelines.settings.score import ScoreConfig
from pipelines.settings.tune import CompressionStudyConfig, SamplerStudyConfig, TuneConfig
from pipelines.stages import tune
from pipelines.tracking import registry
from pipelines.tracking import runs as tracking
from tests.conftest import configured
from tests.pipeline.conftest import CACHE, finish, inside, latentops, tiny_cfg, tiny_emulator_cfg, write_params

SCORE = configured(ScoreConfig, "tune.sampler.score", trajectories=1, members=2, lead_windows=((1, 8),))


def tiny_tune(storage: str, **sampler) -> TuneConfig:
    return configured(
        TuneConfig, "tune", storage=storage, heartbeat=1,
        sampler=configured(SamplerStudyConfig, "tune.sampler", **{"trials": 6, "steps": (2, 6), "score": SCORE,
                                                                  **sampler}),
        compression=configured(CompressionStudyConfig, "tune.compression", trials=4, latent_channels=(2, 4),
                               lr=(1e-3, 30.0), widths=(4, 8), autoencoder_steps=6, emulator_steps=2,
                               startup_trials=2, score=SCORE),
    )


def write_tune_params(root: Path, data, tune_cfg: TuneConfig) -> Path:
    """A params file with the tiny sections the tune command reads."""
    sections = {"data": data, "train_autoencoder": tiny_cfg(), "train_emulator": tiny_emulator_cfg(),
                "cache_latents": CACHE, "tune": tune_cfg}
    return write_params(root / f"params-{tune_cfg.storage.rsplit('/', 1)[-1].replace(':', '_')}.yaml", sections)


def trial_runs(study: optuna.Study) -> list[mlflow.entities.Run]:
    """The MLflow child runs of the study's parent run."""
    client = tracking.configure()
    parent = client.get_run(study.user_attrs[tune.PARENT_RUN])
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")


@pytest.fixture(scope="module")
def sampler_study(latent_workspace, trained):
    """A sampler study of 6 trials run by two worker processes on a journal file."""
    root, data = latent_workspace
    storage = f"journal:{root / 'optuna-journal.log'}"
    params = write_tune_params(root, data, tiny_tune(storage))
    out = finish(latentops(root, params, "tune", "--study", "sampler", "--workers", "2", "-q"))
    with inside(root):
        version = tune.resolve_version("euler_mini", "latest")
        study = optuna.load_study(study_name=f"euler_mini-sampler-v{version}", storage=tune.open_storage(storage))
    return root, params, study, out


def test_two_workers_record_every_trial_once_in_optuna_and_mlflow(sampler_study):
    root, _, study, out = sampler_study
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs[tune.WORKER] for t in trials}) == 2  # both processes worked on it
    with inside(root):
        runs = trial_runs(study)
        numbers = sorted(int(r.data.tags["optuna.trial"]) for r in runs if r.info.run_name.startswith("trial "))
        assert numbers == list(range(6))  # every trial exactly once
        by_number = {int(r.data.tags["optuna.trial"]): r for r in runs}
        for trial in trials:
            run = by_number[trial.number]
            assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
            assert run.data.tags["optuna.state"] == "COMPLETE"
            assert {k: str(v) for k, v in trial.params.items()} == run.data.params
            assert run.data.metrics["objective/vrmse"] == pytest.approx(trial.values[0])
        parent = tracking.configure().get_run(study.user_attrs[tune.PARENT_RUN])
        artifacts = {a.path for a in tracking.configure().list_artifacts(parent.info.run_id, "plots")}
    assert "plots/pareto_front.png" in artifacts
    assert parent.data.metrics["trials_complete"] == 6
    assert "Pareto front:" in out


def test_sampler_study_front_params_file_and_registered_trial_forecasts(sampler_study, latent_workspace):
    root, params, study, _ = sampler_study
    data = latent_workspace[1]
    front = study.best_trials
    assert front
    # every other complete trial is dominated by a front trial
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert any(all(f <= t for f, t in zip(best.values, trial.values)) for best in front)
    chosen = max(front, key=lambda t: t.values[0])  # not the default choice: the fastest end of the front
    out = finish(latentops(root, params, "tune", "--study", "sampler", "--register", "--trial", str(chosen.number),
                           "-q"))
    assert f"registered trial {chosen.number}" in out
    tuned = yaml.safe_load((root / "tuned" / "sampler.yaml").read_text())["train_emulator"]["sampler"]
    assert tuned["name"] == chosen.params["sampler"] and tuned["steps"] == chosen.params["steps"]
    assert study.get_trials(deepcopy=False)[-1].number == 5  # already at its target: no new trial
    with inside(root):
        client = tracking.configure()
        version = max(client.search_model_versions("name='euler_mini-emulator'"), key=lambda v: int(v.version))
        assert version.tags["optuna.trial"] == str(chosen.number)
        assert version.tags["kind"] == "diffusion" and version.tags["tuned_from"] == study.user_attrs["version"]
        model = registry.load_pyfunc(f"models:/euler_mini-emulator/{version.version}")
    forecaster = model.unwrap_python_model().forecaster
    assert (forecaster.sampler.name, forecaster.sampler.steps) == (chosen.params["sampler"], chosen.params["steps"])
    truth = Truth.load(data, "valid", 1)
    example = {"states": truth.initial(forecaster.stride).permute(0, 2, 3, 4, 1).numpy(), "cond": truth.cond.numpy()}
    prediction = model.predict(example, params={"horizon": 3, "members": 2, "seed": 0})
    assert prediction.shape == (1, 2, 4, *example["states"].shape[2:]) and np.isfinite(prediction).all()


KILLED_WORKER = """
import os, signal, socket, sys
import optuna
study = optuna.load_study(study_name="resume", storage=sys.argv[1])
trial = study.ask()
trial.suggest_categorical("sampler", ["heun"])
trial.suggest_int("steps", 24, 48, log=True)
trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_study_resumes_and_finishes(latent_workspace, trained):
    """The study's process is SIGKILLed mid-way, and another worker dies inside a trial (so
    that one orphaned trial exists whatever the timing of the first kill): re-running the
    command fails the orphans, retries their parameters once, and finishes the rest."""
    root, data = latent_workspace
    storage, target = f"sqlite:///{root / 'optuna-resume.db'}", 12
    params = write_tune_params(root, data, tiny_tune(storage, trials=target, steps=(24, 48), samplers=("heun",)))
    process = latentops(root, params, "tune", "--study", "sampler", "--name", "resume", "-q")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it once two trials have finished
        time.sleep(0.1)
        try:
            study = optuna.load_study(study_name="resume", storage=storage)
        except KeyError:
            continue
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
            break
    process.send_signal(signal.SIGKILL)
    process.communicate()
    worker = subprocess.run([sys.executable, "-c", KILLED_WORKER, storage], capture_output=True, text=True)
    assert worker.returncode == -signal.SIGKILL, worker.stderr
    before = optuna.load_study(study_name="resume", storage=storage).get_trials()
    orphans = [t for t in before if t.state == TrialState.RUNNING and tune.WORKER in t.user_attrs]
    assert 2 <= sum(t.state == TrialState.COMPLETE for t in before) < target and orphans

    out = finish(latentops(root, params, "tune", "--study", "sampler", "--name", "resume", "-q"))
    trials = optuna.load_study(study_name="resume", storage=storage).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == target
    for orphan in orphans:
        assert trials[orphan.number].state == TrialState.FAIL
        retry = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
        # a trial killed between two suggestions has drawn only some parameters: the retry keeps
        # those and draws the rest (seen in CI: SIGKILL after `sampler`, before `steps`)
        assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
        assert orphan.params.items() <= retry[0].params.items(), (orphan.params, retry[0].params)
    assert f"{target} complete" in out and f"{len(orphans)} fail" in out
    with inside(root):
        runs = trial_runs(optuna.load_study(study_name="resume", storage=storage))
    states = {int(r.data.tags["optuna.trial"]): (r.info.status, r.data.tags.get("optuna.state")) for r in runs}
    for orphan in orphans:  # the one killed inside `latentops tune` had opened its MLflow run
        if "mlflow_run_id" in orphan.user_attrs:
            assert states.pop(orphan.number) == ("FAILED", "FAIL")
    assert sorted(states) == [t.number for t in trials if t.state == TrialState.COMPLETE]
    assert set(states.values()) == {("FINISHED", "COMPLETE")}


def test_the_pruner_stops_clearly_bad_trials(latent_workspace, trained):
    """Two sound trials, then two with a learning rate that wrecks the autoencoder: the
    median pruner stops the bad ones at their first report."""
    root, data = latent_workspace
    storage = f"sqlite:///{root / 'optuna-prune.db'}"
    params = write_tune_params(root, data, tiny_tune(storage))
    study = optuna.create_study(study_name="prune", storage=storage)
    for lr in (3e-3, 2e-3, 30.0, 20.0):
        study.enqueue_trial({"latent_channels": 4, "lr": lr, "width": 8})
    out = finish(latentops(root, params, "tune", "--study", "compression", "--name", "prune", "-q"))
    trials = optuna.load_study(study_name="prune", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    assert all(max(t.intermediate_values) < 6 for t in trials[2:])  # stopped before the end
    with inside(root):
        runs = trial_runs(optuna.load_study(study_name="prune", storage=storage))
        pruned = [r for r in runs if r.data.tags.get("optuna.state") == "PRUNED"]
        assert len(pruned) == 2
        history = tracking.configure().get_metric_history(pruned[0].info.run_id, "trial/autoencoder_val_loss")
        assert history and history[0].step == 3
    tuned = yaml.safe_load((root / "tuned" / "compression.yaml").read_text())["train_autoencoder"]
    assert tuned["train"]["optim"]["lr"] < 1 and tuned["latent_channels"] == [4] and tuned["model"]["widths"] == [8, 16]
    assert "best trial" in out


def test_bad_storage_and_study_name_the_problem(workspace, trained):
    with pytest.raises(ValueError, match="tune.storage: 'optuna.db' is neither"):
        tune.open_storage("optuna.db")
    with pytest.raises(ValueError, match="version 1 is a solver emulator"):
        tune.resolve_version("euler_mini", "1")
    job = tune.Job("samplers", tiny_tune("sqlite:///x.db"), workspace, tiny_cfg(), tiny_emulator_cfg(), CACHE)
    with pytest.raises(ValueError, match="unknown study 'samplers'; valid studies are"):
        tune.run(job)

