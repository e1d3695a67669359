"""The real DVC pipeline on a copy of the project with tiny parameters: `dvc repro` builds
the dataset, trains the autoencoders, caches their latents, trains every emulator, registers
them all, evaluates them all and promotes one; a second run does nothing;
`dvc push`/`pull` round-trip through the default remote and through an S3 bucket (the README's
commands, on moto's S3 server); a parameter change reruns only the
stages that read it; in a fresh clone (no data, models or store) every stage is out of date
and a chain from the data to a registered assimilator rebuilds."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN, tool_env
from tests.pipeline.browser import chromium
from tests.pipeline.conftest import free_port, mlflow_server, served, tiny_project


def env() -> dict[str, str]:
    """The tools' environment; system metrics sampled every second (MLflow's default, 10 s, is
    longer than a tiny training run, whose System metrics page would be empty)."""
    return {**tool_env(), "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}


def run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git + DVC copy of the repository's pipeline files, with tiny parameters, shared by the
    tests of this module in their order: the pipeline fills it once (the suite's one
    pipeline run), the browser looks at its store, the fresh clone deletes it."""
    return tiny_project(tmp_path_factory.mktemp("pipeline") / "project")


PASSED: set[str] = set()  # the parts of the module that passed: each later part needs the ones before


def after(*parts: str) -> None:
    """Skip (rather than fail a second time) when a part this one builds on failed."""
    failed = [part for part in parts if part not in PASSED]
    if failed:
        pytest.skip(f"needs {', '.join(failed)} of this module, which failed")


# README.md's "Data versioning": a team's S3 remote (placeholders filled in by the test)
S3_REMOTE = ("dvc remote add team s3://dvc/euler_mini", "dvc remote modify team endpointurl http://<host>:9000",
             "dvc remote modify --local team access_key_id <access key>",
             "dvc remote modify --local team secret_access_key <secret key>", "dvc push -r team")
S3_PULL = "dvc pull -r team"


def s3_keys(url: str, bucket: str) -> list[str]:
    """The keys of the objects in ``bucket`` of the S3 server at ``url``."""
    import boto3

    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")  # pragma: allowlist secret
    return [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]


STAGES = ("simulate", "train_autoencoder@4", "train_autoencoder@1", "cache_latents@4", "cache_latents@1",
          "train_emulator@diffusion-4", "train_emulator@diffusion-1", "train_emulator@solver-4",
          "train_emulator@solver-1", "train_pixel_solver", "train_obs_encoder@sparse-4", "train_obs_encoder@sparse-1",
          "register", "evaluate", "promote", "assimilate", "sweep_observations")


def test_repro_no_op_push_pull_parameter_change_and_tune(project, s3):
    out = run(["dvc", "repro"], project)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    summary = json.loads((project / "metrics/emulator/diffusion_c1.json").read_text())
    assert summary["kind"] == "diffusion" and summary["model"] == "data/models/emulator_diffusion_c1"
    assert (project / "data/models/emulator_pixel_solver/model.json").is_file()
    assert (project / "data/registry/emulator_pixel_solver/MLmodel").is_file()
    report = (project / "reports/comparison.md").read_text()  # the whole compression sweep, compared
    for row in ("| autoencoder (reconstruction floor) | 20 |", "| autoencoder (reconstruction floor) | 80 |",
                "| diffusion | 20 |", "| neural solver (latent) | 80 |", "| neural solver (pixel) | 1 |",
                "| persistence (baseline) |", "| climatology (baseline) |", "The LoLA paper's findings, checked"):
        assert row in report
    evaluation = json.loads((project / "metrics/evaluation.json").read_text())
    assert len(evaluation) == 2 + 5 + 2 + 3  # autoencoders, emulators, assimilators, baselines
    promotion = json.loads((project / "metrics/promotion.json").read_text())
    assert promotion["emulator"]["promoted"] and promotion["assimilator"]["promoted"]  # no production before
    assert json.loads((project / "metrics/autoencoder/c1.json").read_text())["compression_rate"] == 5 * 16 / 1
    assert (project / "data/latents/c4/test.h5").is_file()
    assert (project / "mlflow.db").is_file()
    assimilation = json.loads((project / "metrics/assimilation.json").read_text())  # the twin experiment
    assert {row["method"] for row in assimilation["rows"].values()} == {"free", "ensf", "encoded", "mmps", "letkf"}
    assert (project / "data/observations/test_0.h5").is_file() and (project / "reports/assimilation.md").is_file()
    sweep = json.loads((project / "metrics/sweep_observations.json").read_text())  # skill against the sensors
    assert len(sweep["cells"]) == 2 and sweep["registered"]["name"] == "euler_mini-assimilator"
    assert (project / "metrics/sweep_observations/noise_0.1.csv").is_file()
    dataset = project / "data"
    before = tree_digest(dataset)
    assert "raw/euler_mini/stats.yaml" in before and any(k.startswith("raw/euler_mini/data/train/") for k in before)
    assert (project / "dvc.lock").is_file()
    assert yaml.safe_load((project / "metrics" / "simulate.yaml").read_text())["trajectories"] == 4

    out = run(["dvc", "repro"], project)
    assert "Running stage" not in out
    assert "didn't change" in out
    assert tree_digest(dataset) == before
    assert "up to date" in run(["dvc", "status"], project)

    run(["dvc", "push"], project)
    remote = project / ".dvcstore"
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))

    shutil.rmtree(dataset / "raw" / "euler_mini")
    for c in (4, 1):
        shutil.rmtree(dataset / "latents" / f"c{c}")
    shutil.rmtree(project / ".dvc" / "cache")
    run(["dvc", "pull"], project)
    assert tree_digest(dataset) == before

    # The same through an S3 bucket (moto's S3-compatible server standing in for the platform's
    # MinIO), with the README's commands as written: remote, endpoint, credentials (--local), push, pull.
    readme = (REPO / "README.md").read_text()
    for line in S3_REMOTE:
        assert line in readme, f"README.md no longer documents `{line}`: keep the test and the README together"
        run(shlex.split(line.replace("http://<host>:9000", s3).replace("<access key>", "test")
                        .replace("<secret key>", "test")), project)  # pragma: allowlist secret
    assert "secret_access_key" not in (project / ".dvc/config").read_text()  # it went to config.local
    stored = s3_keys(s3, "dvc")
    assert any(key.startswith("euler_mini/files/md5/") for key in stored), stored[:5]
    shutil.rmtree(dataset / "raw" / "euler_mini")
    for c in (4, 1):
        shutil.rmtree(dataset / "latents" / f"c{c}")
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(remote)  # nothing can come from the local remote
    assert S3_PULL in readme, f"README.md no longer documents `{S3_PULL}`"
    out = run(shlex.split(S3_PULL), project)
    assert tree_digest(dataset) == before, out
    run(["dvc", "push"], project)  # the default remote again, as it was

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["promote"]["margin"] = 0.01
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], project)  # only the stage that reads the changed section runs again
    assert {stage for stage in STAGES if f"Running stage '{stage}'" in out} == {"promote"}

    # A tuned sampler, applied to params.yaml, rebuilds exactly what it changes.
    run(["latentops", "tune", "--study", "sampler", "-q"], project)
    tuned = yaml.safe_load((project / "tuned/sampler.yaml").read_text())["train_emulator"]["sampler"]
    assert "Pareto front" not in run(["latentops", "apply-params", "tuned/sampler.yaml"], project)
    out = run(["dvc", "repro"], project)
    rerun = {stage for stage in STAGES if f"Running stage '{stage}'" in out}
    # (one matrix stage trains both latent kinds, so the solvers re-run too: DVC lists params per stage)
    assert rerun == {f"train_emulator@{kind}-{c}" for kind in ("diffusion", "solver") for c in (4, 1)} | {
        "register", "evaluate", "promote", "assimilate", "sweep_observations"}
    for c in (4, 1):
        model = yaml.safe_load((project / f"data/registry/emulator_diffusion_c{c}/MLmodel").read_text())
        assert model["metadata"]["sampler"] == {**params["train_emulator"]["sampler"], **tuned}

    PASSED.add("the pipeline run")


EMULATOR = "euler_mini-emulator"
CARD = ("What it is", "Lineage", "Scorecard", "How to load")  # the headings of a version's model card
# every stage that tracks to MLflow has its experiment (simulate and cache_latents only write DVC outputs)
EXPERIMENTS = tuple(f"euler_mini/{stage}" for stage in (
    "train_autoencoder", "train_emulator", "train_obs_encoder", "register_assimilator", "evaluate", "promote",
    "assimilate", "sweep_observations", "tune"))


def challenger_promotion(project: Path) -> tuple[str, str]:
    """Overrides of ``promote`` under which a version of another kind than production's beats it
    (a kind and a metric on which that kind's best evaluated version is lower), read from
    ``metrics/evaluation.json``: ``(kind, metric)``."""
    rows = [row for row in json.loads((project / "metrics/evaluation.json").read_text()).values()
            if row.get("name") == EMULATOR]
    promotion = json.loads((project / "metrics/promotion.json").read_text())["emulator"]
    production_version = promotion["candidate"]["version"] if promotion["promoted"] else promotion["production_before"]
    (production,) = [row for row in rows if row["version"] == production_version]
    for metric, value in production["metrics"].items():
        if metric == "seconds_per_trajectory":
            continue
        for row in rows:
            if row["kind"] != production["kind"] and row["metrics"].get(metric, value) < value:
                return row["kind"], metric
    pytest.fail(f"production v{production_version} ({production['kind']}) is the best on every metric: no other "
                f"kind can be promoted over it; evaluation rows: {rows}")


def test_a_team_sees_the_store_in_the_mlflow_ui_and_optuna_dashboard(project, tmp_path):
    """The store the pipeline filled, as a person sees it: the real ``mlflow server`` on the
    project's SQLite store and artifacts, and optuna-dashboard on its Optuna storage, opened in
    headless Chromium; each check is on what the page renders (screenshots in tmp_path/screenshots,
    and in $LATENTOPS_SCREENSHOTS when set)."""
    after("the pipeline run")
    import optuna
    from mlflow import MlflowClient

    started = time.monotonic()
    # A training run killed outright (SIGKILL: it cannot close its run) must not stay Running:
    # the next latentops command (the promotion below) marks it KILLED. (c = 2: a width the
    # pipeline does not train, so no stage's outputs or checkpoints are touched.)
    store = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(store, store)  # only to find the pages' addresses; the checks read the pages
    victim = subprocess.Popen(["latentops", "--set", "train_autoencoder.train.steps=100000", "train-autoencoder",
                               "--latent-channels", "2", "--quiet"], cwd=project, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(2)
        killed = next(iter(client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            "attributes.run_name = 'autoencoder-c2' and attributes.status = 'RUNNING'", max_results=1)), None)
    victim.kill()
    victim.wait()
    assert killed is not None, "the training run to kill never started RUNNING within 300 s"

    # A second, real promotion under a gate that lets another kind win (its kinds and metric
    # overridden) moves production to it and keeps the first as challenger, so the page has both.
    kind, metric = challenger_promotion(project)
    out = run(["latentops", "--set", f"promote.kinds=[{kind}] promote.metric={metric} promote.spread_skill=[0,100] "
               "promote.margin=0", "promote"], project)  # margin 0: any lower value wins (the repro set 0.01)
    assert "promote: emulators: promoted" in out, out

    experiment = {e.name: e.experiment_id for e in client.search_experiments()}
    (autoencoder,) = client.search_runs([experiment["euler_mini/train_autoencoder"]],
                                        "attributes.run_name = 'autoencoder-c4'", max_results=1)
    (evaluation,) = client.search_runs([experiment["euler_mini/evaluate"]], "attributes.run_name = 'evaluate'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
    children = client.search_runs([experiment["euler_mini/evaluate"]],
                                  f"tags.mlflow.parentRunId = '{evaluation.info.run_id}'")
    production = client.get_model_version_by_alias(EMULATOR, "production")
    challenger = client.get_model_version_by_alias(EMULATOR, "challenger")
    emulator_child = next(c for c in children if c.data.tags.get("model") == EMULATOR
                          and c.data.tags.get("model_version") == str(production.version))
    study = (project / "tuned/sampler.yaml").read_text().split("Optuna study ", 1)[1].split()[0]
    optuna_url = f"sqlite:///{project / 'optuna.db'}"
    study_id = optuna.storages.RDBStorage(optuna_url).get_study_id_from_name(study)
    trials = yaml.safe_load((project / "params.yaml").read_text())["tune"]["sampler"]["trials"]

    dashboard_port = free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    with mlflow_server(tmp_path, tool_env(), "--backend-store-uri", store) as mlflow_url, \
            served([str(Path(VENV_BIN) / "optuna-dashboard"), "--host", "127.0.0.1", "--port", str(dashboard_port),
                    optuna_url], f"{dashboard}/api/studies", tmp_path, tool_env(), tmp_path / "dashboard.log"), \
            chromium(tmp_path / "screenshots") as browser:
        def run_page(run_, tab: str = "") -> str:
            return f"{mlflow_url}/#/experiments/{run_.info.experiment_id}/runs/{run_.info.run_id}{tab}"

        # every stage's experiment is listed
        browser.open(f"{mlflow_url}/#/experiments", "experiments", EXPERIMENTS)
        # a training run: its parameters, its loss chart, system metrics, its plots
        browser.open(run_page(autoencoder), "training-run", ["autoencoder-c4", "Parameters (",
                                                             "train_autoencoder.train.steps", "val/vrmse"])
        browser.open(run_page(autoencoder, "/model-metrics"), "training-run-metrics", ["autoencoder-c4 (train/loss)"])
        browser.type_into("Search metric charts", "loss")  # the charts below the first screen are drawn lazily
        browser.wait_for("training-run-loss-charts", ["autoencoder-c4 (train/loss)", "autoencoder-c4 (val/loss)",
                                                      "Step"])
        browser.open(run_page(autoencoder, "/system-metrics"), "training-run-system-metrics",
                     ["cpu_utilization_percentage", "system_memory_usage_megabytes"])
        browser.open(run_page(autoencoder, "/artifacts"), "training-run-artifacts", ["plots", "config"])
        browser.click("plots")
        browser.wait_for("training-run-plots", ["reconstruction_0.png", "loss_curves.png"])
        browser.click("reconstruction_0.png")
        browser.wait_for("training-run-plot", ["plots/reconstruction_0.png"])
        assert browser.images(min_width=300) >= 1, f"the plot is not shown (screenshot: {browser.taken[-1]})"
        # the killed training run is shown as killed, not running
        browser.open(run_page(killed), "killed-training-run", ["autoencoder-c2", "Killed", "latentops.ended"])
        # the evaluation run: its child runs, one per version, with per-lead metric charts
        browser.open(run_page(evaluation), "evaluation-run",
                     ["Child runs", *(c.info.run_name for c in children)])
        browser.open(run_page(emulator_child, "/model-metrics"), "evaluation-child-metrics", ["Model metrics"])
        browser.type_into("Search metric charts", "^vrmse$")
        browser.wait_for("evaluation-child-vrmse-by-lead", [f"{emulator_child.info.run_name} (vrmse)", "Step"])
        points = browser.count("g.scatterlayer path.point")
        assert points >= 3, f"the vrmse chart has {points} points, not one per lead (screenshot: {browser.taken[-1]})"
        # the registry: the emulator with both aliases, the evaluation tags on a version
        browser.open(f"{mlflow_url}/#/models", "registered-models-announcement",
                     [EMULATOR, "euler_mini-autoencoder", "euler_mini-assimilator"])
        browser.close_dialogs()  # MLflow announces its new registry UI over the page the first time
        browser.wait_for("registered-models", [EMULATOR, "@ production"])
        browser.open(f"{mlflow_url}/#/models/{EMULATOR}", "emulator-versions",
                     [f"Version {production.version}", f"Version {challenger.version}", "@ production",
                      "@ challenger"])
        for alias, version in (("challenger", challenger.version), ("production", production.version)):
            browser.open(f"{mlflow_url}/#/models/{EMULATOR}/versions/{version}", f"emulator-{alias}-version",
                         [f"Version {version}", f"@ {alias}", "eval.key", "eval.run_id", "promotion.decision",
                          "promotion.history"])
        # the production version's model card (its markdown description, pipelines/tracking/cards.py)
        if not all(heading in browser.text() for heading in CARD):
            browser.click("Description")  # folded
        browser.wait_for("emulator-model-card", CARD)
        # optuna-dashboard: the finished study and its trials
        browser.open(f"{dashboard}/dashboard", "optuna-studies", [study])
        browser.open(f"{dashboard}/dashboard/studies/{study_id}/trials", "optuna-trials",
                     [study, f"{trials} Trials", *(f"Trial {n}" for n in range(trials)), "Complete", "Best Trial"])
    print(f"browser checks: {time.monotonic() - started:.0f} s; screenshots in {tmp_path / 'screenshots'}")


def test_a_fresh_clone_rebuilds_from_nothing(project):
    after("the pipeline run")
    # A fresh clone has the metrics files and dvc.lock from git, but neither the data, nor
    # the exported models, nor the MLflow store: DVC must see every stage that reads them as
    # out of date rather than trust the metrics files, and a chain through training, registration and a
    # stage reading exported versions must rebuild on the empty registry (the whole pipeline
    # on an empty store is the first `dvc repro` above).
    for path in ("data/raw/euler_mini", "data/models", "data/registry", "data/latents/c4", "data/latents/c1",
                 "mlartifacts", ".dvc/cache"):
        shutil.rmtree(project / path)
    (project / "mlflow.db").unlink()
    status = json.loads(run(["dvc", "status", "--json"], project).split("\n", 1)[0] or "{}")
    # (promote reads only evaluate's metrics, which git holds: it is out of date once evaluate reruns)
    assert set(STAGES) - {"promote"} <= set(status), sorted(set(STAGES) - set(status))
    chain = ("simulate", "train_autoencoder@4", "cache_latents@4", "train_emulator@solver-4", "register")
    out = run(["dvc", "repro", chain[-1]], project)
    for stage in chain:
        assert f"Running stage '{stage}'" in out
    assert (project / "data/latents/c4/train.h5").is_file()
    assert (project / "data/registry/emulator_solver_c4/registered.json").is_file()
    assert (project / "data/registry/assimilator_ensf_solver/registered.json").is_file()
