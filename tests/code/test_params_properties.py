"""Property-based: one mutation of the repository's params.yaml (a key dropped, a key
misspelt, a value of the wrong type or out of range, in any section at any depth) either
loads into valid configurations or fails with a :class:`ConfigError` naming the file and
the mutated key; never another exception."""

from __future__ import annotations

import copy
import string
from functools import reduce
from operator import getitem
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import main
from pipelines.settings import ConfigError
from pipelines.settings.sections import check_params
from tests.conftest import REPO

BASE: dict[str, Any] = yaml.safe_load((REPO / "params.yaml").read_text())


def key_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key of the nested mappings of ``node``, as a path from the top."""
    if not isinstance(node, dict):
        return []
    return [path for key, value in node.items() for path in ((*prefix, key), *key_paths(value, (*prefix, key)))]


PATHS = key_paths(BASE)
#: Values of the wrong type for most keys, and numbers out of most ranges.
WRONG = st.sampled_from(["oops", "", None, True, [1, 2], {"x": 1}, 0, -1, -1e9, 1e12, 0.5, [[5, 1]]])


def typos(key: str) -> st.SearchStrategy[str]:
    """``key`` with one letter dropped, doubled, replaced or swapped with the next."""
    def edit(i: int, letter: str, how: str) -> str:
        i %= len(key)
        if how == "drop":
            return key[:i] + key[i + 1:]
        if how == "double":
            return key[:i] + key[i] + key[i:]
        if how == "swap" and i + 1 < len(key):
            return key[:i] + key[i + 1] + key[i] + key[i + 2:]
        return key[:i] + letter + key[i + 1:]
    return st.builds(edit, st.integers(0, 63), st.sampled_from(string.ascii_lowercase),
                     st.sampled_from(["drop", "double", "swap", "replace"])).filter(lambda typo: typo and typo != key)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], str, str | None]:
    """``(params, what was done, the dotted key an error must name)``: the mutated key, or for a
    dropped one the mapping that held it (its message says the key is missing, or a rule such as
    "needs at least one layout"); ``None`` for a dropped section, which must load (check_params
    checks the sections a file has)."""
    path = draw(st.sampled_from(PATHS))
    params = copy.deepcopy(BASE)
    parent = reduce(getitem, path[:-1], params)
    key = path[-1]
    how = draw(st.sampled_from(["drop", "typo", "value"]))
    if how == "drop":
        del parent[key]
        return params, f"dropped {'.'.join(path)}", ".".join(path[:-1]) or None
    if how == "typo":
        typo = draw(typos(key).filter(lambda t: t not in parent))
        parent[typo] = parent.pop(key)
        return params, f"renamed {'.'.join(path)} to {typo}", ".".join((*path[:-1], typo))
    parent[key] = draw(WRONG)
    return params, f"set {'.'.join(path)} to {parent[key]!r}", ".".join(path)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_a_mutated_params_file_loads_or_names_the_mutated_key(tmp_path: Path,
                                                              mutation: tuple[dict[str, Any], str, str | None]) -> None:
    params, what, key = mutation
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    try:
        check_params(path)
    except ConfigError as error:
        message = str(error)
        assert key is not None, (what, message)
        assert message.startswith(f"{path}: "), (what, message)
        assert f" {key}" in message, (what, message)


def test_the_property_sees_every_section_and_nested_keys() -> None:
    """The mutations reach every section and keys three levels deep (the test above is not
    confined to the top of the file)."""
    assert {path[0] for path in PATHS} == set(BASE)
    assert ("train_autoencoder", "train", "optim") in PATHS and len(PATHS) > 150


def test_a_mutation_through_the_cli_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = copy.deepcopy(BASE)
    params["data"]["strid"] = params["data"].pop("stride")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert main(["--params", str(path), "validate-data"]) == 2
    err = capsys.readouterr().err
    assert err == (f"latentops validate-data: error: {path}: data.strid: unknown key; valid keys are "
                   "['cache', 'context', 'horizon', 'log_fields', 'root', 'stride']; did you mean 'stride'?\n")
