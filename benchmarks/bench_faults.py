"""Fault campaign: SIGKILL each stage at seeded random points, rerun it, and check that
nothing was lost. Prints one row per stage (the table of issue 18's closing note).

On a tiny copy of the project (``tests.pipeline.conftest.tiny_project`` with one latent size,
c = 4: git, DVC, a SQLite MLflow store, Optuna on SQLite) the pipeline up to ``evaluate`` is
built once. Then, per stage, from a snapshot of that project:

1. **reference**: the stage forced to run again (``dvc repro -f -s STAGE``; for ``tune``
   ``latentops tune``), uninterrupted; its outputs (every ``outs`` entry of ``dvc.lock``)
   are recorded by content;
2. **k kills**: the snapshot restored, the same run started and, after a seeded random
   fraction (uniform in [0.05, 0.95]) of the reference's duration, the stage's own process
   tree SIGKILLed (the ``latentops`` command DVC runs, as the out-of-memory killer would
   pick it; DVC itself sees its command die), the whole group if DVC has not started it yet;
   then checked:
   - *partial*: an output present under its final name whose content differs from the
     reference's (atomic outputs leave none);
   - *dvc truthful*: ``dvc status STAGE`` says up to date only if every output equals the
     reference's;
   - *rerun*: ``dvc repro -s STAGE`` (``latentops tune`` again) succeeds and its outputs equal
     the reference's (*data lost*: an output that does not);
   - *runs RUNNING*: MLflow runs still ``RUNNING`` after the rerun: 0 where the rerun ran the
     stage (it marks the killed process's runs ``KILLED``), the orphans where DVC restored
     the outputs from its run cache instead; *after next*: those still ``RUNNING`` once the
     next ``latentops`` command (``promote --dry-run``) has run (must be 0);
   - *extra versions*: model versions beyond the reference's after the rerun (a killed run's
     registration made twice).

Content, not bytes, is compared where bytes carry run ids or times: HDF5 by datasets and
attributes, JSON/YAML without timing, run id, version and URI entries, Markdown reports
without their wall-time columns, a model directory by
every file but those naming runs and versions (``MLmodel``, ``registered.json``,
``registered_model_meta``); figures are
not compared. ``evaluate`` starts each run with no version scored (its evaluation tags
removed), so that a kill lands in real scoring. ``tune``'s objectives include wall times, so
two uninterrupted studies differ: a tune rerun must keep every trial finished before the kill
(parameters and values) and reach the target; a tuned parameters file unlike the reference's
is noted, not counted as lost.

    .venv/bin/python benchmarks/bench_faults.py [--kills 5] [--seed 0] [--stages simulate,evaluate]

About 40 minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import mlflow
import optuna
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import tool_env  # noqa: E402  (the repository is on the path only now)
from tests.pipeline.conftest import tiny_project  # noqa: E402

#: campaign name -> DVC stage (``None``: not a DVC stage, run by its command)
STAGES: dict[str, str | None] = {
    "simulate": "simulate",
    "train_autoencoder": "train_autoencoder@4",
    "cache_latents": "cache_latents@4",
    "train_emulator": "train_emulator@solver-4",
    "register": "register",
    "evaluate": "evaluate",
    "tune": None,
}
VOLATILE = ("seconds", "time", "run_id", "version", "uri", "user", "registered", "date", "path")
TUNE = ("tune", "--study", "sampler", "--name", "faults", "-q")
RWLOCK = ".dvc/tmp/rwlock"
VERSIONED = ("MLmodel", "registered.json", "registered_model_meta")  # a model directory's files naming runs, versions


# --------------------------------------------------------------------------- content


def _stable(value: object) -> object:
    """``value`` without the entries that differ between identical runs (times, ids, URIs)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not any(word in str(k).lower() for word in VOLATILE)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _without_timings(markdown: str) -> str:
    """``markdown`` without the table columns of wall times (headers ``s / ...``)."""
    kept, timed = [], set()
    for line in markdown.splitlines():
        cells = line.split("|")
        if line.startswith("|") and any(cell.strip().startswith("s / ") for cell in cells):
            timed = {i for i, cell in enumerate(cells) if cell.strip().startswith("s / ")}
        elif not line.startswith("|"):
            timed = set()
        kept.append("|".join(cell for i, cell in enumerate(cells) if i not in timed))
    return "\n".join(kept)


def _file_digest(path: Path) -> str | None:
    """A digest of what ``path`` holds (``None``: not compared)."""
    if path.suffix in (".png", ".svg", ".log") or path.name in VERSIONED:
        return None
    if path.suffix == ".h5":
        digest = hashlib.sha256()
        with h5py.File(path, "r") as f:
            def visit(name: str, item: object) -> None:
                digest.update(name.encode())
                digest.update(repr(sorted((k, repr(v)) for k, v in item.attrs.items())).encode())
                if isinstance(item, h5py.Dataset):
                    digest.update(item[()].tobytes() if item.shape != () else repr(item[()]).encode())
            visit("/", f)
            f.visititems(visit)
        return digest.hexdigest()
    if path.suffix == ".md":
        return hashlib.sha256(_without_timings(path.read_text()).encode()).hexdigest()
    if path.suffix in (".json", ".yaml", ".yml"):
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return hashlib.sha256(json.dumps(_stable(data), sort_keys=True, default=str).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content(root: Path, outputs: list[str]) -> dict[str, str | None]:
    """Relative path -> digest of every file of ``outputs`` under ``root`` (a missing output:
    ``{out: None}`` under the key ``out + ' (missing)'``)."""
    found: dict[str, str | None] = {}
    for out in outputs:
        path = root / out
        if not path.exists():
            found[f"{out} (missing)"] = None
            continue
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if (digest := _file_digest(file)) is not None:
                found[str(file.relative_to(root))] = digest
    return found


def differs(now: dict[str, str | None], reference: dict[str, str | None]) -> list[str]:
    """The entries of ``now`` that are present and not as in ``reference``."""
    return [k for k, v in now.items() if not k.endswith("(missing)") and reference.get(k) != v]


# --------------------------------------------------------------------------- the project


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def command(stage: str | None, force: bool) -> list[str]:
    if stage is None:
        return ["latentops", *TUNE]
    return ["dvc", "repro", "-s", *(["-f"] if force else []), stage]


def outputs(project: Path, stage: str | None) -> list[str]:
    if stage is None:
        return ["tuned/sampler.yaml"]
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]
    return [out["path"] for out in lock.get("outs", [])]


def unscore(project: Path) -> None:
    """Remove every version's evaluation tags, as if nothing had been scored yet."""
    from pipelines.tracking.cards import EVAL

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            for key in version.tags:
                if key.startswith(EVAL):
                    client.delete_model_version_tag(model.name, version.version, key)


def model_versions(project: Path) -> int:
    """How many model versions the project's registry holds."""
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    return sum(len(client.search_model_versions(f"name = '{m.name}'")) for m in client.search_registered_models())


def running_runs(project: Path) -> int:
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=10000))


def study_trials(project: Path) -> dict[int, tuple[str, tuple[float, ...]]]:
    """The finished trials of the campaign's study (none before it exists): number ->
    (parameters, values)."""
    storage = f"sqlite:///{project / 'optuna.db'}"
    try:
        study = optuna.load_study(study_name="faults", storage=storage)
    except KeyError:
        return {}
    return {t.number: (json.dumps(t.params, sort_keys=True), tuple(t.values)) for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE}


def kill_stage(process: subprocess.Popen) -> None:
    """SIGKILL the ``latentops`` command under ``process`` (a ``dvc repro``) with its children,
    or, before DVC has started it (or without DVC), ``process``'s whole group."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    stages = [p for p in tree if _is_latentops(p)]
    if not stages or stages[0].pid == process.pid:
        os.killpg(process.pid, signal.SIGKILL)
        return
    victims = [stages[0], *stages[0].children(recursive=True)]
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGKILL)


def _is_latentops(process: psutil.Process) -> bool:
    try:
        return any(Path(part).name == "latentops" for part in process.cmdline()[:2])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def restore(snapshot: Path, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(snapshot, work, symlinks=True)
    return work


@dataclass
class Row:
    stage: str
    tried: int = 0
    survived: int = 0
    partial: int = 0
    dvc_untruthful: int = 0
    lost: int = 0
    running: int = 0
    running_later: int = 0
    extra_versions: int = 0
    notes: list[str] = field(default_factory=list)


def prepare(name: str, stage: str | None, project: Path) -> None:
    if name == "evaluate":
        unscore(project)
    if stage is None:
        (project / "optuna.db").unlink(missing_ok=True)  # a fresh study each run
        shutil.rmtree(project / "tuned", ignore_errors=True)


def campaign(name: str, stage: str | None, snapshot: Path, scratch: Path, kills: int, rng: random.Random) -> Row:
    row = Row(name)
    work = restore(snapshot, scratch / f"{name}-reference")  # a path of its own: MLflow caches a store's engine
    prepare(name, stage, work)
    started = time.monotonic()
    run(command(stage, force=True), work)
    duration = time.monotonic() - started
    outs = outputs(work, stage)
    reference = content(work, outs)
    target = len(study_trials(work)) if stage is None else 0
    reference_versions = model_versions(work)
    print(f"  {name}: reference run {duration:.1f} s, outputs {outs}", flush=True)
    for k in range(kills):
        work = restore(snapshot, scratch / f"{name}-{k}")
        prepare(name, stage, work)
        delay = rng.uniform(0.05, 0.95) * duration
        process = subprocess.Popen(command(stage, force=True), cwd=work, env=tool_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        finished_first = process.poll() is not None
        if not finished_first:
            kill_stage(process)
        process.wait()
        if (work / RWLOCK).exists() and not _readable_json(work / RWLOCK):
            row.notes.append(f"kill {k}: DVC's {RWLOCK} was left corrupt (DVC itself was killed); removed, as DVC says")
            (work / RWLOCK).unlink()
        row.tried += 1
        after_kill = content(work, outs)
        bad = differs(after_kill, reference)
        row.partial += bool(bad)
        if stage is not None:
            status = json.loads(run(["dvc", "status", "--json", stage], work).stdout or "{}")
            complete = not bad and not any(k.endswith("(missing)") for k in after_kill)
            if not status and not complete:
                row.dvc_untruthful += 1
                row.notes.append(f"kill {k}: dvc status clean with outputs {bad or 'missing'}")
        finished = study_trials(work) if stage is None else {}
        rerun = run(command(stage, force=False), work, check=False)
        final = content(work, outs)
        lost = [key for key in reference if final.get(key) != reference[key]]
        if stage is None:  # a study's values hold wall times: its trials, not a reference's, must survive
            lost = [f"trial {n}" for n, trial in finished.items() if study_trials(work).get(n) != trial]
            if len(study_trials(work)) < target:
                lost.append(f"{target - len(study_trials(work))} trials short of the target")
            if final != reference:
                row.notes.append(f"kill {k}: the tuned parameters differ from the uninterrupted run's (the study "
                                 "resumed with another sampler state)")
        if stage is not None and json.loads(run(["dvc", "status", "--json", stage], work).stdout or "{}"):
            row.dvc_untruthful += 1
            row.notes.append(f"kill {k}: dvc status not clean after the rerun")
        running, extra = running_runs(work), max(0, model_versions(work) - reference_versions)
        if running:  # DVC served the rerun from its run cache: the next latentops command marks the orphans
            run(["latentops", "promote", "--dry-run"], work, check=False)
            row.running_later += running_runs(work)
        row.lost += bool(lost) or rerun.returncode != 0
        row.running += running
        row.extra_versions += extra
        row.survived += rerun.returncode == 0 and not lost
        what = "finished before the kill" if finished_first else f"killed at {delay:.1f} s"
        print(f"  {name} #{k}: {what}; partial {bad or 'none'}; rerun rc {rerun.returncode}; "
              f"lost {lost or 'nothing'}; runs RUNNING {running}; extra versions {extra}", flush=True)
        if rerun.returncode != 0:
            row.notes.append(f"kill {k}: rerun failed: {(rerun.stderr or rerun.stdout)[-400:]}")
        shutil.rmtree(work)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5, help="kills per stage (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points (default 0)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {list(STAGES)}")
    args = parser.parse_args()
    chosen = args.stages.split(",")
    unknown = sorted(set(chosen) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {unknown}; valid: {list(STAGES)}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="latentops-faults-") as tmp:
        scratch = Path(tmp)
        snapshot = tiny_project(scratch / "snapshot")
        params = yaml.safe_load((snapshot / "params.yaml").read_text())
        params["train_autoencoder"]["latent_channels"] = [4]
        params["tune"]["storage"] = "sqlite:///optuna.db"
        params["tune"]["sampler"]["trials"] = 4
        (snapshot / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        started = time.monotonic()
        print("building the tiny pipeline up to evaluate once (dvc repro evaluate) ...", flush=True)
        run(["dvc", "repro", "evaluate"], snapshot)
        print(f"built in {time.monotonic() - started:.0f} s", flush=True)
        rows = [campaign(name, STAGES[name], snapshot, scratch, args.kills, rng) for name in chosen]
    print(f"\n{'stage':<18}{'tried':>6}{'survived':>9}{'partial':>8}{'dvc wrong':>10}{'data lost':>10}"
          f"{'RUNNING':>8}{'after next':>11}{'extra versions':>15}")
    for row in rows:
        print(f"{row.stage:<18}{row.tried:>6}{row.survived:>9}{row.partial:>8}{row.dvc_untruthful:>10}"
              f"{row.lost:>10}{row.running:>8}{row.running_later:>11}{row.extra_versions:>15}")
    for row in rows:
        for note in row.notes:
            print(f"{row.stage}: {note}")


if __name__ == "__main__":
    main()
