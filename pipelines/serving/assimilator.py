"""Latent data assimilation with a registered forecaster (LD-EnSF, Xiao, Si and Chen 2026).

An ensemble of ``N`` latent states is advanced by the forecaster's latent emulator (forecast
step: one emulator state, ``stride`` stored steps, for every member at once; a diffusion
emulator draws each member independently) and corrected wherever sensor readings exist by
the ensemble score filter (analysis step, ``models.assimilation.ScoreFilter``), whose
likelihood is taken through the forecaster's decoder at the sensor positions:

.. math::

    \\log p(y \\mid z) = -\\frac{1}{2} \\sum_{s \\,:\\, y_s \\text{ read}}
    \\left(\\frac{y_s - D(z)_{c_s}[i_s, j_s]}{\\sigma_s}\\right)^2

(physical units; ``D`` decodes and de-normalises; missing readings, NaN, drop out). Nothing
is decoded between cycles: the analysis stays latent until a caller decodes it.

:class:`GuidedForecast` is the other route (LoLA, Rozet et al. 2025, section 4): the
diffusion emulator's windows are sampled from the posterior given the readings of their
states, with azula's MMPS guidance (Rozet et al. 2024) and the observation operator
:math:`A(x) = (D(x_k)_{c_s}[i_s, j_s])_{k, s \text{ read}}` over the window's new states
``k``; every member is an independent guided draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.assimilation import LogLikelihood, ScoreFilter
from models.checks import outside, require
from models.forecaster import Forecaster
from models.observation import ObservationEncoder
from models.rollout import rollout
from pipelines.serving.methods import METHODS, Analysis, Method, Setup, register

__all__ = ["OBSERVATION_INPUTS", "Analysis", "FreeForecast", "GuidedForecast", "LatentAssimilator", "Sensors", "answer",
           "decoder", "hide", "physical", "request"]

#: The inputs that make a request to a registered forecaster an assimilation (all four):
#: ``sensor_channel (S,)`` (channel indices), ``sensor_index (S, 2)`` (grid indices ``i, j``),
#: ``noise_std (S,)`` (physical units) and ``readings (T, S)`` (NaN: missing).
OBSERVATION_INPUTS = frozenset({"sensor_channel", "sensor_index", "noise_std", "readings"})


@dataclass(frozen=True)
class Sensors:
    """Where the readings come from: sensor ``s`` reads channel ``channel[s]`` at grid point
    ``index[s] = (i, j)`` with noise standard deviation ``noise_std[s]`` (physical units)."""

    channel: Tensor  # (S,) long
    index: Tensor  # (S, 2) long
    noise_std: Tensor  # (S,) float

    def read(self, states: Tensor) -> Tensor:
        """The noise-free readings ``(N, S)`` of physical states ``(N, C, H, W)``."""
        return states[:, self.channel, self.index[:, 0], self.index[:, 1]]

    def log_likelihood(self, values: Tensor, decode: Callable[[Tensor], Tensor]) -> LogLikelihood | None:
        """``z -> log p(values | decode(z))`` per member; ``None`` when every reading of
        ``values (S,)`` is missing (NaN)."""
        seen = torch.isfinite(values)
        if not bool(seen.any()):
            return None
        y, std = values[seen], self.noise_std[seen]

        def log_p(z: Tensor) -> Tensor:
            residual = (self.read(decode(z))[:, seen] - y) / std
            return -0.5 * residual.square().sum(dim=-1)

        return log_p


def decoder(forecaster: Forecaster) -> Callable[[Tensor], Tensor]:
    """Latents ``(N, c, h, w)`` to physical states ``(N, C, H, W)`` through ``forecaster``'s
    autoencoder, differentiably (reverse and forward mode); latents beyond the encoder's
    bound are clamped to it first (the decoder never saw such values, and its exponentiated
    fields overflow there)."""
    if forecaster.autoencoder is None:
        raise ValueError(f"latent assimilation needs a latent emulator; this forecaster is a {forecaster.kind}")
    autoencoder, normalizer = forecaster.autoencoder, forecaster.normalizer
    autoencoder.requires_grad_(False)  # differentiated in z only
    bound = autoencoder.encoder.bound

    def decode(z: Tensor) -> Tensor:
        return normalizer.denormalize(autoencoder.decode(z.clamp(-bound, bound)), dim=1)

    return decode


def _initial(forecaster: Forecaster, initial: Tensor) -> Tensor:
    """The physical state ``(C, H, W)`` in the latent space, ``(1, c, h, w)``."""
    return forecaster.to_space(initial[None, :, None].to(forecaster.device))[:, :, 0]


def hide(cond: Tensor, names: Sequence[str], hidden: Sequence[str]) -> Tensor:
    """A copy of the conditioning ``cond (P,)`` (entries named ``names``) with the entries
    ``hidden`` unknown (NaN): what an assimilator that estimates them is given."""
    out = cond.clone()
    out[[list(names).index(name) for name in hidden]] = float("nan")
    return out


def _given(cond: Tensor, members: int, cycles: int) -> Tensor:
    """Every member's conditioning at every cycle, ``(N, T, P)``, when nothing is estimated."""
    return cond.to(torch.float32)[None, None].expand(members, cycles, -1)


def _packed(latent: LogLikelihood, size: int, target: Tensor, sigma: Tensor) -> LogLikelihood:
    r"""A likelihood of packed states ``x = [z, q] (N, size + K)``: ``latent`` on ``z``,
    independent Gaussians of means ``target (K,)`` and standard deviations ``sigma (K,)`` on ``q``."""

    def log_p(x: Tensor) -> Tensor:
        return latent(x[:, :size]) - 0.5 * ((x[:, size:] - target) / sigma).square().sum(dim=-1)

    return log_p


@dataclass
class LatentAssimilator:
    """A latent forecaster, a score filter and an ensemble size: readings in, analysis
    ensembles out (see the module docstring). With an observation ``encoder`` (its estimated
    conditioning entries named by ``parameters``, in its order) the likelihood comes from the
    encoder's estimate instead of the decoder, and unknown conditioning entries are
    estimated with the state (:meth:`run`); twin experiments hide ``estimates`` from it
    (default: all of ``parameters``)."""

    forecaster: Forecaster
    filter: ScoreFilter
    members: int = 16
    encoder: ObservationEncoder | None = None
    parameters: tuple[str, ...] = ()
    estimates: tuple[str, ...] | None = None

    @property
    def estimated(self) -> tuple[str, ...]:
        return self.parameters if self.estimates is None else self.estimates

    def __post_init__(self) -> None:
        self.decode = decoder(self.forecaster)
        if self.members < 2:
            raise ValueError(f"need an ensemble of at least 2 members, got {self.members}")
        if self.encoder is not None:
            if len(self.parameters) != self.encoder.conditions:
                raise ValueError(f"the observation encoder estimates {self.encoder.conditions} conditioning "
                                 f"entries; {len(self.parameters)} names given: {list(self.parameters)}")
            self.encoder.to(self.forecaster.device).eval()

    def step(self, ensemble: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The forecast step: every member ``(N, c, h, w)`` one emulator state ahead, with its
        conditioning ``cond (N, P)`` (or ``(1, P)`` for all)."""
        f = self.forecaster
        window = rollout(f.emulator, ensemble[:, :, None], cond.expand(ensemble.shape[0], -1), 1, f.window,
                         members=1, bound=f.autoencoder.encoder.bound, sampler=f.sampler, generator=generator)
        return window[:, 0, :, 1]

    def _unknown(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """The positions of the unknown (NaN) entries of ``cond`` and of their estimates
        among the encoder's."""
        unknown = torch.isnan(cond).nonzero().flatten()
        names = [self.forecaster.condition_names[i] for i in unknown.tolist()]
        if names and (self.encoder is None or not set(names) <= set(self.parameters)):
            route = (f"this encoder estimates {list(self.parameters)}" if self.encoder is not None
                     else "this analysis goes through the decoder")
            raise ValueError(f"cond: {names} unknown (NaN); estimating them needs an observation encoder that "
                             f"estimates them, and {route}")
        return unknown, torch.tensor([self.parameters.index(n) for n in names], dtype=torch.long)

    def _aligned(self, sensors: Sensors, readings: Tensor) -> Tensor:
        """``readings (T, S)`` of ``sensors`` in the encoder's sensor order, ``(T, S')`` (NaN
        for the encoder's sensors that have no reading)."""
        encoder = self.encoder
        position = {key: s for s, key in enumerate(zip(sensors.channel.tolist(), map(tuple, sensors.index.tolist())))}
        order = [position.get(key, -1) for key in zip(encoder.channel.tolist(), map(tuple, encoder.index.tolist()))]
        if all(o < 0 for o in order):
            raise ValueError("none of the readings' sensors is in the observation encoder's layout (channel and "
                             f"grid index): it reads {encoder.sensors} sensors, e.g. channel "
                             f"{int(encoder.channel[0])} at {encoder.index[0].tolist()}")
        padded = torch.cat([readings, torch.full_like(readings[:, :1], float("nan"))], dim=1)
        return padded[:, order]

    @torch.no_grad()
    def run(self, initial: Tensor, cond: Tensor, sensors: Sensors, readings: Tensor,
            generator: torch.Generator | None = None) -> Analysis:
        """Assimilate from the physical state ``initial (C, H, W)`` with conditioning ``cond
        (P,)``: ``readings (T, S)`` are the readings ``stride`` stored steps apart after it
        (NaN: missing; a row of NaN: a pure forecast step). NaN entries of ``cond`` are
        unknown: the members start from the encoder's prior of them (its training split's
        mean and spread), each forecasts with its own, and the analysis updates them with
        the latents, packed as ``x = [z, (p - mean) / spread]`` (kept within 3 spreads)."""
        f, device = self.forecaster, self.forecaster.device
        n, bound = self.members, f.autoencoder.encoder.bound
        z = _initial(f, initial).expand(n, -1, -1, -1).contiguous()
        shape, size = z.shape[1:], z[0].numel()
        cond, readings = cond.to(device, torch.float32), readings.to(device, torch.float32)
        unknown, estimated = self._unknown(cond)
        members = cond.expand(n, -1).clone()
        if self.encoder is not None:
            mean, spread = self.encoder.parameter_mean[estimated], self.encoder.parameter_std[estimated]
            members[:, unknown] = mean + spread * torch.randn(n, len(unknown), generator=generator, device=device)
            encoded = self._aligned(sensors, readings)
        state, analyses, conds = None, [], []
        for k, values in enumerate(readings):
            z = self.step(z, members, generator)
            if self.encoder is None:
                log_p = sensors.log_likelihood(values, self.decode)
                if log_p is not None:
                    z = self.filter.analysis(z, log_p, generator).clamp(-bound, bound)
            else:
                latent, estimate, state = self.encoder(encoded[k][None, None], state)
                if bool(torch.isfinite(values).any()):
                    log_p = _packed(self.encoder.latent_log_likelihood(latent[0, 0]), size,
                                    (estimate.flatten()[estimated] - mean) / spread,
                                    self.encoder.parameter_error[estimated] / spread)
                    x = torch.cat([z.flatten(1), (members[:, unknown] - mean) / spread], dim=1)
                    x = self.filter.analysis(x, log_p, generator)
                    z = x[:, :size].unflatten(1, shape).clamp(-bound, bound)
                    members[:, unknown] = mean + spread * x[:, size:].clamp(-3, 3)
            analyses.append(z)
            conds.append(members.clone())
        return Analysis(torch.stack(analyses, dim=2), torch.stack(conds, dim=1))


@dataclass
class GuidedForecast:
    """A diffusion forecaster guided toward the readings by MMPS (``iterations``: of the
    linear solver in azula's ``MMPSDenoiser``): readings in, ``members`` forecast draws out
    (see the module docstring)."""

    forecaster: Forecaster
    iterations: int = 1
    members: int = 16
    estimated: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.decode = decoder(self.forecaster)
        if not self.forecaster.emulator.stochastic:
            raise ValueError(f"MMPS guides a diffusion emulator; this forecaster is a {self.forecaster.kind}")
        self.forecaster.emulator.requires_grad_(False)  # MMPS differentiates the denoiser in x_t only

    def guidance(self, sensors: Sensors, readings: Tensor, window: int) -> Callable[[int, int], object]:
        """The rollout's ``guidance``: for a window whose new states start at forecast index
        ``first`` after ``known`` known states, MMPS on the readings of those states (``None``
        where none is read)."""
        from azula.guidance import MMPSDenoiser
        from azula.linalg.covariance import DiagonalCovariance

        def guide(first: int, known: int) -> Callable | None:
            values = readings[first : first + window - known]  # (K, S): the new states' readings
            seen = torch.isfinite(values)
            if not bool(seen.any()):
                return None
            y = values[seen]  # (D,)
            variance = sensors.noise_std.to(values).expand_as(values)[seen].square()

            def observe(x: Tensor) -> Tensor:  # (B, c, L, h, w) -> (B, D)
                new = x[:, :, known : known + values.shape[0]].movedim(2, 1)  # (B, K, c, h, w)
                read = sensors.read(self.decode(new.flatten(0, 1))).unflatten(0, new.shape[:2])  # (B, K, S)
                return read[:, seen]

            return lambda denoiser: MMPSDenoiser(denoiser, y, observe, DiagonalCovariance(variance),
                                                 iterations=self.iterations)

        return guide

    def run(self, initial: Tensor, cond: Tensor, sensors: Sensors, readings: Tensor,
            generator: torch.Generator | None = None) -> Analysis:
        """Forecast from the physical state ``initial (C, H, W)`` with conditioning ``cond (P,)``
        through ``readings (T, S)`` (``stride`` stored steps apart after it; NaN: missing),
        each window guided by its readings: latents ``(N, c, T, h, w)``."""
        f = self.forecaster
        device = f.device
        readings = readings.to(device, torch.float32)
        guidance = self.guidance(Sensors(*(t.to(device) for t in (sensors.channel, sensors.index, sensors.noise_std))),
                                 readings, f.window)
        window = rollout(f.emulator, _initial(f, initial)[:, :, None], cond.to(device, torch.float32)[None],
                         readings.shape[0], f.window, f.overlap, self.members, f.autoencoder.encoder.bound, guidance,
                         sampler=f.sampler, generator=generator)  # (1, N, c, 1 + T, h, w)
        return Analysis(window[0, :, :, 1:], _given(cond, self.members, readings.shape[0]))


@dataclass
class FreeForecast:
    """The forecaster's own ensemble forecast, readings ignored: the reference the
    assimilating methods are compared with (a diffusion emulator's draws seeded by the
    generator's seed)."""

    forecaster: Forecaster
    members: int = 16
    estimated: tuple[str, ...] = ()

    def run(self, initial: Tensor, cond: Tensor, sensors: Sensors, readings: Tensor,
            generator: torch.Generator | None = None) -> Analysis:
        """``members`` forecasts of ``readings.shape[0]`` states from ``initial (C, H, W)``."""
        seed = None if generator is None else generator.initial_seed()
        latents = self.forecaster.forecast(initial[None, :, None], cond[None], readings.shape[0], self.members, seed,
                                           decode=False)[0, :, :, 1:]
        return Analysis(latents, _given(cond, self.members, readings.shape[0]))


register(Method("free", "free forecast", lambda s: FreeForecast(s.forecaster, s.members)))
register(Method("ensf", "latent EnSF", lambda s: LatentAssimilator(s.forecaster, s.filter, s.members), served=True))
register(Method("encoded", "latent EnSF, encoder route",
                lambda s: LatentAssimilator(s.forecaster, s.encoder_filter, s.members, s.encoder, s.parameters,
                                            s.estimate)))
register(Method("mmps", "MMPS-guided diffusion", lambda s: GuidedForecast(s.forecaster, s.iterations, s.members),
                diffusion=True, served=True))


def request(forecaster: Forecaster, inputs: dict[str, Any]) -> tuple[Tensor, Tensor, Sensors, Tensor]:
    """An assimilation request to a registered model, checked: ``inputs`` has ``states (1, 1,
    H, W, C)`` (the initial state), ``cond (1, P)`` (NaN: unknown) and all of
    :data:`OBSERVATION_INPUTS` (the readings ``stride`` stored steps apart after the initial
    state). Returns the initial state ``(C, H, W)``, ``cond (P,)``, the sensors and the
    readings ``(T, S)``; a ``ValueError`` that names the input otherwise."""
    missing = sorted(OBSERVATION_INPUTS - set(inputs))
    require([(not missing, f"an assimilation request needs all of {sorted(OBSERVATION_INPUTS)}; missing {missing}")])
    states = torch.as_tensor(np.asarray(inputs["states"], dtype=np.float32))
    cond = torch.as_tensor(np.asarray(inputs["cond"], dtype=np.float32))
    channels, names = list(forecaster.normalizer.channels), forecaster.condition_names
    require([(states.ndim == 5 and states.shape[:2] == (1, 1) and states.shape[-1] == len(channels)
              and cond.shape == (1, len(names)),
              f"an assimilation request takes one initial state, states (1, 1, H, W, {len(channels)}), "
              f"and cond (1, {len(names)}); got {tuple(states.shape)} and {tuple(cond.shape)}")])
    channel = torch.as_tensor(np.asarray(inputs["sensor_channel"]))
    index = torch.as_tensor(np.asarray(inputs["sensor_index"]))
    std = torch.as_tensor(np.asarray(inputs["noise_std"], dtype=np.float32))
    readings = torch.as_tensor(np.asarray(inputs["readings"], dtype=np.float32))
    s = channel.shape[0] if channel.ndim == 1 else -1
    require([
        (channel.ndim == 1 and not channel.is_floating_point(),
         f"sensor_channel must be (S,) integers, got {tuple(channel.shape)} {channel.dtype}"),
        (index.shape == (s, 2) and not index.is_floating_point(),
         f"sensor_index must be (S, 2) integers, S = {s}, got {tuple(index.shape)} {index.dtype}"),
        (std.shape == (s,) and bool((std > 0).all()), f"noise_std must be (S,) and positive, S = {s}, got "
                                                      f"{tuple(std.shape)}"),
        (readings.ndim == 2 and readings.shape[1] == s and readings.shape[0] >= 1,
         f"readings must be (T, S), S = {s}, got {tuple(readings.shape)}"),
        (lambda: not bool(((channel < 0) | (channel >= len(channels))).any()),
         lambda: f"sensor_channel: values must be channel indices in [0, {len(channels)}) ({channels}), "
                 f"got {sorted(set(channel.tolist()))[:8]}"),
    ])
    away = outside(index, states.shape[2:4])  # (S,)
    if bool(away.any()):
        first = int(away.nonzero()[0])
        raise ValueError(f"sensor_index: sensor {first} at {index[first].tolist()} is outside the "
                         f"{states.shape[2]}x{states.shape[3]} grid")
    return states[0, 0].permute(2, 0, 1), cond[0], Sensors(channel.long(), index.long(), std), readings


def physical(forecaster: Forecaster, initial: Tensor, latents: Tensor) -> np.ndarray:
    """The initial state ``(C, H, W)`` and the decoded analysis ensembles ``latents (M, c, T,
    h, w)``, ``(1, M, 1 + T, H, W, C)`` in physical units (The Well's channels-last layout)."""
    analysis = forecaster.from_space(latents)  # (M, C, T, H, W)
    first = initial.to(analysis)[None, :, None].expand(analysis.shape[0], -1, -1, -1, -1)
    return torch.cat([first, analysis], dim=2).permute(0, 2, 3, 4, 1)[None].cpu().numpy()


def answer(forecaster: Forecaster, inputs: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    """An assimilation request (:func:`request`) to a registered forecaster; ``params`` has
    ``method`` (``ensf``: the latent score filter with :class:`ScoreFilter`'s defaults;
    ``mmps``: guided diffusion), ``members`` (at least 2) and ``seed``. Returns the initial
    state and the ``M`` analysis members, ``(1, M, 1 + T, H, W, C)`` in physical units."""
    initial, cond, sensors, readings = request(forecaster, inputs)
    method, members = str(params["method"]), int(params["members"])
    methods = {name: m for name, m in METHODS.items() if m.served}
    if method not in methods:
        raise ValueError(f"param method: {method!r} is not a method; valid methods are {sorted(methods)}")
    if members < 2:
        raise ValueError(f"param members: an assimilation needs at least 2 members, got {members}")
    assimilator = methods[method].build(Setup(forecaster, members))
    analysis = assimilator.run(initial, cond, sensors, readings, torch.Generator().manual_seed(int(params["seed"])))
    return physical(forecaster, initial, analysis.latents)
