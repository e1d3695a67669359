"""Model cards and the version tags beside them (``pipelines.tracking.cards``): a few tags a
person scans, the headline number with its interval, an alias history that stays short, and
a card with every section, within what the stores keep. The cards written by the stages on a
real store are checked in ``tests/pipeline/test_evaluate_stage.py``."""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from pipelines.evaluation.scorecard import Estimate, Scorecard
from pipelines.tracking import cards


def _version(tags: dict[str, str], aliases: tuple[str, ...] = (), name: str = "euler_mini-emulator") -> ModelVersion:
    return ModelVersion(name, "3", 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()], aliases=list(aliases))


def _card(windows: tuple[str, ...] = ("1-20", "21-100"), fields: int = 0) -> Scorecard:
    estimates = {"vrmse_mean": Estimate(0.5, 0.4, 0.6)}
    for i, w in enumerate(windows):
        for metric in ("vrmse", "vrmse_members", "crps", "spread_skill", "ae_truth/vrmse"):
            estimates[f"{metric}_{w}"] = Estimate(0.3 + i, 0.2 + i, 0.4 + i)
        estimates |= {f"vrmse_{w}/field{k}": Estimate(0.1, 0.0, 0.2) for k in range(fields)}
    return Scorecard(estimates, {"vrmse_mean": [0.4, 0.5, 0.6]}, seconds=2.5)


def test_a_scored_version_has_a_few_tags_with_its_headline_and_interval():
    tags = cards.evaluation_tags(_card(), "key1", "run1")
    assert tags["eval.vrmse_21-100"] == "1.3 [1.2, 1.4]"  # the last lead window, value [low, high]
    assert tags["eval.status"].startswith("scored ") and tags["eval.status"].endswith(" on 3 trajectories")
    assert tags["eval.key"] == "key1" and tags["eval.run_id"] == "run1" and len(tags) == 4
    reconstruction = Scorecard({"vrmse_mean": Estimate(0.1, 0.05, 0.15)})
    assert cards.headline_name(reconstruction) == "vrmse_mean"


def test_the_alias_history_keeps_the_latest_moves_within_its_limit():
    tags = {"promotion.history": "production 2026-01-01 10:00"}
    assert cards.history(tags, "challenger 2026-01-02 10:00") == "production 2026-01-01 10:00; challenger 2026-01-02 10:00"
    long = {"promotion.history": "; ".join(f"production 2026-01-{d:02d} 10:00" for d in range(1, 31))}
    kept = cards.history(long, "retired 2026-02-01 10:00")
    assert len(kept) <= cards.HISTORY_LIMIT and kept.endswith("retired 2026-02-01 10:00")
    assert "2026-01-30" in kept and "2026-01-01" not in kept


def test_a_card_says_what_it_is_where_it_came_from_how_it_scored_and_how_to_load_it():
    version = _version({"kind": "diffusion", "latent_channels": "16", "compression_rate": "80", "data_hash": "abc123",
                        "autoencoder_version": "2", "eval.status": "scored 2026-12-01 10:00 on 3 trajectories",
                        "eval.run_id": "evalrun", "promotion.history": "production 2026-12-01 11:00"},
                       aliases=("production",))
    baselines = {"persistence": Scorecard({"vrmse_1-20": Estimate(0.9, 0.8, 1.0)})}
    text = cards.render(version, None, _card(), baselines, None)
    for heading in ("## euler_mini-emulator v3: diffusion, c = 16", "### What it is", "### Lineage", "### Scorecard",
                    "### Promotion", "### How to load"):
        assert heading in text
    assert "**@production**" in text and "| compression rate | 80 (latent channels: 16) |" in text
    # a row per metric, a column per lead window
    assert "| VRMSE of the ensemble mean (`vrmse`) | 0.300 [0.200, 0.400] | 1.300 [1.200, 1.400] |" in text
    assert "| VRMSE of the ensemble mean, against D(E(x)) (`ae_truth/vrmse`) | 0.300 [0.200, 0.400] |" in text
    assert "| VRMSE of the ensemble mean, every lead (`vrmse_mean`) | 0.500 [0.400, 0.600] |" in text
    assert "| persistence (baseline): VRMSE of the ensemble mean | 0.900 [0.800, 1.000] | – |" in text
    assert "95% bootstrap interval" in text and "evaluation run `evalrun`" in text
    assert 'mlflow.pyfunc.load_model("models:/euler_mini-emulator/3")' in text
    assert "latentops forecast --model 3" in text
    assert "| autoencoder | version 2 |" in text and "`abc123`" in text

    fresh = cards.render(_version({}, name="euler_mini-autoencoder"), None, None, {}, None)
    assert "## euler_mini-autoencoder v3: autoencoder" in fresh and "Not evaluated yet" in fresh
    assert "latentops cache-latents" in fresh and "### Promotion" not in fresh


def test_a_card_fits_the_stores_description_limit():
    many = {f"baseline{k}": _card(windows=tuple(f"{a}-{a + 1}" for a in range(1, 40, 2))) for k in range(5)}
    big = _card(windows=tuple(f"{a}-{a + 1}" for a in range(1, 40, 2)))
    text = cards.render(_version({"kind": "solver"}), None, big, many, None)
    assert len(text) <= cards.LIMIT
    assert "### How to load" in text  # the scorecard's detail gave way, not the instructions
