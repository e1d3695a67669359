"""Many workers on one study: four ``latentops tune`` commands started at once on one
PostgreSQL-backed Optuna study of 40 trials (the sampler study of a tiny registered diffusion
emulator), as four people or four machines would. Prints the load figures: finished trials,
trials lost (an Optuna trial without its MLflow run, or the reverse), duplicated (a trial
number or an MLflow run twice), the parent runs (one expected), and the wall time.

    .venv/bin/python benchmarks/bench_tune_load.py [--workers 4] [--trials 40]

About 6 minutes on 2 cores; needs Debian's PostgreSQL (``bash .ci/setup`` installs it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from pipelines.settings.data import DataConfig  # noqa: E402
from pipelines.settings.score import ScoreConfig  # noqa: E402
from pipelines.settings.tune import SamplerStudyConfig, TuneConfig  # noqa: E402
from pipelines.stages import cache_latents, simulate, train_autoencoder, train_emulator  # noqa: E402
from tests.conftest import configured, tiny_config  # noqa: E402
from tests.pipeline.conftest import (CACHE, finish, inside, latentops, postgres_cluster, tiny_cfg,  # noqa: E402
                                     tiny_emulator_cfg, write_params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4, help="tune commands started at once (4)")
    parser.add_argument("--trials", type=int, default=40, help="the study's target of finished trials (40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="latentops-load-") as tmp, postgres_cluster(("optuna",)) as postgres:
        root = Path(tmp)
        started = time.monotonic()
        simulate.run(tiny_config(), root / "euler", progress=False)
        data = configured(DataConfig, "data", root=str(root / "euler"))
        with inside(root):
            train_autoencoder.run(tiny_cfg(steps=2), data, 4, progress=False)
            cache_latents.run(CACHE, data, 4, progress=False)
            train_emulator.run(tiny_emulator_cfg(), data, CACHE, "diffusion", 4, progress=False)
        print(f"tiny dataset and diffusion emulator in {time.monotonic() - started:.0f} s", flush=True)
        storage = f"{postgres}/optuna"
        study_cfg = configured(SamplerStudyConfig, "tune.sampler", trials=args.trials, steps=(2, 6),
                               score=configured(ScoreConfig, "tune.sampler.score", trajectories=1, members=2,
                                                lead_windows=((1, 8),)))
        cfg = configured(TuneConfig, "tune", storage=storage, heartbeat=2, sampler=study_cfg)
        params = write_params(root / "params.yaml", {"data": data, "train_autoencoder": tiny_cfg(),
                                                     "train_emulator": tiny_emulator_cfg(), "cache_latents": CACHE,
                                                     "tune": cfg})
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
        started = time.monotonic()
        workers = [latentops(root, params, "tune", "--study", "sampler", "--name", "load", "-q", env=env)
                   for _ in range(args.workers)]
        outputs = [finish(worker) for worker in workers]
        seconds = time.monotonic() - started
        study = optuna.load_study(study_name="load", storage=storage)
        trials = study.get_trials(deepcopy=False)
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        (experiment,) = client.search_experiments(filter_string="name LIKE '%/tune'")
        runs = client.search_runs([experiment.experiment_id], max_results=10000)
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    finished = [t for t in trials if t.state.is_finished()]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    run_of = {t.number: t.user_attrs.get("mlflow_run_id") for t in trials}
    child_ids = Counter(r.info.run_id for r in children)
    trial_of_run = Counter(r.data.tags.get("optuna.trial") for r in children)
    lost = sum(1 for number, run_id in run_of.items() if run_id not in child_ids) + \
        sum(1 for r in children if r.info.run_id not in set(run_of.values()))
    duplicated = sum(n - 1 for n in Counter(t.number for t in trials).values()) + \
        sum(n - 1 for n in child_ids.values()) + sum(n - 1 for key, n in trial_of_run.items() if key)
    print(f"\n{args.workers} workers, target {args.trials} trials, {seconds:.0f} s")
    print(f"{'trials in Optuna (finished / complete)':<44}{len(trials):>4} ({len(finished)} / {len(complete)})")
    print(f"{'trial runs in MLflow':<44}{len(children):>4}")
    print(f"{'parent runs of the study':<44}{len(parents):>4}")
    print(f"{'lost (trial without run, or run without trial)':<44}{lost:>4}")
    print(f"{'duplicated':<44}{duplicated:>4}")
    print(f"{'past the target (workers finishing a trial)':<44}{len(finished) - args.trials:>4}")
    print(f"{'runs still RUNNING':<44}{sum(r.info.status == 'RUNNING' for r in runs):>4}")
    for output in outputs:
        print("  " + output.strip().splitlines()[0] if output.strip() else "  (no output)")


if __name__ == "__main__":
    main()
