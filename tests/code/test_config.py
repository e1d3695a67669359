"""Typed configuration: the repository's params.yaml parses; bad values fail at start with
the file, the key and what would be valid."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from typing import Any

import pytest
import yaml

from pipelines import settings
from pipelines.cli import main
from pipelines.settings import ConfigError, load_section
from pipelines.settings.assimilation import RegisterAssimilatorConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import TrainEmulatorConfig
from pipelines.settings.sections import CLASSES
from pipelines.settings.sensors import SensorsConfig
from pipelines.settings.simulate import SimulateConfig, Splits
from tests.conftest import REPO, configured, params_with, tool_env


def test_repository_params_parse():
    cfg = load_section(SimulateConfig, "simulate", REPO / "params.yaml")
    assert cfg.resolution == 64 and cfg.n_steps == 101 and cfg.dt == pytest.approx(0.015)
    assert isinstance(cfg.trajectories, Splits) and cfg.trajectories.train >= 1
    assert len(cfg.gammas) == 10
    data = load_section(DataConfig, "data", REPO / "params.yaml")
    assert data.root == cfg.output


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def contradictions(cls: type, raw: dict[str, Any], key: str) -> list[str]:
    """Every dataclass default of ``cls`` (and of the dataclasses inside it, nested or in
    mappings of names) that the params mapping ``raw`` at ``key`` sets to another value."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        if field.name not in raw:
            continue
        hint, value, where = hints[field.name], raw[field.name], f"{key}.{field.name}"
        default = _default(field)
        if default is not dataclasses.MISSING and default != (given := settings._convert(hint, value, where)):
            found.append(f"{where}: {cls.__name__} default {default!r}, params.yaml {given!r}")
        if dataclasses.is_dataclass(hint):
            found += contradictions(hint, value, where)
        elif typing.get_origin(hint) is dict and dataclasses.is_dataclass(entry := typing.get_args(hint)[1]):
            for name, item in value.items():
                found += contradictions(entry, item, f"{where}.{name}")
    return found


def test_no_dataclass_default_contradicts_params_yaml():
    """params.yaml is the one source of settings: a key it sets has no dataclass default, or
    one equal to its value (kept only where a params file may leave the key out)."""
    params = settings.load_params(REPO / "params.yaml")
    found = [line for section, cls in CLASSES.items() for line in contradictions(cls, params[section], section)]
    assert not found, "dataclass defaults that contradict params.yaml:\n" + "\n".join(found)


def test_every_section_name_has_its_class():
    """``SECTIONS`` (the names the machinery accepts) and ``CLASSES`` (their classes) agree."""
    assert set(CLASSES) == set(settings.SECTIONS)


def test_repository_params_load_through_every_section_class():
    params = settings.load_params(REPO / "params.yaml")
    assert set(params) == set(settings.SECTIONS)
    for section, cls in CLASSES.items():
        assert isinstance(load_section(cls, section, REPO / "params.yaml"), cls)


def test_a_missing_key_is_named_with_the_required_ones(tmp_path):
    params = settings.load_params(REPO / "params.yaml")
    del params["train_emulator"]["train"]["steps"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as error:
        load_section(TrainEmulatorConfig, "train_emulator", path)
    assert str(error.value).startswith(f"{path}: train_emulator.train.steps: missing; required keys are [")
    assert "'batch_size'" in str(error.value)
    with pytest.raises(ConfigError, match=r"train_emulator\.kinds: missing; .*also missing: \[.context_rate."):
        settings.parse_section({}, TrainEmulatorConfig, "train_emulator", "params.yaml")


@pytest.mark.parametrize(("section", "names", "message"), [
    ("sensors", [], "sensors.layouts: needs at least one layout"),
    ("sensors", ["a-b"], "sensors.layouts.a-b: a layout's name must be letters, digits and underscores"),
    ("register_assimilator", [], "register_assimilator.assimilators: needs at least one assimilator"),
    ("register_assimilator", ["a b"],
     "register_assimilator.assimilators.a b: an assimilator's name must be letters, digits and underscores"),
])
def test_named_mappings_check_their_names(section, names, message):
    (field, entries), = settings.load_params(REPO / "params.yaml")[section].items()
    raw = {field: dict.fromkeys(names, next(iter(entries.values())))}
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings.from_mapping(CLASSES[section], raw, section)


def test_named_mappings_look_up_by_name():
    sensors = configured(SensorsConfig, "sensors")
    assimilators = configured(RegisterAssimilatorConfig, "register_assimilator")
    assert sensors.layout("sparse", "assimilate.layout") is sensors.layouts["sparse"]
    assert assimilators.assimilator("ensf_solver", "--name") is assimilators.assimilators["ensf_solver"]
    with pytest.raises(ConfigError, match=re.escape("--layout: no sensor layout 'dense'; sensors.layouts has ['sparse']")):
        sensors.layout("dense", "--layout")
    with pytest.raises(ConfigError, match=re.escape(
            "--name: no assimilator 'x'; register_assimilator.assimilators has ['encoded_solver', 'ensf_solver']")):
        assimilators.assimilator("x", "--name")


def write(tmp_path, section: dict) -> str:
    """The repository's params.yaml with ``section``'s keys of ``simulate:`` changed."""
    return str(params_with(tmp_path / "params.yaml", {"simulate": section}))


@pytest.mark.parametrize(("section", "message"), [
    ({"resolutoin": 32}, "simulate.resolutoin: unknown key; valid keys are"),
    ({"resolution": "big"}, "simulate.resolution: expected an integer, got 'big'"),
    ({"resolution": 4}, "simulate.resolution: must be >= 8, got 4"),
    ({"trajectories": {"train": 0}}, "simulate.trajectories.train: must be >= 1, got 0"),
    ({"trajectories": {"tran": 3}}, "simulate.trajectories.tran: unknown key"),
    ({"boundaries": ["open", "wall"]}, "simulate.boundaries[1]: must be one of ['open', 'periodic'], got 'wall'"),
    ({"density": [2.0, 1.0]}, "simulate.density: must be [low, high] with low <= high"),
    ({"quadrants": [2]}, "simulate.quadrants: expected a list of 2 values"),
    ({"cfl": 1.5}, "simulate.cfl: must be in (0, 1], got 1.5"),
    ({"workers": True}, "simulate.workers: expected an integer, got True"),
])
def test_bad_values_name_the_key(tmp_path, section, message):
    path = write(tmp_path, section)
    with pytest.raises(ConfigError) as error:
        load_section(SimulateConfig, "simulate", path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(("section", "key", "message"), [
    ({"metric": "vrmse_1-20/density"}, "promote", "promote.metric: must be vrmse_mean or <metric>_<window>"),
    ({"metric": "spread_skill_1-20"}, "promote", "promote.metric: must be vrmse_mean or <metric>_<window>"),
    ({"probability": 1.0}, "promote", "promote.probability: must be in [0.5, 1), got 1.0"),
    ({"confidence": 0.3}, "evaluate", "evaluate.confidence: must be in [0.5, 1), got 0.3"),
])
def test_bad_evaluation_settings_name_the_key(tmp_path, section, key, message):
    from pipelines.settings.evaluation import EvaluateConfig, PromoteConfig

    path = params_with(tmp_path / "params.yaml", {key: section})
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_section({"promote": PromoteConfig, "evaluate": EvaluateConfig}[key], key, path)
    assert load_section(PromoteConfig, "promote", REPO / "params.yaml").metric == "vrmse_mean"


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="parameters file not found"):
        load_section(SimulateConfig, "simulate", tmp_path / "nope.yaml")


def test_overrides_win_and_are_validated(tmp_path):
    path = write(tmp_path, {"workers": 1})
    assert load_section(SimulateConfig, "simulate", path, {"workers": 2}).workers == 2
    with pytest.raises(ConfigError, match="simulate.workers: must be >= 0"):
        load_section(SimulateConfig, "simulate", path, {"workers": -1})


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    path = write(tmp_path, {"resolution": 4})
    assert main(["--params", path, "simulate"]) == 2
    err = capsys.readouterr().err
    assert "simulate.resolution: must be >= 8" in err and "Traceback" not in err


def test_help_explains_every_command():
    result = subprocess.run(["latentops", "--help"], env=tool_env(), capture_output=True, text=True, check=True)
    for command in ("simulate", "validate-data", "train-autoencoder", "cache-latents", "train-emulator", "evaluate",
                    "compare", "promote", "tune", "apply-params", "stats"):
        assert command in result.stdout
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "simulate", "--help"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    assert "--workers" in result.stdout and "atomically" in result.stdout


def test_gpu_configuration_parses_and_scales_up():
    from pipelines.settings.autoencoder import TrainAutoencoderConfig
    from pipelines.settings.latents import CacheLatentsConfig

    gpu, cpu = REPO / "params.gpu.yaml", REPO / "params.yaml"
    assert set(yaml.safe_load(gpu.read_text())) == set(yaml.safe_load(cpu.read_text()))  # same sections
    for cls, section in ((SimulateConfig, "simulate"), (DataConfig, "data"),
                         (TrainAutoencoderConfig, "train_autoencoder"), (CacheLatentsConfig, "cache_latents"),
                         (TrainEmulatorConfig, "train_emulator")):
        load_section(cls, section, gpu)
    ae = load_section(TrainAutoencoderConfig, "train_autoencoder", gpu)
    assert ae.model.downsampling == 32 and ae.train.device == "cuda" and ae.train.optim.optimizer == "psgd"
    assert [5 * 32**2 // c for c in ae.latent_channels] == [80, 320, 1280]  # the paper's rates at 512^2
    emulator, small = load_section(TrainEmulatorConfig, "train_emulator", gpu), load_section(TrainEmulatorConfig, "train_emulator", cpu)
    assert (emulator.latent.width, emulator.latent.depth, emulator.pixel.width) == (1024, 16, 2048)  # paper, table 5
    assert emulator.pixel.width == 2 * emulator.latent.width and small.pixel.width == 2 * small.latent.width


@pytest.mark.parametrize(("section", "message"), [
    ({"kinds": ["gan"]}, "train_emulator.kinds[0]: must be one of ['diffusion', 'solver'], got 'gan'"),
    ({"sampler": {"name": "ddpm"}}, "train_emulator.sampler.name: must be one of ['zab', 'vab', 'euler', 'heun']"),
    ({"sampler": {"order": 4}}, "train_emulator.sampler.order: must be 1, 2 or 3, got 4"),
    ({"latent": {"width": 100, "heads": 3}}, "train_emulator.latent.heads: must divide width 100, got 3"),
    ({"pixel": {"width": 16, "heads": 4}}, "train_emulator.pixel.heads: width / heads = 4 is too small"),
    ({"flip": 1.5}, "train_emulator.flip: must be in [0, 1], got 1.5"),
    ({"score": {"lead_windows": [[20, 1]]}}, "train_emulator.score.lead_windows[0]: must be [first, last] with 1 <= first <= last"),
])
def test_bad_emulator_values_name_the_key(tmp_path, section, message):
    path = params_with(tmp_path / "params.yaml", {"train_emulator": section})
    with pytest.raises(ConfigError, match=".*" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_section(TrainEmulatorConfig, "train_emulator", path)


def test_an_overlap_as_long_as_the_window_is_refused():
    with pytest.raises(ConfigError, match=r"train_emulator.overlap: must be < the window of data.context \+ data.horizon = 5"):
        configured(TrainEmulatorConfig, "train_emulator", overlap=5).check_window(configured(DataConfig, "data"),
                                                                                  "train_emulator")


def test_every_section_of_both_configurations_parses():
    from pipelines.settings.sections import check_params
    from pipelines.settings.tune import TuneConfig

    for path in (REPO / "params.yaml", REPO / "params.gpu.yaml"):
        check_params(path)
    cpu, gpu = (load_section(TuneConfig, "tune", REPO / name) for name in ("params.yaml", "params.gpu.yaml"))
    assert cpu.storage == "sqlite:///optuna.db" and gpu.storage.startswith("postgresql://")
    assert gpu.sampler.score.trajectories > cpu.sampler.score.trajectories


@pytest.mark.parametrize(("section", "message"), [
    ({"storage": "journal:"}, "tune.storage: journal: needs a file name"),
    ({"sampler": {"samplers": ["ddim"]}}, "tune.sampler.samplers[0]: must be one of ['zab', 'vab', 'euler', 'heun']"),
    ({"sampler": {"orders": [0, 3]}}, "tune.sampler.orders: must be [low, high] within [1, 3], got [0, 3]"),
    ({"sampler": {"steps": [8, 4]}}, "tune.sampler.steps: must be [low, high] with 1 <= low <= high"),
    ({"compression": {"lr": [0.01, 0.001]}}, "tune.compression.lr: must be [low, high] with 0 < low <= high"),
    ({"compression": {"pruner": "asha"}}, "tune.compression.pruner: must be one of ['median', 'hyperband', 'none']"),
    ({"compression": {"latent_channels": [0, 4]}}, "tune.compression.latent_channels: must list positive"),
    ({"compression": {"trials": 0}}, "tune.compression.trials: must be >= 1, got 0"),
])
def test_bad_tune_values_name_the_key(tmp_path, section, message):
    from pipelines.settings.tune import TuneConfig

    path = params_with(tmp_path / "params.yaml", {"tune": section})
    with pytest.raises(ConfigError, match=".*" + message.replace("[", r"\[").replace("]", r"\]")):
        load_section(TuneConfig, "tune", path)


def test_apply_params_merges_a_tuned_file_keeping_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    tuned = tmp_path / "sampler.yaml"
    tuned.write_text("# a tuned result\ntrain_emulator:\n  sampler:\n    name: heun\n    steps: 12\n")
    assert main(["--params", str(path), "apply-params", str(tuned)]) == 0
    text = path.read_text()
    assert "# Every knob of every stage" in text and "# Adams-Bashforth order" in text  # comments kept
    sampler = load_section(TrainEmulatorConfig, "train_emulator", path).sampler
    assert (sampler.name, sampler.order, sampler.steps) == ("heun", 3, 12)  # order kept from the file
    before = yaml.safe_load((REPO / "params.yaml").read_text())
    after = yaml.safe_load(text)
    before["train_emulator"]["sampler"].update(name="heun", steps=12)
    assert after == before  # nothing else changed


@pytest.mark.parametrize(("fragment", "message"), [
    ("train_emulator:\n  sampler:\n    steps: 0\n",
     "would make .* invalid: train_emulator.sampler.steps: must be >= 1"),
    ("train_emulatr:\n  flip: 0.2\n", "train_emulatr: unknown section; valid sections are"),
])
def test_apply_params_refuses_an_invalid_result_and_changes_nothing(tmp_path, capsys, fragment, message):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(fragment)
    assert main(["--params", str(path), "apply-params", str(bad)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert path.read_text() == (REPO / "params.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "params.yaml"]  # no temporary left
