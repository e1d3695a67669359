"""The space-time transformer backbone: shapes, relative rotary positions, adaLN
conditioning, value residuals."""

from __future__ import annotations

import torch

from models.transformer import AxialRotary, SpaceTimeTransformer


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the zero initialisations (head, modulations) so outputs depend on everything."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.1)
    return model


def test_latent_and_pixel_shapes():
    latent = SpaceTimeTransformer(in_channels=17, out_channels=16, cond_features=13, width=32, depth=2, heads=2)
    x = torch.randn(3, 17, 5, 4, 4)  # (B, C, L, H, W)
    assert latent(x, torch.randn(3, 13)).shape == (3, 16, 5, 4, 4)
    pixel = SpaceTimeTransformer(in_channels=6, out_channels=5, cond_features=13, width=32, depth=2, heads=2, patch=4)
    assert pixel(torch.randn(2, 6, 5, 16, 16), torch.randn(2, 13)).shape == (2, 5, 5, 16, 16)


def test_fresh_model_is_zero_and_blocks_start_as_identities():
    model = SpaceTimeTransformer(4, 4, 3, width=16, depth=2, heads=2)
    assert model(torch.randn(2, 4, 3, 4, 4), torch.randn(2, 3)).abs().max() == 0  # zero head


def test_rotary_scores_depend_only_on_relative_positions():
    rotary = AxialRotary(head_dim=24)
    q, k = torch.randn(1, 1, 1, 24), torch.randn(1, 1, 1, 24)
    p, r = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 0, 7]])
    shift = torch.tensor([[5, -3, 2]])
    score = (rotary(q, p) * rotary(k, r)).sum()
    shifted = (rotary(q, p + shift) * rotary(k, r + shift)).sum()
    assert torch.allclose(score, shifted, atol=1e-5)
    moved = (rotary(q, p + shift) * rotary(k, r)).sum()
    assert not torch.allclose(score, moved, atol=1e-3)


def test_conditioning_modulates_every_output():
    model = randomize(SpaceTimeTransformer(4, 4, 3, width=16, depth=2, heads=2)).eval()
    x = torch.randn(1, 4, 3, 4, 4).expand(2, -1, -1, -1, -1)
    y = model(x, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))
    assert not torch.allclose(y[0], y[1], atol=1e-4)


def test_value_residual_mix_is_learned():
    model = randomize(SpaceTimeTransformer(4, 4, 3, width=16, depth=3, heads=2))
    model(torch.randn(2, 4, 3, 4, 4), torch.randn(2, 3)).square().mean().backward()
    later = [block.attention.value_mix.grad for block in model.blocks[1:]]
    assert all(g is not None and g.abs().sum() > 0 for g in later)
    assert model.blocks[0].attention.value_mix.grad is None or model.blocks[0].attention.value_mix.grad.abs().sum() == 0


def test_the_absolute_position_embedding_tells_boundary_tokens_from_interior_ones():
    """Identical tokens: with RoPE alone every token attends to identical values, so every
    output is the same and a token cannot know it sits next to a boundary; the absolute
    embedding makes the corner, edge and interior outputs differ."""
    model = randomize(SpaceTimeTransformer(4, 4, 3, width=24, depth=2, heads=2)).eval()
    x, cond = torch.ones(1, 4, 3, 4, 4), torch.zeros(1, 3)  # (B, C, L, H, W), constant
    with torch.no_grad():
        y = model(x, cond)[0, :, 1]  # (C, H, W), middle state
        assert not torch.allclose(y[:, 0, 0], y[:, 1, 1], atol=1e-4)  # corner vs interior
        assert not torch.allclose(y[:, 0, 1], y[:, 1, 1], atol=1e-4)  # edge vs interior
        torch.nn.init.zeros_(model.position.proj.weight)  # without it: every token alike
        torch.nn.init.zeros_(model.position.proj.bias)
        y = model(x, cond)[0]
        assert torch.allclose(y, y[:, :1, :1, :1].expand_as(y), atol=1e-5)
