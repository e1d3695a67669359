"""``latentops tune``: Optuna studies of the paper's accuracy-cost trade-offs.

Two studies (``OBJECTIVES``), each an objective with one job:

- ``sampler`` (:class:`SamplerObjective`, cheap, no retraining): the azula sampler of one
  registered diffusion emulator: family (``tune.sampler.samplers``), Adams-Bashforth order
  (zab, vab) and number of denoising steps (log scale). Two objectives, both minimised:
  the validation rollout VRMSE (mean over fields and leads, physical units) and the wall
  time per trajectory (all members, decoded). The result is a Pareto front.
- ``compression`` (:class:`CompressionObjective`, expensive): latent channels, learning
  rate and width of a short-budget autoencoder; an emulator trained on its latents gives
  the objective, the validation rollout VRMSE. The autoencoder's validation loss is
  reported as it trains, so the pruner (median or Hyperband) stops bad trials early.

Storage (``tune.storage``): any SQLAlchemy URL (``sqlite:///optuna.db`` by default,
``postgresql://...`` for teams; trials keep a heartbeat, and one silent for twice
``tune.heartbeat`` is failed and retried), or ``journal:<file>``, a lock-protected append
log for parallel workers on one machine. ``--workers N`` runs N processes on the study;
more can join from other shells. A study aims at ``trials`` finished (complete or pruned)
trials: re-running the command resumes it, and a trial whose process died on this machine
is failed and queued again with its parameters.

Tracking: the study is a parent MLflow run in ``<dataset>/tune``, each trial a child run
with its params, its intermediate values as step metrics, its objectives, and its Optuna
state as a tag. At the end the parent gets the trials table, the Pareto-front (or
optimisation-history) and parameter-importance plots, and the best settings, which are
also written to ``tune.output/<study>.yaml``: a params file that ``latentops apply-params``
merges into ``params.yaml`` for ``dvc repro`` (the equivalent ``dvc exp run -S`` command
is printed too).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
import optuna
import sqlalchemy
import torch
import yaml
from mlflow.exceptions import MlflowException
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from models.kinds import emulator_kinds
from models.samplers import FAMILIES
from models.forecaster import Forecaster
from pipelines import plots
from pipelines.data.latent import TrajectoryWindows
from pipelines.data.latent import encode_trajectory
from pipelines.data.windows import WellWindows, trajectories
from pipelines.evaluation.scoring import Truth, score_forecaster
from pipelines.io import write_text
from pipelines.options import add_quiet, section
from pipelines.recipes import autoencoder as autoencoder_recipe
from pipelines.recipes import emulator as emulator_recipe
from pipelines.recipes.training import Hooks, train
from pipelines.serving.forecaster import ForecasterModel
from pipelines.settings.autoencoder import TrainAutoencoderConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import SamplerConfig, TrainEmulatorConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.settings.tune import CompressionStudyConfig, SamplerStudyConfig, TuneConfig
from pipelines.tracking import names
from pipelines.tracking import registry
from pipelines.tracking import runs as tracking
from pipelines.tracking.locks import store_lock

STAGE = "tune"
PARENT_RUN = "mlflow_parent_run_id"  # study user attribute: the study's MLflow run
WORKER = "worker"  # trial user attribute: host:pid of the process running it
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- storage


def open_storage(url: str, heartbeat: int = 60) -> BaseStorage:
    """``journal:<file>`` (a journal file, for parallel workers on one machine) or a
    SQLAlchemy URL (with trial heartbeats: a trial silent for ``2 heartbeat`` seconds is
    failed and retried with the same parameters)."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(f"tune.storage: {url!r} is neither a SQLAlchemy URL (sqlite:///optuna.db, "
                         "postgresql://user:password@host/db) nor journal:<file>")  # pragma: allowlist secret
    for attempt in range(1, 5):
        try:
            return _rdb_storage(url, heartbeat)
        except sqlalchemy.exc.IntegrityError:  # workers creating a new database's tables at once: one wins
            time.sleep(attempt)
    return _rdb_storage(url, heartbeat)  # the last try raises what it meets


def _rdb_storage(url: str, heartbeat: int) -> RDBStorage:
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))


def _safe_url(url: str) -> str:
    """``url`` without a password, for tags and messages."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}@{tail}"


def _this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(worker: str) -> bool:
    """Whether ``host:pid`` is a live process (processes on other hosts count as alive)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def recover_orphans(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail the running trials whose worker process on this machine has died, mark their
    MLflow runs failed, and queue each again with its parameters. Returns their numbers."""
    orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if not _alive(t.user_attrs.get(WORKER, ":0"))]
    client = tracking.configure()
    for trial in orphans:
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        # the parameters it had drawn are retried; any it had not drawn yet are sampled afresh
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            client.set_tag(run_id, "optuna.state", "FAIL")
            client.set_terminated(run_id, "FAILED")
    return [t.number for t in orphans]


# --------------------------------------------------------------------------- objectives


@dataclass
class Outcome:
    """A trial's objective values and the metrics logged beside them."""

    values: tuple[float, ...]
    metrics: dict[str, float]


@dataclass
class SamplerObjective:
    """Sampler family, order and steps of ``base`` (a diffusion forecaster), scored by
    rollouts on ``truth`` (the validation split). ``autoencoder_dir``: the model directory
    of ``base``'s autoencoder, which a registered trial bundles."""

    cfg: SamplerStudyConfig
    base: Forecaster
    autoencoder_dir: str | None
    truth: Truth
    directions = ("minimize", "minimize")
    names = ("vrmse", "seconds_per_trajectory")

    def sampler(self, params: dict[str, Any]) -> SamplerConfig:
        name = params["sampler"]
        return SamplerConfig(name, params.get("order", self.base.sampler.order) if FAMILIES[name].multistep else 1,
                             params["steps"])

    def __call__(self, trial: optuna.Trial) -> Outcome:
        name = trial.suggest_categorical("sampler", list(self.cfg.samplers))
        if FAMILIES[name].multistep:
            trial.suggest_int("order", *self.cfg.orders)
        trial.suggest_int("steps", *self.cfg.steps, log=True)
        forecaster = dataclasses.replace(self.base, sampler=self.sampler(trial.params))
        scores, _ = score_forecaster(forecaster, self.truth, self.cfg.score)
        summary = scores.headline(list(self.cfg.score.lead_windows))
        return Outcome((summary["vrmse_mean"], summary["seconds_per_trajectory"]),
                       {k.replace("/", "_"): v for k, v in summary.items()})

    def best_params(self, trial: FrozenTrial) -> dict[str, Any]:
        """The trial's settings as a ``params.yaml`` fragment."""
        sampler = dataclasses.asdict(self.sampler(trial.params))
        if not FAMILIES[sampler["name"]].multistep:
            del sampler["order"]  # meaningless for this family: keep the file's value
        return {"train_emulator": {"sampler": sampler}}


@dataclass
class CompressionObjective:
    """Latent channels, learning rate and width of an autoencoder trained for
    ``cfg.autoencoder_steps``, then an emulator (``cfg.kind``) for ``cfg.emulator_steps`` on
    its latents; objective: the emulator's validation rollout VRMSE. Nothing is registered."""

    cfg: CompressionStudyConfig
    autoencoder: TrainAutoencoderConfig
    emulator: TrainEmulatorConfig
    data: DataConfig
    directions = ("minimize",)
    names = ("vrmse",)

    # The data are read on a trial's first use, not when the objective is built: the
    # coordinator builds one only to write the chosen trial's settings (best_params).
    @cached_property
    def states(self) -> tuple[WellWindows, WellWindows]:
        """Single states of the train and valid splits, for the autoencoder."""
        return autoencoder_recipe.states(self.autoencoder, self.data)

    @cached_property
    def whole(self) -> dict[str, WellWindows]:
        return {split: trajectories(self.data, split) for split in ("train", "valid")}

    @cached_property
    def trajectories(self) -> dict[str, TrajectoryWindows]:
        """Normalised whole trajectories ``(N, T, C, H, W)`` of the train and valid splits."""
        window, stride = self.data.context + self.data.horizon, self.data.stride
        return {split: TrajectoryWindows.from_trajectories(w, window, stride) for split, w in self.whole.items()}

    @cached_property
    def truth(self) -> Truth:
        return Truth.from_windows(self.whole["valid"], self.cfg.score.trajectories, self.data.context)

    def settings(self, params: dict[str, Any]) -> TrainAutoencoderConfig:
        levels = len(self.autoencoder.model.widths)
        model = dataclasses.replace(self.autoencoder.model, widths=tuple(params["width"] * 2**i for i in range(levels)))
        train_cfg = dataclasses.replace(self.autoencoder.train, steps=self.cfg.autoencoder_steps,
                                        optim=dataclasses.replace(self.autoencoder.train.optim, lr=params["lr"]))
        return dataclasses.replace(self.autoencoder, model=model, train=train_cfg)

    def __call__(self, trial: optuna.Trial) -> Outcome:
        latent_channels = trial.suggest_categorical("latent_channels", list(self.cfg.latent_channels))
        trial.suggest_float("lr", *self.cfg.lr, log=True)
        trial.suggest_categorical("width", list(self.cfg.widths))
        cfg = self.settings(trial.params)
        train_set, valid_set = self.states
        model = autoencoder_recipe.build(cfg, len(train_set.channels), latent_channels)
        objective = autoencoder_recipe.ReconstructionObjective(cfg.loss, train_set.normalizer)

        def report(step: int, metrics: dict[str, float]) -> None:
            # The intermediate value is the validation loss (MSE of normalised states): the
            # physical VRMSE of an early autoencoder has a heavy tail (exp of log fields; 4.7e3
            # at step 100 in a trial that ended best), which would mislead the pruner.
            value = metrics["val/loss"]
            trial.report(value, step)
            mlflow.log_metrics({"trial/autoencoder_val_loss": value,
                                "trial/autoencoder_val_vrmse": metrics["val/vrmse"]}, step=step, synchronous=False)
            if trial.should_prune():
                raise optuna.TrialPruned(f"autoencoder validation loss {value:.4g} at step {step}")

        train(model, objective, train_set, valid_set, cfg.train, hooks=Hooks(on_validation=report), progress=False)
        model.eval()
        model.cpu()
        window, stride = self.data.context + self.data.horizon, self.data.stride
        latents = {split: TrajectoryWindows(torch.stack([encode_trajectory(model, x.movedim(1, 0), 64)
                                                         for x in windows.states]), windows.cond, window, stride)
                   for split, windows in self.trajectories.items()}  # (N, T, c, h, w)
        emulator_cfg = dataclasses.replace(self.emulator.train, steps=self.cfg.emulator_steps)
        emulator, arguments = emulator_recipe.build(self.cfg.kind, latent_channels, self.truth.cond.shape[1],
                                                   self.emulator.latent, emulator_cfg.seed)
        train(emulator, emulator_recipe.objective(self.emulator), latents["train"], latents["valid"], emulator_cfg,
              progress=False)
        forecaster = Forecaster(self.cfg.kind, emulator.eval(), arguments, train_set.normalizer, model, window, stride,
                                self.emulator.overlap, self.emulator.sampler)
        scores, _ = score_forecaster(forecaster, self.truth, self.cfg.score)
        summary = scores.headline(list(self.cfg.score.lead_windows))
        return Outcome((summary["vrmse_mean"],), {k.replace("/", "_"): v for k, v in summary.items()}
                       | {"compression_rate": float(model.compression_rate)})

    def best_params(self, trial: FrozenTrial) -> dict[str, Any]:
        cfg = self.settings(trial.params)
        return {"train_autoencoder": {"latent_channels": [trial.params["latent_channels"]],
                                      "model": {"widths": list(cfg.model.widths)},
                                      "train": {"optim": {"lr": float(f"{trial.params['lr']:.3g}")}}}}


Objective = SamplerObjective | CompressionObjective


@dataclass(frozen=True)
class Job:
    """Everything a worker process needs to rebuild the objective (picklable)."""

    study: str  # sampler or compression
    tune: TuneConfig
    data: DataConfig
    autoencoder: TrainAutoencoderConfig
    emulator: TrainEmulatorConfig
    cache: CacheLatentsConfig
    version: str | None = None  # sampler study: the registered version (resolved)


def _base_forecaster(dataset: str, version: str) -> tuple[Forecaster, str | None]:
    """Registered emulator ``version`` as a forecaster and its autoencoder's model directory."""
    name = names.emulator_name(dataset)
    model = registry.load_pyfunc(f"models:/{name}/{version}").unwrap_python_model()
    assert isinstance(model, ForecasterModel)
    return model.forecaster, model.autoencoder_dir


def resolve_version(dataset: str, version: str) -> str:
    """A version number, an alias (``production``) or ``latest``: the newest version of
    ``<dataset>-emulator`` of a stochastic kind (a sampled one: diffusion)."""
    client = tracking.configure()
    name = names.emulator_name(dataset)
    if version == "latest":
        found = [int(v.version) for v in client.search_model_versions(f"name='{name}'")
                 if v.tags.get("kind") in emulator_kinds(stochastic=True)]
        if not found:
            raise ValueError(f"{name} has no diffusion version in the Model Registry at {tracking.tracking_uri()}; "
                             "train one (latentops train-emulator --kind diffusion) or set tune.sampler.version")
        return str(max(found))
    try:
        found = client.get_model_version(name, version) if version.isdigit() else \
            client.get_model_version_by_alias(name, version)
    except MlflowException:
        raise ValueError(f"tune.sampler.version: {name} has no version or alias {version!r}") from None
    if found.tags.get("kind") not in emulator_kinds(stochastic=True):
        raise ValueError(f"tune.sampler.version: {name} version {found.version} is a {found.tags.get('kind')} "
                         "emulator; the sampler study tunes diffusion emulators")
    return str(found.version)


def build_objective(job: Job) -> Objective:
    if job.study == "sampler":
        truth = Truth.load(job.data, job.tune.sampler.score.split, job.tune.sampler.score.trajectories)
        return SamplerObjective(job.tune.sampler, *_base_forecaster(truth.dataset, str(job.version)), truth)
    return CompressionObjective(job.tune.compression, job.autoencoder, job.emulator, job.data)


#: Objective class per study.
OBJECTIVES: dict[str, type[SamplerObjective] | type[CompressionObjective]] = {
    "sampler": SamplerObjective,
    "compression": CompressionObjective,
}

PRUNERS: dict[str, Callable[[CompressionStudyConfig, int], optuna.pruners.BasePruner]] = {
    "median": lambda cfg, every: optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, interval_steps=every),
    "hyperband": lambda cfg, every: optuna.pruners.HyperbandPruner(min_resource=every,
                                                                    max_resource=cfg.autoencoder_steps),
    "none": lambda cfg, every: optuna.pruners.NopPruner(),
}


def _pruner(job: Job) -> optuna.pruners.BasePruner:
    if job.study == "sampler":
        return optuna.pruners.NopPruner()  # multi-objective studies cannot prune
    return PRUNERS[job.tune.compression.pruner](job.tune.compression, job.autoencoder.train.val_every)


# --------------------------------------------------------------------------- workers


def tracked(objective: Objective, study_name: str, parent_run_id: str) -> Callable[[optuna.Trial], Any]:
    """``objective`` as an Optuna objective whose every trial is a child MLflow run of the
    study's run: params, intermediate values (step metrics), objectives, state."""

    def run(trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr(WORKER, _this_worker())
        with tracking.start_child_run(parent_run_id, f"trial {trial.number}",
                                      {"optuna.study": study_name, "optuna.trial": str(trial.number)}) as active:
            trial.set_user_attr("mlflow_run_id", active.info.run_id)
            try:
                outcome = objective(trial)
            except optuna.TrialPruned:
                mlflow.log_params(trial.params)
                mlflow.set_tag("optuna.state", "PRUNED")
                raise
            mlflow.log_params(trial.params)
            mlflow.log_metrics({**outcome.metrics, **{f"objective/{n}": v for n, v in zip(objective.names,
                                                                                         outcome.values)}})
            mlflow.set_tag("optuna.state", "COMPLETE")
        return outcome.values if len(outcome.values) > 1 else outcome.values[0]

    return run


def work(job: Job, study_name: str, parent_run_id: str, trials: int, index: int = 0, threads: int | None = None,
         progress: bool = False) -> None:
    """One worker: run up to ``trials`` trials of the study (fewer when the study reaches
    its target meanwhile). ``index`` seeds its Optuna sampler apart from other workers'."""
    if threads:
        torch.set_num_threads(threads)
    storage = open_storage(job.tune.storage, job.tune.heartbeat)
    target = getattr(job.tune, job.study).trials
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=job.tune.seed + index),
                              pruner=_pruner(job))
    objective = build_objective(job)
    study.optimize(tracked(objective, study_name, parent_run_id), n_trials=trials,
                   callbacks=[optuna.study.MaxTrialsCallback(target, states=FINISHED)],
                   show_progress_bar=progress, gc_after_trial=True)


def _spawned(job: Job, study_name: str, parent_run_id: str, trials: int, index: int, threads: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work(job, study_name, parent_run_id, trials, index, threads)


def _shares(total: int, workers: int) -> list[int]:
    """``total`` trials split as evenly as possible over ``workers``."""
    return [total // workers + (i < total % workers) for i in range(workers)]


# --------------------------------------------------------------------------- the study


@dataclass
class Result:
    """What :func:`run` returns."""

    study: optuna.Study
    parent_run_id: str
    chosen: FrozenTrial | None
    params_file: Path | None
    front: list[FrozenTrial]
    registered: str | None = None  # ``name/version`` with --register


def study_name(job: Job, dataset: str) -> str:
    return f"{dataset}-sampler-v{job.version}" if job.study == "sampler" else f"{dataset}-compression"


def chosen_trial(study: optuna.Study, number: int | None) -> FrozenTrial | None:
    """Trial ``number`` (complete), else the best: the most accurate of the Pareto front."""
    if number is not None:
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if trial is None or trial.state != TrialState.COMPLETE:
            complete = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
            raise ValueError(f"--trial {number}: not a complete trial of {study.study_name}; "
                             f"complete trials: {complete}")
        return trial
    front = study.best_trials
    return min(front, key=lambda t: t.values[0]) if front else None


def run(job: Job, workers: int = 1, name: str | None = None, trial: int | None = None, register: bool = False,
        progress: bool = True) -> Result:
    """Create or resume the study, run it with ``workers`` processes until it has its
    target of finished trials, then record the summary, write the best params file, and
    with ``register`` register the chosen trial (sampler study)."""
    if job.study not in OBJECTIVES:
        raise ValueError(f"unknown study {job.study!r}; valid studies are {list(OBJECTIVES)}")
    if register and job.study != "sampler":
        raise ValueError("--register applies to the sampler study (the compression study trains no kept model)")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    windows = trajectories(job.data, "valid")
    dataset = windows.dataset_name
    if job.study == "sampler":
        job = dataclasses.replace(job, version=resolve_version(dataset, job.tune.sampler.version))
    name = name or study_name(job, dataset)
    storage = open_storage(job.tune.storage, job.tune.heartbeat)
    directions = list(OBJECTIVES[job.study].directions)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True)
    if list(study.directions) != [optuna.study.StudyDirection.MINIMIZE] * len(directions):
        raise ValueError(f"study {name} in {_safe_url(job.tune.storage)} has other objectives; pass another --name")
    retried = recover_orphans(study, storage)
    if retried:
        log.warning("trials %s had lost their worker process: failed and queued again", retried)
    cfg = getattr(job.tune, job.study)
    tags = {"optuna.study": name, "optuna.storage": _safe_url(job.tune.storage), "optuna.kind": job.study}
    if job.version:
        tags["tuned_version"] = job.version
    config = {STAGE: job.tune, "data": job.data}
    run_id = study.user_attrs.get(PARENT_RUN)
    if run_id is None:
        with store_lock(STAGE):  # workers starting one study at once: the first makes its one parent run
            run_id = study.user_attrs.get(PARENT_RUN)
            if run_id is None:
                with tracking.start_run(STAGE, dataset, config, job.data.root, run_name=name, tags=tags,
                                        system_metrics=False) as parent:
                    run_id = parent.info.run_id
                    study.set_user_attr(PARENT_RUN, run_id)
    with tracking.start_run(STAGE, dataset, config, job.data.root, run_name=name, run_id=run_id, tags=tags,
                            system_metrics=False) as parent:
        if job.version:
            study.set_user_attr("version", job.version)
        remaining = cfg.trials - len(study.get_trials(deepcopy=False, states=FINISHED))
        if remaining > 0:
            _optimize(job, name, parent.info.run_id, remaining, workers, progress)
        chosen = chosen_trial(study, trial)
        objective = None if chosen is None else build_objective(job)
        params_file = None if chosen is None else write_best(job, study, chosen, objective.best_params(chosen))
        _summarize(study, job, chosen, params_file)
        registered = None
        if register and chosen is not None:
            registered = register_trial(job, study, chosen, objective, parent.info.run_id)
    return Result(study, parent.info.run_id, chosen, params_file, study.best_trials, registered)


def _optimize(job: Job, name: str, parent_run_id: str, trials: int, workers: int, progress: bool) -> None:
    if workers == 1:
        work(job, name, parent_run_id, trials, progress=progress)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no forked torch or MLflow state
    processes = [context.Process(target=_spawned, args=(job, name, parent_run_id, share, index, threads))
                 for index, share in enumerate(_shares(trials, workers)) if share]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} tune worker(s) failed (exit codes {failed}); see their output above. "
                           "Re-run the command to resume the study.")


# --------------------------------------------------------------------------- results


def write_best(job: Job, study: optuna.Study, trial: FrozenTrial, params: dict[str, Any]) -> Path:
    """``tune.output/<study>.yaml``: the trial's settings as a params file."""
    path = Path(job.tune.output) / f"{job.study}.yaml"
    values = ", ".join(f"{n} {v:.4g}" for n, v in zip(OBJECTIVES[job.study].names, trial.values))
    overrides = " ".join(f"-S {key}={json_value(value)}" for key, value in _dotted(params))
    header = (f"# Best settings of Optuna study {study.study_name} (trial {trial.number}: {values}),\n"
              f"# storage {_safe_url(job.tune.storage)}. Apply with\n"
              f"#   latentops apply-params {path} && dvc repro\n"
              f"# or try them as a DVC experiment:\n#   dvc exp run {overrides}\n")
    write_text(path, header + yaml.safe_dump(params, sort_keys=False))
    return path


def json_value(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def _dotted(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _summarize(study: optuna.Study, job: Job, chosen: FrozenTrial | None, params_file: Path | None) -> None:
    """The parent run's summary: trials table, plots, the chosen trial and its params file."""
    names = OBJECTIVES[job.study].names
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    mlflow.log_metrics({f"trials_{state}": float(n) for state, n in counts.items()})
    frame = study.trials_dataframe()
    mlflow.log_text(frame.to_csv(index=False), "study/trials.csv")
    front = study.best_trials
    mlflow.set_tag("optuna.front", ",".join(str(t.number) for t in front))
    if chosen is not None:
        mlflow.set_tag("optuna.chosen_trial", str(chosen.number))
        mlflow.log_metrics({f"best/{n}": v for n, v in zip(names, chosen.values)})
    if params_file is not None:
        mlflow.log_artifact(str(params_file), "study")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return
    if len(names) > 1:
        tracking.log_figure(plots.pareto_front([t.values for t in complete], [t.values for t in front],
                                               [t.number for t in complete], names, study.study_name),
                            "plots/pareto_front.png")
    else:
        tracking.log_figure(plots.curves({"objective": ([t.number for t in complete], [t.values[0] for t in complete])},
                                         study.study_name, names[0], xlabel="trial"), "plots/history.png")
    importances = _importances(study, names)
    if importances:
        params = sorted({p for values in importances.values() for p in values})
        series = {name: [values.get(p, 0.0) for p in params] for name, values in importances.items()}
        tracking.log_figure(plots.grouped_bars(params, series, f"{study.study_name}: parameter importance (fANOVA)",
                                               "importance", log=False), "plots/param_importances.png")


def _importances(study: optuna.Study, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Parameter importance per objective (needs two complete trials with distinct params)."""
    out = {}
    for i, name in enumerate(names):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[name] = optuna.importance.get_param_importances(study, target=lambda t, i=i: t.values[i])
        except (ValueError, RuntimeError) as error:
            log.info("no parameter importance for %s: %s", name, error)
    return {k: v for k, v in out.items() if v}


def register_trial(job: Job, study: optuna.Study, trial: FrozenTrial, objective: Objective, parent_run_id: str) -> str:
    """Register the tuned version's weights with ``trial``'s sampler as a new version of
    ``<dataset>-emulator``, tagged with where it came from. Returns ``name/version``."""
    assert isinstance(objective, SamplerObjective)
    truth = objective.truth
    forecaster = dataclasses.replace(objective.base, sampler=objective.sampler(trial.params))
    client = tracking.configure()
    name = names.emulator_name(truth.dataset)
    base_tags = client.get_model_version(name, str(job.version)).tags
    keep = ("kind", "latent_channels", "compression_rate", "autoencoder_version", "data_hash")
    example = {"states": truth.initial(forecaster.stride)[:1].permute(0, 2, 3, 4, 1).numpy(),  # (1, K, H, W, C)
               "cond": truth.cond[:1].numpy()}
    with tracking.start_child_run(parent_run_id, f"register trial {trial.number}",
                                  {"optuna.study": study.study_name, "optuna.trial": str(trial.number)}) as active:
        version = registry.register_forecaster(
            forecaster, objective.autoencoder_dir, example, truth.dataset,
            {**{k: base_tags[k] for k in keep if k in base_tags}, "run_id": active.info.run_id,
             "tuned_from": str(job.version), "optuna.study": study.study_name, "optuna.trial": str(trial.number),
             "sampler": f"{forecaster.sampler.name}/{forecaster.sampler.order}/{forecaster.sampler.steps}"})
    return f"{version.name}/{version.version}"


# --------------------------------------------------------------------------- latentops tune


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Optuna studies, tracked in MLflow (a parent run per study, a child run per trial). "
        "'sampler': sampler family, order and steps of a registered diffusion emulator; objectives "
        "validation VRMSE and seconds per trajectory; reports the Pareto front. 'compression': latent "
        "channels, learning rate and width of a short-budget autoencoder, judged by an emulator trained on "
        "its latents, with pruning. Re-running the command resumes the study up to its number of trials. "
        "The chosen trial's settings are written to tune.output/<study>.yaml for `latentops apply-params`.")
    add_quiet(parser)
    parser.add_argument("--study", required=True, choices=["sampler", "compression"], help="which study")
    parser.add_argument("--trials", type=int, help="finished trials to reach (default: tune.<study>.trials)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on the study (default: %(default)s)")
    parser.add_argument("--storage", help="Optuna storage: SQLAlchemy URL or journal:<file> (default: tune.storage)")
    parser.add_argument("--name", help="study name (default: <dataset>-sampler-v<version> or <dataset>-compression)")
    parser.add_argument("--version", help="sampler study: registered emulator version or alias (default: "
                                          "tune.sampler.version; 'latest' = newest diffusion version)")
    parser.add_argument("--trial", type=int, help="the trial to write out (and register); default: the best, or the "
                                                  "most accurate of the Pareto front")
    parser.add_argument("--register", action="store_true", help="sampler study: register the chosen trial as a new "
                                                                "emulator version (same weights, its sampler settings)")


def main(args: argparse.Namespace) -> int:
    overrides = {key: value for key, value in (("storage", args.storage), (f"{args.study}.trials", args.trials),
                                               ("sampler.version", args.version)) if value is not None}
    job = Job(args.study, section(args, TuneConfig, "tune", overrides),
              section(args, DataConfig, "data"),
              section(args, TrainAutoencoderConfig, "train_autoencoder"),
              section(args, TrainEmulatorConfig, "train_emulator"),
              section(args, CacheLatentsConfig, "cache_latents"))
    result = run(job, workers=args.workers, name=args.name, trial=args.trial, register=args.register,
                 progress=not args.quiet)
    study = result.study
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    print(f"tune: study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
          + f"; MLflow run {result.parent_run_id}")
    names = OBJECTIVES[args.study].names
    print(("Pareto front" if len(names) > 1 else "best trial") + ":")
    for t in sorted(result.front, key=lambda t: t.values[0]):
        values = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, t.values))
        print(f"  trial {t.number}: {values}; {t.params}")
    if result.params_file is not None:
        print(f"wrote {result.params_file} (trial {result.chosen.number}); apply it with "
              f"`latentops apply-params {result.params_file}`, then `dvc repro`")
    if result.registered:
        print(f"registered trial {result.chosen.number} as {result.registered}; `latentops evaluate` scores it")
    return 0
