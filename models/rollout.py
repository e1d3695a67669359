"""Autoregressive rollout of a window emulator (LoLA, section 3).

The first call predicts a window of ``L`` states from the ``context`` initial states; every
later call keeps the last ``overlap`` predicted states as its known context and predicts the
``L - overlap`` next ones. Ensembles of ``members`` are batched together. Decoding to pixels
is the caller's choice (rollouts stay in the latent space).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor


class WindowEmulator(Protocol):
    stochastic: bool  # False: every member is the same, so one is computed and repeated

    def sample(self, known: Tensor, mask: Tensor, cond: Tensor, **kwargs: Any) -> Tensor: ...


@torch.no_grad()
def rollout(emulator: WindowEmulator, initial: Tensor, cond: Tensor, horizon: int, window: int,
            overlap: int = 1, members: int = 1, bound: float | None = None,
            guidance: Callable[[int, int], Any] | None = None, **sample_kwargs: Any) -> Tensor:
    """Roll ``horizon`` states forward from ``initial``.

    Args:
        initial: ``(B, C, K, H, W)``, the ``K`` known initial states (``K < window``).
        cond: ``(B, P)`` conditioning.
        horizon: number of new states to produce.
        window: ``L``, the emulator's window length.
        overlap: known states carried from one window to the next (``1 <= overlap < L``).
        members: ensemble size; members are independent draws (identical for a solver).
        bound: clamp predicted states to ``[-bound, bound]`` before they are fed back (the
            autoencoder's saturation bound: real latents never leave it).
        guidance: ``guidance(first, known)`` is called before each window with the index of
            its first new state (0 for the state after the initial ones) and the number of
            known states at the window's head; what it returns (not ``None``) is passed as
            ``emulator.sample``'s ``guide`` for that window (observations of its new states).
        sample_kwargs: passed to ``emulator.sample`` (sampler, order, steps, generator).

    Returns:
        ``(B, members, C, K + horizon, H, W)``: the initial states followed by the forecast.
    """
    b, c, k, h, w = initial.shape
    if not 0 < k < window or not 0 < overlap < window:
        raise ValueError(f"need 0 < context ({k}) < window ({window}) and 0 < overlap ({overlap}) < window")
    draws = members if emulator.stochastic else 1
    states = initial.repeat_interleave(draws, dim=0)  # (B M, C, K, H, W)
    cond = cond.repeat_interleave(draws, dim=0)
    trajectory = [states]
    known, produced = states, 0
    while produced < horizon:
        n_known = known.shape[2]
        x = torch.zeros(b * draws, c, window, h, w, dtype=initial.dtype, device=initial.device)
        x[:, :, :n_known] = known
        mask = torch.zeros(b * draws, window, dtype=torch.bool, device=initial.device)
        mask[:, :n_known] = True
        guide = guidance(produced, n_known) if guidance is not None else None
        kwargs = sample_kwargs if guide is None else {**sample_kwargs, "guide": guide}
        predicted = emulator.sample(x, mask, cond, **kwargs)[:, :, n_known:]  # (B M, C, L - n_known, H, W)
        if bound is not None:
            predicted = predicted.clamp(-bound, bound)
        trajectory.append(predicted)
        produced += predicted.shape[2]
        known = torch.cat(trajectory, dim=2)[:, :, -overlap:]
    out = torch.cat(trajectory, dim=2)[:, :, : k + horizon].unflatten(0, (b, draws))
    return out.expand(-1, members, -1, -1, -1, -1) if draws == 1 else out
