"""Model cards: what every registered version says about itself in the Model Registry.

A version carries two things a person reads in the MLflow UI:

- a few **tags**, what one scans in the list of versions: ``kind``, ``compression_rate``,
  the headline score with its interval (``eval.<metric>_<window>``), the evaluation status
  (``eval.status``) and the alias history (``promotion.history``); and the tags the code reads
  back (``eval.key``, ``eval.run_id``, ``promotion.decision``, ``promotion.run_id``, lineage);
- a **card**, its markdown description, shown on the version's page: what it is (kind,
  compression rate, size), what it came from (data hash, git commit, autoencoder or emulator
  version, training run), its scorecard (the headline numbers of every lead window with
  their bootstrap intervals, beside the baselines scored on the same trajectories), its
  promotion decisions and how to load it.

The card is rendered from what the store holds (the version's tags, its training run, its
evaluation run's ``scorecard.json`` and ``baselines.json``, its promote run), so any process
can render it again (:func:`refresh`): registration writes the first one, ``evaluate`` rewrites
it when it scores the version and ``promote`` when it decides about it. The full scorecard
(every metric per field and band) is the evaluation run's ``scorecard.json``
(:func:`scorecard`), never a tag.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from models.kinds import AUTOENCODER, KINDS, OBS_ENCODER
from pipelines.evaluation.scorecard import AE_TRUTH, HEADLINE, Scorecard

__all__ = ["ASSIMILATOR", "BASELINES_FILE", "EVAL", "LIMIT", "OBS_ENCODER", "PROMOTION", "SCORECARD_FILE",
           "baselines", "evaluation_tags", "history", "refresh", "render", "scorecard"]

EVAL = "eval."  # prefix of the evaluation tags
PROMOTION = "promotion."  # prefix of the promotion tags
SCORECARD_FILE = "scorecard.json"  # in the evaluation run: the whole card
BASELINES_FILE = "baselines.json"  # in the evaluation run: the baselines' cards on the same trajectories
ASSIMILATOR = "assimilator"  # the kind of every <dataset>-assimilator version
LIMIT = 5000  # characters of a version description the stores keep (PostgreSQL: varchar(5000))
HISTORY_LIMIT = 500  # characters of promotion.history kept (the oldest moves drop first)
_WINDOW = re.compile(r"^(?P<metric>.+)_(?P<window>\d+-\d+)$")
#: How the card names the headline metrics.
METRIC_NAMES = {"vrmse": "VRMSE of the ensemble mean", "vrmse_members": "VRMSE, member average",
                "crps": "CRPS (fair)", "spread_skill": "spread-skill ratio",
                "vrmse_mean": "VRMSE of the ensemble mean, every lead", "seconds_per_cycle": "seconds per cycle"}


@dataclass(frozen=True)
class Usage:
    """What a kind of version is, in words, and how to load and use it (``{uri}``, ``{version}``
    and ``{name}`` are filled in)."""

    what: str
    python: str
    command: str


_EMULATOR = Usage(
    "an emulator that forecasts physical states from the first ones; a pyfunc bundling its autoencoder, the "
    "normalisation and the sampler settings",
    'model = mlflow.pyfunc.load_model("{uri}")\n'
    'forecast = model.predict({{"states": states, "cond": cond}},  # (1, K, H, W, C), (1, P)\n'
    '                         params={{"horizon": 25, "members": 4}})  # (1, M, K + 25, H, W, C)',
    "latentops forecast --model {version} --horizon 25 --members 4")

#: One row per kind: what it is and how to load it.
USAGE: dict[str, Usage] = {
    AUTOENCODER: Usage(
        "an autoencoder that maps normalised states to latents and back; weights as safetensors, rebuilt from "
        "`models/`",
        'model = mlflow.pyfunc.load_model("{uri}")\n'
        "reconstruction = model.predict(states)  # normalised states (B, C, H, W) -> D(E(x))",
        "latentops cache-latents --latent-channels {latent_channels} --version {version}"),
    **{k.name: _EMULATOR for k in KINDS if k.emulator},
    OBS_ENCODER: Usage(
        "an observation encoder that estimates latents and hidden conditioning from sparse sensor readings, "
        "for LD-EnSF's encoder route",
        'model = mlflow.pyfunc.load_model("{uri}")\n'
        'estimates = model.predict(readings)  # {{"latents": ..., "parameters": ...}}',
        "latentops register-assimilator --name <an assimilator of this layout>"),
    ASSIMILATOR: Usage(
        "an assimilator that runs the latent ensemble score filter (LD-EnSF) on a bundled emulator, "
        "assimilating sparse, noisy sensor readings",
        'model = mlflow.pyfunc.load_model("{uri}")\n'
        "analysis = model.predict(request, params={{\"seed\": 0}})  # request: see pipelines/serving/assimilator_model.py",
        "latentops assimilate --model {uri} --observations data/observations/test_0.h5"),
}


def kind_of(version: ModelVersion) -> str:
    """The version's ``kind`` tag; versions registered before every version had one are
    autoencoders (``<dataset>-autoencoder``) or observation encoders."""
    if "kind" in version.tags:
        return version.tags["kind"]
    return OBS_ENCODER if version.name.endswith("-obs-encoder") else AUTOENCODER


# --------------------------------------------------------------------------- reading the store


def scorecard(version: ModelVersion, key: str | None = None) -> Scorecard | None:
    """The version's scorecard (its evaluation run's ``scorecard.json``), if it was evaluated
    (under ``key``, when given) and the run still holds the card."""
    run_id = version.tags.get(f"{EVAL}run_id")
    if not run_id or (key is not None and version.tags.get(f"{EVAL}key") != key):
        return None
    data = _load_dict(run_id, SCORECARD_FILE)
    return Scorecard.from_dict(data) if data is not None else None


def baselines(run_id: str | None) -> dict[str, Scorecard]:
    """The baselines' cards an emulator's evaluation run ``run_id`` recorded beside its own
    (scored on the same trajectories), by baseline kind; empty if it has none."""
    data = _load_dict(run_id, BASELINES_FILE) if run_id else None
    return {n: Scorecard.from_dict(c) for n, c in (data or {}).items()}


def _load_dict(run_id: str, path: str) -> dict | None:
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    except (MlflowException, OSError, ValueError):
        return None


def _run(client: mlflow.MlflowClient, run_id: str | None) -> Run | None:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


# --------------------------------------------------------------------------- tags


def headline_name(card: Scorecard) -> str | None:
    """The headline number of ``card``: VRMSE (of the ensemble mean) over its last lead
    window, else over every lead."""
    windows = [m["window"] for n in card.estimates if (m := _WINDOW.match(n)) and m["metric"] == "vrmse"]
    if windows:
        return f"vrmse_{max(windows, key=lambda w: int(w.split('-')[1]))}"
    return "vrmse_mean" if "vrmse_mean" in card.estimates else None


def evaluation_tags(card: Scorecard, key: str, run_id: str) -> dict[str, str]:
    """The evaluation tags of a version scored as ``card`` under ``key`` by the run
    ``run_id``: its headline number with interval, the status, and the key and run."""
    tags = {} if (name := headline_name(card)) is None else {f"{EVAL}{name}": str(card.estimates[name])}
    return tags | {f"{EVAL}status": f"scored {time.strftime('%Y-%m-%d %H:%M')} on {_trajectories(card)} trajectories",
                   f"{EVAL}key": key, f"{EVAL}run_id": run_id}


def history(tags: Mapping[str, str], event: str) -> str:
    """``promotion.history`` with ``event`` (e.g. ``production 2026-12-01 17:40``) appended,
    the oldest events dropped past :data:`HISTORY_LIMIT` characters."""
    events = [e for e in tags.get(f"{PROMOTION}history", "").split("; ") if e] + [event]
    while len("; ".join(events)) > HISTORY_LIMIT and len(events) > 1:
        events.pop(0)
    return "; ".join(events)


def _trajectories(card: Scorecard) -> int:
    return max((len(v) for v in card.trajectories.values()), default=0)


# --------------------------------------------------------------------------- the card


def refresh(client: mlflow.MlflowClient, name: str, version: str | int) -> str:
    """Render the card of version ``version`` of ``name`` from the store, write it as the
    version's description, and return it."""
    model_version = client.get_model_version(name, str(version))
    evaluation = scorecard(model_version)
    run_id = model_version.tags.get(f"{EVAL}run_id")
    text = render(model_version, _run(client, model_version.run_id), evaluation,
                  baselines(run_id) if evaluation is not None else {},
                  _run(client, model_version.tags.get(f"{PROMOTION}run_id")))
    client.update_model_version(name, str(version), description=text)
    return text


def render(version: ModelVersion, training: Run | None, card: Scorecard | None,
           baselines: Mapping[str, Scorecard], promotion: Run | None) -> str:
    """The markdown card of ``version``: ``training`` is the run that registered it, ``card``
    its scorecard (``None``: not evaluated yet), ``baselines`` the baselines' cards on the same
    trajectories, ``promotion`` the promote run that last decided about it. At most
    :data:`LIMIT` characters: the scorecard's detail goes first, then the baselines."""
    tags, kind = version.tags, kind_of(version)
    usage = USAGE.get(kind)
    parts = [_title(version, kind, card), _what(version, kind, usage, training), _lineage(version, training)]
    tail = [_promotion(version, promotion), _loading(version, usage)]
    for detail, with_baselines in ((True, True), (False, True), (False, False)):
        scores = _scores(card, baselines if with_baselines else {}, detail, tags)
        text = "\n\n".join(p for p in [*parts, scores, *tail] if p) + "\n"
        if len(text) <= LIMIT:
            return text
    return text[:LIMIT - 40] + "\n\n*(card truncated)*\n"


def _title(version: ModelVersion, kind: str, card: Scorecard | None) -> str:
    """One plain line (the registry's list of versions shows a description's start): what
    it is, its headline number, its aliases and evaluation status."""
    tags = version.tags
    width = f", c = {tags['latent_channels']}" if tags.get("latent_channels") not in (None, "", "none") else ""
    rate = f", compression rate {tags['compression_rate']}" if tags.get("compression_rate") else ""
    name = headline_name(card) if card is not None else None
    headline = [] if name is None else [f"{name} = {card.estimates[name]}"]
    aliases = ", ".join(f"**@{a}**" for a in sorted(version.aliases)) or "no alias"
    return " · ".join([f"**{kind}**{width}{rate}", *headline, aliases, tags.get(f"{EVAL}status", "not evaluated yet")])


def _what(version: ModelVersion, kind: str, usage: Usage | None, training: Run | None) -> str:
    tags = version.tags
    rows = [("kind", f"`{kind}`, {usage.what}" if usage else f"`{kind}`")]
    if tags.get("compression_rate"):
        rows.append(("compression rate", f"{tags['compression_rate']} (latent channels: {tags.get('latent_channels', '?')})"))
    parameters = training.data.params.get("parameters") if training else None
    if parameters and parameters.isdigit():
        rows.append(("trainable parameters", f"{int(parameters):,}"))
    for key, label in (("route", "route"), ("layout", "sensor layout"), ("members", "ensemble members"),
                       ("sensors", "sensors")):
        if key in tags:
            rows.append((label, tags[key]))
    return "### What it is\n\n" + _table(("", ""), rows)


def _lineage(version: ModelVersion, training: Run | None) -> str:
    tags = version.tags
    rows = []
    if tags.get("data_hash"):
        rows.append(("data (DVC hash)", f"`{tags['data_hash']}`"))
    if training is not None:
        commit = training.data.tags.get("git.commit", "unknown")
        dirty = " (with uncommitted changes)" if training.data.tags.get("git.dirty") == "true" else ""
        rows.append(("code (git commit)", f"`{commit}`{dirty}"))
        rows.append(("registered by run", f"[`{training.info.run_id}`](#/experiments/{training.info.experiment_id}"
                                          f"/runs/{training.info.run_id}) ({training.info.run_name})"))
    for key, label in (("autoencoder_version", "autoencoder"), ("emulator", "emulator"),
                       ("obs_encoder", "observation encoder")):
        value = tags.get(key)
        if value and value != "none":
            rows.append((label, f"version {value}" if value.isdigit() else f"`{value}`"))
    return "### Lineage\n\n" + _table(("", ""), rows) if rows else ""


def _scores(card: Scorecard | None, baselines: Mapping[str, Scorecard], detail: bool, tags: Mapping[str, str]) -> str:
    if card is None:
        return "### Scorecard\n\nNot evaluated yet: `latentops evaluate` scores every new version."
    windows = sorted({m["window"] for n in card.estimates if (m := _WINDOW.match(n))},
                     key=lambda w: int(w.split("-")[0]))
    metrics = [m for m in HEADLINE if any(f"{m}_{w}" in card.estimates for w in windows)]
    if detail:
        metrics += [f"{AE_TRUTH}{m}" for m in HEADLINE if any(f"{AE_TRUTH}{m}_{w}" in card.estimates for w in windows)]

    def row(label: str, scores: Scorecard, metric: str) -> tuple[str, ...]:
        return (label, *(scores.estimates[f"{metric}_{w}"].cell() if f"{metric}_{w}" in scores.estimates else "–"
                         for w in windows))

    rows = [row(_metric_name(m), card, m) for m in metrics]
    rows += [row(f"{label} (baseline): {METRIC_NAMES['vrmse']}", other, "vrmse") for label, other in baselines.items()]
    extra = [(_metric_name(n), e.cell()) for n, e in card.estimates.items()
             if Scorecard.is_reported(n) and not _WINDOW.match(n)]
    extra.append(("seconds per trajectory", f"{card.seconds:.3g}"))
    lines = ["### Scorecard", f"On {_trajectories(card)} test trajectories; every number is a mean over them with "
             f"its {card.confidence:.0%} bootstrap interval. Lead windows in stored steps.",
             _table(("metric", *(f"leads {w}" for w in windows)), rows), _table(("", ""), extra)]
    if run_id := tags.get(f"{EVAL}run_id"):
        lines.append(f"Every metric per field and band, the curves and the figures: evaluation run `{run_id}` "
                     f"(`{SCORECARD_FILE}`, `plots/`).")
    return "\n\n".join(lines)


def _metric_name(name: str) -> str:
    """``vrmse`` -> "VRMSE of the ensemble mean (`vrmse`)"; against ``D(E(x))`` for ``ae_truth/``."""
    bare = name.removeprefix(AE_TRUTH)
    words = METRIC_NAMES.get(bare, bare.replace("_", " "))
    return f"{words}{', against D(E(x))' if name.startswith(AE_TRUTH) else ''} (`{name}`)"


def _promotion(version: ModelVersion, run: Run | None) -> str:
    tags = version.tags
    if run is None and not tags.get(f"{PROMOTION}history"):
        return ""
    lines = ["### Promotion"]
    if run is not None:
        data = run.data
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000))
        lines.append(f"**{data.tags.get('decision', '?')}** {when} by {data.params.get('user', '?')}: "
                     f"{data.tags.get('reason', '')}")
        if "probability_better" in data.metrics:
            lines.append(f"Paired bootstrap over the same trajectories: P(better than production) = "
                         f"{data.metrics['probability_better']:.3f}, difference "
                         f"{data.metrics['difference']:.4g} [{data.metrics['difference_low']:.4g}, "
                         f"{data.metrics['difference_high']:.4g}].")
    if tags.get(f"{PROMOTION}history"):
        lines.append(f"Aliases: {tags[f'{PROMOTION}history']}.")
    return "\n\n".join(lines)


def _loading(version: ModelVersion, usage: Usage | None) -> str:
    if usage is None:
        return ""
    fields = {"uri": f"models:/{version.name}/{version.version}", "version": version.version, "name": version.name,
              "latent_channels": version.tags.get("latent_channels", "?")}
    return (f"### How to load\n\n```python\nimport mlflow\n{usage.python.format(**fields)}\n```\n\n"
            f"```bash\n{usage.command.format(**fields)}\n```")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)
