"""The assimilate stage's own choices: which versions it assimilates with, and how readings
line up with forecast times (the stage end to end runs in tests/pipeline/test_dvc.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.data.observations import Observations
from pipelines.evaluation.twin import readings
from pipelines.stages.assimilate import chosen


def _row(kind: str, version: int, vrmse: float) -> dict:
    return {"kind": kind, "name": "euler_mini-emulator", "version": version, "metrics": {"vrmse_mean": vrmse}}


def test_the_best_evaluated_version_of_each_kind_is_chosen(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"solver_c4_v1": _row("solver", 1, 0.9), "solver_c16_v2": _row("solver", 2, 0.7),
                                "diffusion_c4_v3": _row("diffusion", 3, 0.8),
                                "persistence": {"kind": "persistence", "version": 0, "metrics": {"vrmse_mean": 0.1}}}))
    assert [label for label, _ in chosen(("solver", "diffusion"), path)] == ["solver_c16_v2", "diffusion_c4_v3"]


def test_a_kind_without_an_evaluated_version_is_named(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"solver_c4_v1": _row("solver", 1, 0.9)}))
    with pytest.raises(ValueError, match=r"no evaluated diffusion version; evaluated kinds are \['solver'\]"):
        chosen(("diffusion",), path)
    with pytest.raises(FileNotFoundError, match="latentops evaluate"):
        chosen(("solver",), tmp_path / "missing.json")


def test_readings_line_up_with_forecast_times_and_the_rest_is_missing():
    """Readings at stored steps 0 (the initial state), 4, 6 (between forecast times) and 8:
    forecast times are 4, 8 and 12 (stride 4), so rows 0 and 1 are read, row 2 is empty."""
    observations = Observations(np.array([0, 4, 6, 8]), np.arange(8, dtype=float).reshape(4, 2),
                                np.array([[0, 1], [2, 3]]), ("density", "pressure"), np.array([0.1, 0.2]))
    sensors, values = readings(observations, ["energy", "density", "pressure"], stride=4, steps=3)
    assert sensors.channel.tolist() == [1, 2] and sensors.index.tolist() == [[0, 1], [2, 3]]
    torch.testing.assert_close(values[:2], torch.tensor([[2.0, 3.0], [6.0, 7.0]]))
    assert torch.isnan(values[2]).all()
