"""Input checks shared by the forecaster (``models.forecaster``), the assimilation request
(``pipelines.serving.assimilator``) and observation files (``pipelines.data.observations``):
a runner of rule tables and the grid test of sensor positions, NumPy or PyTorch alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import torch

__all__ = ["Rule", "outside", "require"]

#: A check: whether it holds (or a function that says so, run only when every rule before it
#: held), and the message of its error (or a function that makes it, run only when it fails).
Rule = tuple["bool | Callable[[], bool]", "str | Callable[[], str]"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def require(rules: Iterable[Rule], error: type[Exception] = ValueError) -> None:
    """Raise ``error`` with the message of the first rule of ``rules`` that does not hold."""
    for ok, message in rules:
        if not (ok() if callable(ok) else ok):
            raise error(message() if callable(message) else message)


def outside(index: Array, shape: Sequence[int]) -> Array:
    """``(S,)``: whether each grid index ``index (S, 2)`` falls outside a grid of ``shape``
    ``(H, W)`` points."""
    high = torch.tensor(list(shape)) if isinstance(index, torch.Tensor) else np.asarray(shape)[None, :]
    return ((index < 0) | (index >= high)).any(-1)
