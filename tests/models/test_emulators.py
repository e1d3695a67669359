"""Latent emulators: known states come back unchanged, diffusion members differ while a
solver's are identical, rollouts stay finite, sampler settings set the denoiser calls."""

from __future__ import annotations

import pytest
import torch

from models.emulators import DiffusionEmulator, NeuralSolver, random_context_mask
from models.rollout import rollout
from models.samplers import ODESampler
from tests.models.test_transformer import randomize

C, P, L = 4, 3, 5


def emulators() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "diffusion": randomize(DiffusionEmulator(C, P, width=16, depth=2, heads=2, time_features=8)).eval(),
        "solver": randomize(NeuralSolver(C, P, width=16, depth=2, heads=2)).eval(),
        "pixel_solver": randomize(NeuralSolver(C, P, width=16, depth=2, heads=2, patch=4)).eval(),  # 4^2 patches
    }


@pytest.mark.parametrize("kind", ["diffusion", "solver"])
def test_known_states_come_back_unchanged(kind):
    emulator = emulators()[kind]
    x = torch.randn(3, C, L, 4, 4)
    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    y = emulator.sample(x, mask, torch.randn(3, P), sampler=ODESampler(steps=4))
    for i in range(3):
        assert torch.equal(y[i][:, mask[i]], x[i][:, mask[i]])
        assert not torch.allclose(y[i][:, ~mask[i]], x[i][:, ~mask[i]])


def test_diffusion_members_differ_and_solver_members_agree():
    models = emulators()
    initial, cond = torch.randn(2, C, 1, 4, 4), torch.randn(2, P)
    ensemble = rollout(models["diffusion"], initial, cond, horizon=8, window=L, members=3)
    assert ensemble.shape == (2, 3, C, 9, 4, 4)
    assert not torch.allclose(ensemble[:, 0, :, 1:], ensemble[:, 1, :, 1:])
    solver = rollout(models["solver"], initial, cond, horizon=8, window=L, members=3)
    assert torch.equal(solver[:, 0], solver[:, 1]) and torch.equal(solver[:, 1], solver[:, 2])
    assert torch.equal(solver[:, :, :, :1], initial[:, None].expand(-1, 3, -1, -1, -1, -1))


@pytest.mark.parametrize(("kind", "size"), [("diffusion", 4), ("solver", 4), ("pixel_solver", 16)])
def test_hundred_step_rollout_stays_finite(kind, size):
    emulator = emulators()[kind]
    out = rollout(emulator, torch.randn(1, C, 1, size, size), torch.randn(1, P), horizon=100, window=L, overlap=1,
                  members=2, **({"sampler": ODESampler(steps=2)} if kind == "diffusion" else {}))
    assert out.shape == (1, 2, C, 101, size, size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("sampler", "order", "steps", "calls"), [
    ("zab", 3, 16, 16), ("zab", 3, 8, 8), ("zab", 1, 5, 5), ("euler", 1, 6, 6), ("heun", 1, 6, 12),  # Heun: two denoiser calls per step
])
def test_sampler_settings_set_the_number_of_denoiser_calls(sampler, order, steps, calls):
    emulator = emulators()["diffusion"]
    count = []
    emulator.backbone.register_forward_hook(lambda *args: count.append(1))
    x, mask = torch.randn(1, C, L, 4, 4), torch.tensor([[True, False, False, False, False]])
    emulator.sample(x, mask, torch.randn(1, P), sampler=ODESampler(sampler, order, steps))
    assert len(count) == calls


def test_generator_makes_sampling_reproducible():
    emulator = emulators()["diffusion"]
    x, mask, cond = torch.randn(2, C, L, 4, 4), torch.tensor([[True, False, False, False, False]] * 2), torch.randn(2, P)
    a = emulator.sample(x, mask, cond, sampler=ODESampler(steps=3), generator=torch.Generator().manual_seed(1))
    b = emulator.sample(x, mask, cond, sampler=ODESampler(steps=3), generator=torch.Generator().manual_seed(1))
    c = emulator.sample(x, mask, cond, sampler=ODESampler(steps=3), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_losses_are_finite_and_differentiable():
    for model in emulators().values():
        model.train()
        x, cond = torch.randn(4, C, L, 4, 4), torch.randn(4, P)
        loss = model.loss(x, random_context_mask(4, L, generator=torch.Generator().manual_seed(0)), cond)
        loss.backward()
        assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_random_context_masks():
    g = torch.Generator().manual_seed(0)
    masks = random_context_mask(2000, L, rate=1.5, flip=0.25, generator=g)
    known = masks.sum(1)
    assert known.min() >= 1 and known.max() <= L - 1
    forward = masks[:, 0] & ~masks[:, -1]
    backward = masks[:, -1] & ~masks[:, 0]
    assert (forward | backward).all()
    assert 0.2 < backward.float().mean() < 0.3
    # Known states are contiguous at one end.
    assert all(m[: int(n)].all() for m, n in zip(masks[forward], known[forward]))


def test_a_bounded_rollout_stays_inside_the_latent_bound():
    emulator = emulators()["solver"]
    with torch.no_grad():
        emulator.backbone.net.head.bias.fill_(50.0)  # predicts far outside the bound
    out = rollout(emulator, torch.zeros(1, C, 1, 4, 4), torch.randn(1, P), horizon=8, window=L, bound=5.0)
    assert out[:, :, :, 1:].abs().max() == 5.0
    free = rollout(emulator, torch.zeros(1, C, 1, 4, 4), torch.randn(1, P), horizon=8, window=L)
    assert free.abs().max() > 5.0


def test_the_diffusion_loss_ignores_the_known_states():
    """The denoiser's output at known states is never scored: making it arbitrarily wrong
    there leaves the loss unchanged, while the same change at unknown states moves it."""
    model = emulators()["diffusion"].train()
    x, cond = torch.randn(3, C, L, 4, 4), torch.randn(3, P)
    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)

    def loss_with(offset: torch.Tensor | None) -> torch.Tensor:
        handle = None
        if offset is not None:  # added to the backbone's output
            handle = model.backbone.register_forward_hook(lambda module, args, out: out + offset)
        torch.manual_seed(5)  # the same diffusion times and noise
        try:
            return model.loss(x, mask, cond)
        finally:
            if handle is not None:
                handle.remove()

    known = mask[:, None, :, None, None].expand_as(x).float()
    reference = loss_with(None)
    assert torch.allclose(loss_with(100.0 * known), reference)
    assert not torch.allclose(loss_with(100.0 * (1 - known)), reference)


def test_context_masks_follow_lolas_distribution():
    """k = 1 + Poisson(1) mod (L - 1): mean 1.92 for L = 5; flip share as asked."""
    masks = random_context_mask(20000, L, rate=1.0, flip=0.34, generator=torch.Generator().manual_seed(0))
    assert abs(masks.sum(1).float().mean() - 1.92) < 0.03
    assert abs((masks[:, -1] & ~masks[:, 0]).float().mean() - 0.34) < 0.02


def test_rollout_guides_each_window_toward_its_observations():
    """MMPS (azula) through ``rollout(guidance=...)``: each window is asked for its guide with
    the index of its first new state; observed latent entries of the guided draws land
    near the observations, the unguided ones do not."""
    from azula.guidance import MMPSDenoiser
    from azula.linalg.covariance import DiagonalCovariance

    emulator = emulators()["diffusion"]
    initial, cond, horizon = torch.randn(1, C, 1, 4, 4), torch.randn(1, P), 8
    target = torch.full((horizon,), 2.0)  # channel 0 at (0, 0), every new state
    calls = []

    def guidance(first: int, known: int):
        calls.append((first, known))
        y = target[first : first + L - known]

        def observe(x: torch.Tensor) -> torch.Tensor:  # (B, C, L, h, w) -> (B, L - known)
            return x[:, 0, known:, 0, 0]

        return lambda denoiser: MMPSDenoiser(denoiser, y, observe, DiagonalCovariance(torch.full_like(y, 1e-4)))

    kwargs = {"horizon": horizon, "window": L, "members": 4, "sampler": ODESampler(steps=8)}
    guided = rollout(emulator, initial, cond, guidance=guidance, generator=torch.Generator().manual_seed(0), **kwargs)
    free = rollout(emulator, initial, cond, generator=torch.Generator().manual_seed(0), **kwargs)
    assert calls == [(0, 1), (4, 1)]  # windows of L - 1 = 4 new states after one known state
    error = lambda x: (x[0, :, 0, 1:, 0, 0] - target).abs().mean()  # noqa: E731
    assert float(error(guided)) < 0.2 * float(error(free)), (float(error(guided)), float(error(free)))
    assert not torch.allclose(guided[0, 0, :, 1:], guided[0, 1, :, 1:])  # still independent draws
