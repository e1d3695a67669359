"""The shape of the code: what each package may import, one table of model kinds that every
mirror agrees with, and ``dvc.yaml`` against ``pipelines.layout``."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from models.kinds import KINDS, emulator_kinds
from models.networks import network_class
from models.samplers import FAMILIES
from pipelines import codedeps, layout
from pipelines.cli import COMMANDS, build_parser, main
from pipelines.codedeps import ROOT, imports, module_of
from pipelines.settings import ConfigError, load_section
from pipelines.settings.emulator import TrainEmulatorConfig
from pipelines.settings.evaluation import PromoteConfig
from pipelines.settings.tune import CompressionStudyConfig, TuneConfig
from tests.conftest import REPO, params_with

#: What each package (or module) of the project may import from the project, besides itself.
BASE = {"models", "pipelines", "pipelines.io", "pipelines.settings", "pipelines.options", "pipelines.layout",
        "pipelines.plots", "pipelines.evaluation.scorecard"}
RULES: dict[str, set[str]] = {
    "models": {"models"},
    "pipelines.serving": {"models", "pipelines", "pipelines.serving"},
    "pipelines.io": set(),
    "pipelines.layout": set(),
    "pipelines.plots": set(),
    "pipelines.settings": {"models", "pipelines.io", "pipelines.evaluation.scorecard", "pipelines.settings"},
    "pipelines.options": {"pipelines.settings", "pipelines.io"},
    "pipelines.data": BASE | {"pipelines.data", "pipelines.serving"},
    "pipelines.evaluation": BASE | {"pipelines.evaluation", "pipelines.data", "pipelines.serving"},
    "pipelines.recipes": BASE | {"pipelines.recipes", "pipelines.data", "pipelines.serving", "pipelines.evaluation"},
    "pipelines.tracking": BASE | {"pipelines.tracking", "pipelines.serving", "pipelines.evaluation.scorecard"},
    "pipelines.stages": BASE | {"pipelines.data", "pipelines.serving", "pipelines.evaluation", "pipelines.recipes",
                                "pipelines.tracking", "pipelines.stages.runner"},
    "pipelines.cli": {"pipelines", "pipelines.settings", "pipelines.io", "pipelines.options"},
    "pipelines.codedeps": {"pipelines", "pipelines.cli"},
}
MLOPS = ("mlflow", "dvc", "optuna")


def _rule(module: str) -> str:
    return max((r for r in RULES if module == r or module.startswith(r + ".")), key=len)


def _allowed(module: str, target: str) -> bool:
    # "pipelines" is the package's own __init__ only, never everything under it
    return any(target == a or (a != "pipelines" and target.startswith(a + ".")) for a in RULES[_rule(module)])


def _project_modules() -> list[str]:
    return sorted(module_of(p) for package in ("models", "pipelines") for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("module", _project_modules())
def test_imports_follow_the_rules(module):
    """Each module imports only what its package may touch (``RULES``); a stage never
    imports another stage (the runner is shared, not a stage)."""
    wrong = sorted(t for t in imports(module) if not (t == module or _allowed(module, t)))
    if module.startswith("pipelines.stages.") and module != "pipelines.stages.runner":
        wrong += sorted(t for t in imports(module) if t.startswith("pipelines.stages.") and t != module
                        and t != "pipelines.stages.runner")
    assert not wrong, f"{module} ({_rule(module)}) may not import {wrong}"


def test_the_rules_can_fail():
    assert not _allowed("pipelines.serving.forecaster", "pipelines.settings")
    assert not _allowed("pipelines.settings.sections", "pipelines.stages.tune")
    assert not _allowed("pipelines.tracking.runs", "pipelines.recipes.training")
    assert _allowed("pipelines.stages.tune", "pipelines.recipes.emulator")


def test_models_and_serving_import_no_mlops_library_but_mlflow_in_serving():
    """``models/`` is pure PyTorch (+ azula); the served runtime needs only mlflow besides."""
    for path in (ROOT / "models").rglob("*.py"):
        text = path.read_text()
        assert not any(f"import {lib}" in text or f"from {lib}" in text for lib in MLOPS), path
    for path in (ROOT / "pipelines" / "serving").rglob("*.py"):
        text = path.read_text()
        assert not any(f"import {lib}" in text or f"from {lib}" in text for lib in ("dvc", "optuna", "the_well",
                                                                                   "h5py", "yaml")), path


# --------------------------------------------------------------------------- the command line


def test_the_cli_imports_no_stage():
    """``pipelines/cli.py`` imports (at module level or in a function) the standard library,
    yaml and the base modules it needs only; each command's module is imported by name, on use."""
    assert imports("pipelines.cli") <= RULES["pipelines.cli"]
    tree = ast.parse((ROOT / "pipelines" / "cli.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    outside = sorted(n for n in names if n.split(".")[0] not in sys.stdlib_module_names | {"yaml", "__future__"}
                     and n not in RULES["pipelines.cli"])
    assert not outside, f"pipelines/cli.py may not import {outside}"


def test_every_command_reads_only_the_settings_it_needs():
    """The settings machinery (``pipelines.settings``) imports no section's module, and the
    modules every command loads (``cli``, ``options``) import the machinery only: a stage's
    code deps hold the settings modules of its own sections, not every section's."""
    assert imports("pipelines.settings") <= {"pipelines.io"}
    for module in ("pipelines.cli", "pipelines.options"):
        found = sorted(t for t in imports(module) if t.startswith("pipelines.settings."))
        assert not found, f"{module} may import the settings machinery only, not {found}"


def test_latentops_help_imports_no_command_module():
    code = ("import contextlib, io, sys\nfrom pipelines.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit as e:\n        assert e.code == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith(('pipelines.stages', 'pipelines.data', "
            "'pipelines.tracking', 'pipelines.recipes', 'pipelines.serving')) or m in ('torch', 'mlflow')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_module_follows_the_protocol(command, capsys):
    """Each ``COMMANDS`` entry names a module defining its pair of functions (options, run),
    and ``latentops COMMAND --help`` shows that module's description and options."""
    entry = COMMANDS[command]
    module = importlib.import_module(entry.module)
    assert callable(getattr(module, entry.add_arguments)) and callable(getattr(module, entry.main)), entry
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: latentops {command}"), out
    parser = _subcommand(command)
    assert parser.description and parser.get_default("handler") == getattr(module, entry.main)


# --------------------------------------------------------------------------- the kinds table


def _subcommand(name: str):
    parser = build_parser(name)
    return next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict)).choices[name]


def test_every_mirror_of_the_kinds_table_agrees_with_it(tmp_path):
    from pipelines.evaluation import findings, report
    from pipelines.evaluation.scoring import BASELINES

    names = [k.name for k in KINDS]
    assert len(set(names)) == len(names)
    assert emulator_kinds() == tuple(k.name for k in KINDS if k.emulator)
    for k in KINDS:  # the class says the same as the row
        assert bool(getattr(network_class(k.name), "stochastic", False)) == k.stochastic, k.name
    # configuration: params.yaml trains and promotes the table's kinds, and accepts only those
    assert load_section(TrainEmulatorConfig, "train_emulator", REPO / "params.yaml").kinds == \
        emulator_kinds(latent=True)
    assert load_section(PromoteConfig, "promote", REPO / "params.yaml").kinds == emulator_kinds()
    params = tmp_path / "params.yaml"
    for kind in emulator_kinds():
        params_with(params, {"promote": {"kinds": [kind]}, "train_emulator": {"kinds": [kind]}})
        load_section(PromoteConfig, "promote", params)
        if kind in emulator_kinds(latent=True):
            load_section(TrainEmulatorConfig, "train_emulator", params)
        else:
            with pytest.raises(ConfigError, match="must be one of"):
                load_section(TrainEmulatorConfig, "train_emulator", params)
    # the command line
    kind_action = next(a for a in _subcommand("train-emulator")._actions if a.dest == "kind")
    assert tuple(kind_action.choices) == emulator_kinds()
    # report order and names, findings
    assert list(report.KINDS) == names + [b.kind for b in BASELINES]
    assert all(report.KINDS[k.name][0] == k.display for k in KINDS)
    assert findings.LATENT == emulator_kinds(latent=True)


def test_samplers_and_pruners_mirror_their_tables():
    from pipelines.stages import tune

    assert load_section(TuneConfig, "tune", REPO / "params.yaml").sampler.samplers == tuple(FAMILIES)
    pruner = typing.get_type_hints(CompressionStudyConfig)["pruner"]
    assert set(typing.get_args(pruner)) == set(tune.PRUNERS)
    assert set(tune.OBJECTIVES) == set(next(a for a in _subcommand("tune")._actions if a.dest == "study").choices)


# --------------------------------------------------------------------------- dvc.yaml


@pytest.fixture(scope="module")
def stages():
    with Repo(str(ROOT)) as repo:
        return {s.addressing: s for s in repo.index.stages}


def _expected_outs() -> dict[str, set[str]]:
    params = __import__("yaml").safe_load((ROOT / "params.yaml").read_text())
    widths = params["train_autoencoder"]["latent_channels"]
    out = {"simulate": {params["simulate"]["output"], str(layout.SIMULATE_SUMMARY)},
           "evaluate": {str(layout.COMPARISON_REPORT), str(layout.COMPARISON_FIGURE), str(layout.EVALUATION),
                        str(layout.EVALUATION_CURVES)},
           "promote": {str(layout.PROMOTION)},
           "assimilate": {str(layout.OBSERVATIONS), str(layout.ASSIMILATION_REPORT), str(layout.ASSIMILATION_FIGURE),
                          str(layout.ASSIMILATION_PANEL), str(layout.ASSIMILATION), str(layout.ASSIMILATION_CURVES)}}
    for name in params["sensors"]["layouts"]:
        for c in widths:
            model = layout.obs_encoder(name, c)
            out[f"train_obs_encoder@{name}-{c}"] = {str(layout.model_dir(model)), str(layout.obs_encoder_summary(model)),
                                                    str(layout.obs_encoder_curve(model))}
    out["sweep_observations"] = {str(layout.SWEEP), str(layout.SWEEP_CURVES), str(layout.SWEEP_FIGURE)}
    out["register"] = {str(layout.REGISTRY)}
    for c in widths:
        out[f"train_autoencoder@{c}"] = {str(layout.model_dir(layout.autoencoder(c))),
                                         str(layout.autoencoder_summary(c)), str(layout.autoencoder_curve(c))}
        out[f"cache_latents@{c}"] = {str(layout.latent_cache(params["cache_latents"]["output"], c))}
    emulators = [(k, c, f"train_emulator@{k}-{c}") for k in params["train_emulator"]["kinds"] for c in widths]
    emulators += [(k, None, "train_pixel_solver") for k in emulator_kinds(latent=False)]
    for kind, c, stage in emulators:
        name = layout.emulator(kind, c)
        out[stage] = {str(layout.model_dir(name)), str(layout.emulator_summary(name)), str(layout.emulator_rollout(name))}
    return out


def test_dvc_outputs_are_the_layout_paths(stages):
    assert {name: {o.def_path for o in stage.outs} for name, stage in stages.items()} == _expected_outs()


def test_dvc_code_deps_are_exactly_each_stage_import_closure():
    """``dvc.yaml``'s code deps are derived (``python -m pipelines.codedeps --write``): a module
    the stage's command imports that is missing, or an entry it does not import, fails."""
    assert codedeps.differences() == {}, "run `python -m pipelines.codedeps --write`"


def test_the_code_deps_check_fails_on_a_missing_and_on_a_superfluous_entry(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    assert "      - pipelines/stages/evaluate.py\n" in text and "pipelines/stages/tune.py" not in text
    broken = tmp_path / "dvc.yaml"
    broken.write_text(text.replace("      - pipelines/stages/evaluate.py\n", "      - pipelines/stages/tune.py\n"))
    assert codedeps.differences(broken) == {"evaluate": (["pipelines/stages/evaluate.py"], ["pipelines/stages/tune.py"])}
    assert codedeps.write(broken) == ["evaluate"] and codedeps.differences(broken) == {}
    assert broken.read_text() == text  # rewriting restores the file, comments and all


@pytest.mark.parametrize("command", ["train-autoencoder", "cache-latents", "train-emulator", "train-obs-encoder"])
def test_training_never_imports_packaging(command):
    """Training produces weights: editing the registry, the model cards, the figures or the
    serving runtime re-runs no training stage, because no training command imports them."""
    packaging = ("pipelines.serving", "pipelines.tracking.registry", "pipelines.tracking.cards", "pipelines.plots")
    found = sorted(m for m in codedeps.closure("pipelines.cli", COMMANDS[command].module) if m.startswith(packaging))
    assert not found, f"latentops {command} imports {found}"


def test_dvc_lock_records_the_code_and_params_of_the_workspace():
    """The committed outputs are the outputs of the committed code: no stage's code or params
    differ from what ``dvc.lock`` recorded (re-run ``dvc repro``, never ``dvc commit``)."""
    assert codedeps.stale() == {}


def test_the_stale_lock_check_fails_when_code_or_params_change(tmp_path):
    """On a project of one stage, recorded by a real ``dvc repro``: an edit of its code, a
    change of its params and a stage the lock lacks are reported; data it lacks is not."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines/step.py").write_text("VALUE = 1\n")
    (tmp_path / "params.yaml").write_text("step: {margin: 0.1}\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  step:\n    cmd: python pipelines/step.py\n    deps:\n"
                                       "      - pipelines/step.py\n    params:\n      - step\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for cmd in (["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], cwd=tmp_path, check=True)
    assert codedeps.stale(tmp_path) == {}
    (tmp_path / "pipelines/step.py").write_text("VALUE = 2\n")
    assert codedeps.stale(tmp_path) == {"step": ["pipelines/step.py: modified"]}
    (tmp_path / "pipelines/step.py").write_text("VALUE = 1\n")
    (tmp_path / "params.yaml").write_text("step: {margin: 0.2}\n")
    assert codedeps.stale(tmp_path) == {"step": ["params.yaml: {'step': 'modified'}"]}
    (tmp_path / "params.yaml").write_text("step: {margin: 0.1}\n")
    with (tmp_path / "dvc.yaml").open("a") as f:
        f.write("  later:\n    cmd: python pipelines/step.py\n    deps:\n      - pipelines/step.py\n")
    assert codedeps.stale(tmp_path) == {"later": ["not in dvc.lock"]}


def test_no_artifact_path_is_spelled_outside_the_layout():
    """Stages name artifacts through ``pipelines.layout`` only."""
    spelled = []
    for path in (ROOT / "pipelines").rglob("*.py"):
        if path.name == "layout.py":
            continue
        for token in ('Path("metrics")', 'Path("reports")', 'Path("checkpoints")', '"data/models', 'Path("data")'):
            if token in path.read_text():
                spelled.append(f"{path.relative_to(ROOT)}: {token}")
    assert not spelled, spelled
