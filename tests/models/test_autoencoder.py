"""The autoencoder's parts: near-identity resampling, bounded latents, compression rates."""

from __future__ import annotations

import pytest
import torch

from models.autoencoder import Autoencoder
from models.layers import Downsample, Upsample, saturate


@pytest.mark.parametrize("factor", [2, 4])
def test_fresh_resampling_pair_is_near_identity(factor):
    torch.manual_seed(0)
    channels = 6
    down, up = Downsample(channels, channels * factor**2, factor), Upsample(channels * factor**2, channels, factor)
    x = torch.randn(3, channels, 16, 16)
    with torch.no_grad():
        z = down(x)
        y = up(z)
    assert z.shape == (3, channels * factor**2, 16 // factor, 16 // factor)
    relative = (y - x).norm() / x.norm()
    assert relative < 0.05, relative
    # A randomly initialised pair is nowhere near the identity: the init is what does it.
    for module in (down, up):
        torch.nn.init.kaiming_uniform_(module.conv.weight)
    with torch.no_grad():
        assert (up(down(x)) - x).norm() / x.norm() > 0.5


def test_near_identity_copies_an_input_to_every_output_channel():
    """LoLA's init: output channel i copies input channel i % in (up to the 1e-2 noise), for
    more outputs than inputs too; the patchify layers keep PyTorch's default init."""
    from models.layers import near_identity_

    torch.manual_seed(0)
    conv = near_identity_(torch.nn.Conv2d(3, 8, 3, padding=1))
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        y = conv(x)
    expected = x[:, [i % 3 for i in range(8)]]
    assert (y - expected).norm() / expected.norm() < 0.05
    model = Autoencoder(5, 4, patch=4, widths=(8, 16), blocks=(1, 1))
    patchify, unpatchify = model.encoder.net[0].conv, model.decoder.net[-1].conv
    for conv in (patchify, unpatchify):
        assert conv.weight[:, :, 1, 1].abs().max() < 0.5  # no 1 on a diagonal


def test_saturation_is_bounded_and_near_identity_at_zero():
    z = torch.linspace(-1e4, 1e4, 10001)
    assert saturate(z, 5.0).abs().max() <= 5.0
    assert saturate(z.double(), 5.0).abs().max() < 5.0  # strictly inside, up to float32 rounding
    small = torch.linspace(-0.1, 0.1, 11)
    assert torch.allclose(saturate(small, 5.0), small, atol=1e-3)


def test_encoder_outputs_respect_the_bound():
    torch.manual_seed(0)
    model = Autoencoder(5, 4, patch=2, widths=(8, 16), blocks=(1, 1), attention_heads=2, bound=2.0)
    x = 1e3 * torch.randn(4, 5, 16, 16)
    z = model.encode(x)
    assert z.abs().max() <= 2.0
    assert z.abs().max() > 1.0  # large inputs do push it towards the bound


@pytest.mark.parametrize(("latent_channels", "rate"), [(16, 80), (4, 320), (1, 1280)])
def test_default_architecture_gives_the_papers_compression_rates(latent_channels, rate):
    model = Autoencoder(5, latent_channels)  # patch 4, three levels: 16x downsampling
    x = torch.randn(2, 5, 64, 64)
    z = model.encode(x)
    assert z.shape == (2, latent_channels, 4, 4)
    assert model.decode(z).shape == x.shape
    assert model.compression_rate == rate == x[0].numel() / z[0].numel()
