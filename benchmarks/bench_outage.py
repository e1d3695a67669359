"""Tracking-server outage: a real ``mlflow server`` on PostgreSQL is stopped for 30 s in the
middle of a training run and started again on the same port. Prints whether training went
on, how many metric steps it logged while the server was down, and how many of all its steps
the server holds afterwards (lost and duplicated ones counted).

The client buffers: metrics go through MLflow's asynchronous logging queue, whose sender
retries a failed request with exponential backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 by
default: about 4 minutes) while training goes on; a synchronous call made during the
outage (a validation figure, a tag) waits in the same retries.

    .venv/bin/python benchmarks/bench_outage.py [--steps 3000] [--outage 30]

About 3 minutes on 2 cores; needs Debian's PostgreSQL (``bash .ci/setup`` installs it).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlflow import MlflowClient  # noqa: E402

from pipelines.settings.data import DataConfig  # noqa: E402
from tests.conftest import VENV_BIN, configured, tool_env, write_random_dataset  # noqa: E402
from tests.pipeline.conftest import free_port, postgres_cluster, tiny_cfg, write_params  # noqa: E402


def start_server(port: int, store: str, artifacts: Path, log: Path) -> subprocess.Popen:
    """``mlflow server`` on ``port`` of localhost, once ``/health`` answers."""
    server = subprocess.Popen([str(Path(VENV_BIN) / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", store, "--artifacts-destination", artifacts.as_uri(),
                               "--serve-artifacts"], env=tool_env(), stdout=log.open("a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="training steps, one metric step each (3000)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the server stays down (30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="latentops-outage-") as tmp, postgres_cluster(("mlflow",)) as postgres:
        root = Path(tmp)
        data = configured(DataConfig, "data", root=str(write_random_dataset(root / "random", resolution=16, n_steps=12)),
                          log_fields=())
        cfg = tiny_cfg(steps=args.steps)
        cfg = replace(cfg, train=replace(cfg.train, val_every=args.steps // 4, checkpoint_every=args.steps // 4))
        params = write_params(root / "params.yaml", {"data": data, "train_autoencoder": cfg})
        port, log = free_port(), root / "server.log"
        uri = f"http://127.0.0.1:{port}"
        store, artifacts = f"{postgres}/mlflow", root / "artifacts"
        server = start_server(port, store, artifacts, log)
        client = MlflowClient(uri)
        started = time.monotonic()
        training = subprocess.Popen([str(Path(VENV_BIN) / "latentops"), "--params", str(params), "train-autoencoder",
                                     "--latent-channels", "4", "-q"], cwd=root,
                                    env={**tool_env(), "MLFLOW_TRACKING_URI": uri}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        run_id, logged = None, 0
        while logged < args.steps // 5:  # a fifth of the way in, the server goes down
            time.sleep(1.0)
            if training.poll() is not None:
                raise RuntimeError(f"training ended before the outage:\n{training.stdout.read()[-3000:]}")
            experiment = client.get_experiment_by_name("random/train_autoencoder")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs:
                run_id = runs[0].info.run_id
                logged = len(client.get_metric_history(run_id, "train/loss"))
        server.terminate()
        server.wait(timeout=60)
        down = time.time()
        print(f"server stopped {time.monotonic() - started:.0f} s into training, after {logged} steps logged")
        time.sleep(args.outage)
        server = start_server(port, store, artifacts, log)
        up = time.time()
        print(f"server back after {up - down:.1f} s")
        out, _ = training.communicate(timeout=1800)
        seconds = time.monotonic() - started
        history = client.get_metric_history(run_id, "train/loss")
        steps = [m.step for m in history]
        during = sum(down <= m.timestamp / 1000 <= up for m in history)
        run = client.get_run(run_id)
        server.terminate()
        server.wait(timeout=60)
    lost = args.steps - len(set(steps))
    print(f"\ntraining: exit status {training.returncode} after {seconds:.0f} s; run {run.info.status}")
    if training.returncode != 0:
        print(out[-3000:])
    print(f"{'metric steps':<40}{args.steps:>8}")
    print(f"{'  logged while the server was down':<40}{during:>8}")
    print(f"{'  on the server afterwards':<40}{len(set(steps)):>8}")
    print(f"{'  lost':<40}{lost:>8}")
    print(f"{'  duplicated':<40}{len(steps) - len(set(steps)):>8}")


if __name__ == "__main__":
    main()
