"""Networks: shapes, ranges, gradients, block locality, bf16, determinism and config validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nestgan.config import discriminator_preset_name, resolve_discriminator
from nestgan.errors import ConfigError
from nestgan.loss import r1_penalty
from nestgan.networks import (DISCRIMINATORS, build_discriminator, generator_from_config, discriminator_preset,
                              generator_preset)
from nestgan.networks.conv import check_resolution
from nestgan.networks.nest import (BorderConv, ConvDeaggregation, ConvMlp, LinearDeaggregation, NesTGenerator,
                                  NesTLevel, OutConv, PixelShuffleDeaggregation, unblockify)
from nestgan.networks.transformer import AdaptiveLayerNorm, Attention
from nestgan.networks.summary import count_flops, count_parameters, forward_flops
from nestgan.presets import preset_names

TINY_NEST = dict(arch="nest", z_dim=16, init_size=4, block_size=2, widths=[32, 16], depths=[1, 1], heads=[2, 2])
HEAVY = {"transgan-32", "transgan-64"}  # paper configs: forward only, batch 1
BUILD_ONLY = {"transgan-128-matched": 128}  # a benchmark preset: 16384-token global attention, too big to run here


def stock_discriminator(arch: str, resolution: int) -> torch.nn.Module:
    """What train_gan.py builds for --d <arch> at this resolution: nest through its preset nest-d-<resolution>."""
    name = discriminator_preset_name(arch, resolution, {})
    return build_discriminator(arch, resolution, **(resolve_discriminator(arch, name, {}) if name else {}))


@pytest.mark.parametrize("name", preset_names("generators"))
def test_generator_presets_shape_range_and_gradients(name):
    g = generator_from_config(generator_preset(name))
    if name in BUILD_ONLY:
        assert g.resolution == BUILD_ONLY[name]
        return
    batch = 1 if name in HEAVY else 2
    z = torch.randn(batch, g.z_dim)
    if name in HEAVY:
        with torch.no_grad():
            x = g(z)
    else:
        x = g(z)
        x.square().mean().backward()
        grads = [p.grad for p in g.parameters() if p.requires_grad]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
        assert sum(gr.abs().sum().item() for gr in grads) > 0
    assert x.shape == (batch, 3, g.resolution, g.resolution)
    assert x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert f"-{g.resolution}" in name  # <arch>-<resolution>[-variant]: the name says the resolution it builds


@pytest.mark.parametrize("arch", sorted(DISCRIMINATORS))
@pytest.mark.parametrize("resolution", [32, 64])
def test_discriminators_logits_and_gradients(arch, resolution):
    d = stock_discriminator(arch, resolution)
    x = torch.randn(6, 3, resolution, resolution, requires_grad=True)  # 6 is not a multiple of the mbstd group
    logits = d(x.contiguous(memory_format=torch.channels_last))
    assert logits.shape == (6,) or (arch == "projected" and logits.shape[0] == 6 and logits.ndim == 2)  # patch logits
    logits.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", sorted(DISCRIMINATORS))
@pytest.mark.parametrize("resolution", [32, 64])
def test_fresh_discriminator_logits_depend_on_the_image(arch, resolution):
    # With PyTorch's default init the residual D's logits varied by ~1e-5 across images: it could not learn.
    torch.manual_seed(0)
    d = stock_discriminator(arch, resolution)
    images = torch.rand(16, 3, resolution, resolution) * 2 - 1
    with torch.no_grad():
        assert d(images).std() > 0.02


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_nest_discriminator_presets_take_r1_through_attention(resolution, precision):
    """R1 differentiates d logits / d x once more: through block attention too, in fp32 and under bf16 autocast."""
    d = stock_discriminator("nest", resolution)
    x = torch.randn(4, 3, resolution, resolution, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = d(x)
    assert logits.shape == (4,)
    penalty = r1_penalty(logits, x)
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty) and penalty > 0
    penalty.backward()  # the double backward; the fused attention kernels raise here
    qkv = d.levels[0].layers[0].attn.qkv.weight.grad
    assert qkv is not None and torch.isfinite(qkv).all() and qkv.abs().sum() > 0


def test_nest_discriminator_presets_are_lighter_than_the_resnet_one():
    for resolution in (32, 64, 128):
        nest, resnet = stock_discriminator("nest", resolution), stock_discriminator("resnet", resolution)
        image = torch.randn(1, 3, resolution, resolution)
        assert count_flops(nest, image) < count_flops(resnet, image) / 5
        assert count_parameters(nest) < count_parameters(resnet)


def test_nest_discriminator_attention_stays_in_its_block_and_aggregation_crosses_it():
    d = stock_discriminator("nest", 32).eval()
    x = torch.zeros(1, 3, 32, 32)
    x[..., :2, :2] = 1  # the top-left patch, in the top-left 4x4-token block of the 16x16 map
    with torch.no_grad():
        level0 = d.levels[0](d.patch_embed(x).permute(0, 2, 3, 1).contiguous())  # (1, 16, 16, 64)
        base = d.levels[0](d.patch_embed(torch.zeros_like(x)).permute(0, 2, 3, 1).contiguous())
        changed = (level0 - base).abs().amax(dim=-1)[0]
        assert changed[:4, :4].max() > 0 and changed[4:].max() == 0 and changed[:, 4:].max() == 0
        merged = (d.aggregations[0](level0) - d.aggregations[0](base)).abs().amax(dim=-1)[0]
    assert merged.shape == (8, 8)  # 2x2 blocks merged into one: the block's footprint is now tokens 0-1
    assert merged[2, 2] > 0  # conv and max-pool carried the change past it


@pytest.mark.parametrize("override, message", [
    (dict(patch_size=3), "cannot be halved"),
    (dict(widths=[64, 128, 256, 512], depths=[1, 1, 1, 1], heads=[1, 1, 1, 1]), "cannot be halved"),
    (dict(heads=[3, 4, 8]), "width 64 is not divisible by its 3 heads"),
    (dict(depths=[1, 1]), "same non-zero length"),
])
def test_bad_nest_discriminator_configs_are_rejected(override, message):
    preset = {k: v for k, v in discriminator_preset("nest-d-32").items() if k != "arch"}
    with pytest.raises(ConfigError, match=message):
        build_discriminator("nest", 32, **{**preset, **override})


def test_dcgan_spectral_norm_option():
    d = build_discriminator("dcgan", 32, norm="spectral")
    assert any("parametrizations" in n for n, _ in d.named_parameters())
    assert d(torch.randn(2, 3, 32, 32)).shape == (2,)


def test_dcgan_networks_are_the_papers_at_64_px():
    """Radford et al.'s 64 px networks with ngf = ndf = 64: the PyTorch reference's layer shapes and parameter counts."""
    g = generator_from_config(generator_preset("dcgan-64"))
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (100, 512, 1), (512, 256, 2), (256, 128, 2), (128, 64, 2), (64, 3, 2)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) == 4
    assert count_parameters(g) == 3_576_704
    d = build_discriminator("dcgan", 64, norm="batch")
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3  # none after the first conv
    assert count_parameters(d) == 2_765_568
    # N(0, 0.02) conv weights, N(1, 0.02) BatchNorm weights
    assert abs(convs[2].weight.std().item() - 0.02) < 0.002
    bn = next(m for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert abs(bn.weight.mean().item() - 1) < 0.01 and 0.01 < bn.weight.std().item() < 0.03


def test_bf16_block_attention_on_cpu_matches_fp32():
    """Under bf16 on a CPU the attention takes the math kernel; its output and gradients match fp32's."""
    torch.manual_seed(0)
    level = NesTLevel(map_size=8, block_size=4, dim=32, depth=1, heads=2, mlp_ratio=2.0, parallel=False)
    x = torch.randn(3, 8, 8, 32)
    out32 = level(x)
    out32.square().mean().backward()
    grads32 = [p.grad.clone() for p in level.parameters()]
    level.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = level(x)
    out16.float().square().mean().backward()
    torch.testing.assert_close(out16.float(), out32, atol=0.05, rtol=0.05)
    for g16, g32 in zip((p.grad for p in level.parameters()), grads32):
        assert torch.nn.functional.cosine_similarity(g16.flatten().float(), g32.flatten(), dim=0) > 0.98


def blockify(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """The reference block layout, unblockify's inverse: (B, H, W, C) -> (B, T, N, C), T = (H/s)*(W/s) blocks in
    row-major order, N = s*s tokens per block."""
    b, h, w, c = x.shape
    s = block_size
    x = x.view(b, h // s, s, w // s, s, c).transpose(2, 3)  # (B, H/s, W/s, s, s, C)
    return x.reshape(b, (h // s) * (w // s), s * s, c)


def test_blockify_unblockify_exact_inverses_and_layout():
    x = torch.randn(2, 8, 8, 5)
    blocks = blockify(x, 4)
    assert blocks.shape == (2, 4, 16, 5)
    assert torch.equal(unblockify(blocks, 4), x)
    # block 1 is the top-right 4x4 square; its token 5 is row 1, column 1 inside it -> map pixel (1, 5)
    assert torch.equal(blocks[:, 1, 5], x[:, 1, 5])
    # spatial neighbours inside one 4x4 square share a block; across the border they do not
    assert torch.equal(blocks[:, 0, 3], x[:, 0, 3]) and torch.equal(blocks[:, 1, 0], x[:, 0, 4])


def test_attention_stays_inside_its_block():
    level = NesTLevel(map_size=8, block_size=4, dim=16, depth=2, heads=2, mlp_ratio=4.0, parallel=False).eval()
    x = torch.randn(1, 8, 8, 16)
    changed = x.clone()
    changed[0, 0:4, 0:4] += torch.randn(4, 4, 16)  # perturb block 0 (top-left) only
    with torch.no_grad():
        delta = (level(changed) - level(x)).abs().sum(dim=-1)[0]  # (8, 8)
    assert delta[0:4, 0:4].min() > 0  # every token of the block reacts
    assert delta[4:, :].max() == 0 and delta[:, 4:].max() == 0  # no other block does


def _next_level_blocks_changed(deagg: torch.nn.Module) -> torch.Tensor:
    """Perturb level-0 block 0 of an 8x8 map (block 4), de-aggregate, return which 16x16-map blocks changed."""
    x = torch.randn(1, 8, 8, 16)
    changed = x.clone()
    changed[0, 0:4, 0:4] += 1.0
    with torch.no_grad():
        delta = (deagg(changed) - deagg(x)).abs().sum(dim=-1)  # (1, 16, 16)
    return blockify(delta.unsqueeze(-1), 4).sum(dim=(2, 3))[0] > 0  # (16 blocks,)


def test_conv_deaggregation_reaches_neighbouring_blocks():
    changed = _next_level_blocks_changed(ConvDeaggregation(16, 8))
    # block 0's footprint after 2x upsampling is next-level blocks 0, 1, 4, 5; the 3x3 conv spills into 2 and 8
    assert changed[[0, 1, 4, 5]].all()
    assert changed[2] and changed[8]
    assert not changed[15]


def test_pixelshuffle_deaggregation_stays_in_the_parent_footprint():
    """Depth-to-space + Linear is per pixel: a block reaches only its own four children, no neighbour."""
    changed = _next_level_blocks_changed(PixelShuffleDeaggregation(16, 8))
    assert changed.nonzero().flatten().tolist() == [0, 1, 4, 5]


@pytest.mark.parametrize("upsample, reaches_neighbours", [("bilinear", True), ("nearest", False)])
def test_linear_deaggregation_reaches_neighbouring_blocks_only_when_bilinear(upsample, reaches_neighbours):
    changed = _next_level_blocks_changed(LinearDeaggregation(16, 8, upsample))
    assert changed[[0, 1, 4, 5]].all()
    # bilinear blends the footprint's edge rows with the next parents' over the border; nearest only copies
    assert bool(changed[2] and changed[8]) == reaches_neighbours
    assert not changed[15]


def test_linear_deaggregation_generator_is_cheaper_and_conv_free_before_its_rgb():
    linear = generator_from_config({**TINY_NEST, "deaggregation": "linear", "upsample": "bilinear",
                                    "head": "conv", "out_patch": 2})
    conv = generator_from_config({**TINY_NEST, "upsample": "bilinear", "head": "conv", "out_patch": 2})
    assert linear(torch.randn(2, 16)).shape == conv(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    assert isinstance(linear.head.up, LinearDeaggregation) and isinstance(conv.head.up, ConvDeaggregation)
    assert [type(m) for m in linear.deaggregations] == [LinearDeaggregation]
    assert forward_flops(linear) < forward_flops(conv)


class PassThrough(torch.nn.Module):
    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return x


@pytest.mark.parametrize("upsample, pairs_equal", [("nearest", True), ("bilinear", False)])
def test_conv_deaggregation_upsampling_makes_or_avoids_2x2_copies(upsample, pairs_equal):
    deagg = ConvDeaggregation(2, 2, upsample)
    deagg.norm = PassThrough()
    with torch.no_grad():  # a conv that passes its input through: what the conv is handed
        deagg.conv.weight.zero_()
        deagg.conv.bias.zero_()
        deagg.conv.weight[[0, 1], [0, 1], 1, 1] = 1.0
    ramp = torch.arange(8.0).view(1, 1, 8, 1).expand(1, 8, 8, 2)  # (B, H, W, C), rising along W
    out = deagg(ramp)[0, 4, 2:14, 0]  # one row of the 16x16 map, away from the padded borders
    within_pairs = (out[1::2] - out[0::2]).abs()  # columns 2k+1 - 2k: the two copies of one source pixel
    assert (within_pairs.max() == 0) == pairs_equal
    assert torch.allclose(out.diff(), out.diff().mean()) != pairs_equal  # bilinear: an even ramp


def test_out_conv_mixes_across_the_last_block_border():
    out_conv = OutConv(16)
    torch.nn.init.normal_(out_conv.conv.weight)  # a trained conv; a fresh one is zero
    x = torch.randn(1, 8, 8, 16)
    changed = x.clone()
    changed[0, 0:4, 0:4] += 1.0  # block 0 of a 4x4-token tiling
    with torch.no_grad():
        delta = (out_conv(changed) - out_conv(x)).abs().sum(dim=-1)[0]  # (8, 8)
    assert delta[0:4, 4].min() > 0 and delta[4, 0:4].min() > 0  # the neighbours' first row and column react
    assert delta[:, 5:].max() == 0 and delta[5:, :].max() == 0  # and nothing beyond the 3x3 reach


def test_out_conv_starts_as_the_same_generator_from_the_same_seed():
    torch.manual_seed(0)
    plain = generator_from_config(TINY_NEST)
    torch.manual_seed(0)
    with_conv = generator_from_config({**TINY_NEST, "out_conv": True})
    assert all(torch.equal(v, with_conv.state_dict()[k]) for k, v in plain.state_dict().items())
    z = torch.randn(2, 16)
    assert torch.equal(plain(z), with_conv(z))
    with_conv(z).square().mean().backward()
    assert with_conv.out_conv.conv.weight.grad.abs().sum() > 0  # zero weights, but they learn


MODULATED = {**TINY_NEST, "style": True, "mapping_layers": 2, "border_conv": True, "mlp_conv": True, "head": "conv",
             "out_patch": 2}


def test_adaptive_layer_norm_is_a_plain_layer_norm_until_its_style_learns():
    plain = AdaptiveLayerNorm(8)
    assert set(plain.state_dict()) == set(torch.nn.LayerNorm(8).state_dict())  # old checkpoints load unchanged
    styled = AdaptiveLayerNorm(8, style_dim=4)
    x, w = torch.randn(2, 3, 5, 8), torch.randn(2, 4)
    assert torch.allclose(styled(x, w), F.layer_norm(x, (8,)), atol=1e-6)  # fresh: w changes nothing yet
    torch.nn.init.normal_(styled.style.weight)
    out = styled(x, w)
    assert not torch.allclose(out[0], F.layer_norm(x[0], (8,)), atol=1e-3)
    swapped = styled(x, w.flip(0))  # each sample is modulated by its own w only
    assert torch.allclose(styled(x[:1], w[:1]), out[:1]) and not torch.allclose(swapped[0], out[0])


def test_modulated_generator_feeds_w_to_every_level_and_every_parameter_learns():
    g = generator_from_config(MODULATED)
    assert g.resolution == 16
    z = torch.randn(4, 16)
    g(z).square().mean().backward()
    no_grad = [n for n, p in g.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []  # zero-initialised style projections and border convs included
    styles = [m for m in g.modules() if isinstance(m, AdaptiveLayerNorm) and m.style is not None]
    assert len(styles) == 2 * 2 + 1 + 1 + 1  # two per layer, the de-aggregation, the head norm, the conv head
    with torch.no_grad():
        w = g.mapping(z)
    assert 0.3 < w.std() < 3  # He-initialised mapping keeps the latent's scale


def test_a_level_without_attention_is_border_convs_and_mlps_and_still_learns():
    g = generator_from_config({**TINY_NEST, "border_conv": True, "attention": [True, False]})
    fine = g.levels[1].layers[0]
    assert fine.attn is None and fine.norm1 is None and g.levels[0].layers[0].attn is not None
    assert not any(".1.layers.0.attn" in name for name in g.state_dict())
    z = torch.randn(2, 16)
    g(z).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    torch.nn.init.normal_(g.levels[1].border_convs[0].conv.weight)  # trained border convs mix across blocks
    plane = torch.randn(1, 8, 8, 16)
    changed = plane.clone()
    changed[0, 0:2, 0:2] += 1.0  # block 0 of the 2x2-token tiling
    with torch.no_grad():
        delta = (g.levels[1](changed) - g.levels[1](plane)).abs().sum(dim=-1)[0]
    assert delta[0:2, 2].min() > 0 and delta[3:, :].max() == 0  # its neighbour reacts, nothing beyond a 3x3 reach


@pytest.mark.parametrize("attention", [[True], [True, "no"]])
def test_attention_needs_one_flag_per_level(attention):
    with pytest.raises(ConfigError, match="attention needs one true or false per level"):
        generator_from_config({**TINY_NEST, "attention": attention})


def test_border_conv_mixes_neighbouring_blocks_inside_a_level():
    border = BorderConv(4)
    torch.nn.init.normal_(border.conv.weight)  # a trained conv; a fresh one is zero
    plane = torch.randn(1, 4, 4, 4)
    changed = plane.clone()
    changed[0, 0:2, 0:2] += 1.0  # block 0 of a 2x2-token tiling
    with torch.no_grad():
        delta = (border(changed) - border(plane)).abs().sum(dim=-1)[0]
    assert delta[0:2, 2].min() > 0 and delta[2, 0:2].min() > 0  # the right and lower neighbours react
    assert delta[3, :].max() == 0 and delta[:, 3].max() == 0  # nothing beyond the 3x3 reach
    assert torch.equal(BorderConv(4)(plane), plane)  # zero-initialised: the identity


def test_conv_mlp_mixes_neighbouring_blocks_and_keeps_the_map_layout():
    mlp = ConvMlp(4, ratio=2.0)
    plane = torch.randn(1, 4, 4, 4)
    changed = plane.clone()
    changed[0, 0:2, 0:2] += 1.0  # block 0 of a 2x2-token tiling
    with torch.no_grad():
        out = mlp(plane)
        delta = (mlp(changed) - out).abs().sum(dim=-1)[0]
    assert out.shape == (1, 4, 4, 4) and out.is_contiguous()  # (B, H, W, C)
    assert delta[0:2, 2].min() > 0 and delta[2, 0:2].min() > 0 and delta[3, :].max() == 0


@pytest.mark.parametrize("size, block", [(8, 4), (8, 2), (4, 4)])
def test_block_attention_on_the_plane_equals_attention_over_blockified_tokens(size, block):
    """Gathering q, k, v into blocks inside the attention gives what attention over blockify's (B, T, N, C) tokens
    gives, the reference layout of NesT's blocks, forward and backward."""
    torch.manual_seed(0)
    within = Attention(16, heads=2, block_size=block)
    reference = Attention(16, heads=2)
    reference.load_state_dict(within.state_dict())
    x = torch.randn(2, size, size, 16, requires_grad=True)
    out = within(x)
    expected = unblockify(reference(blockify(x, block)), block)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grad, = torch.autograd.grad(out.square().sum(), x)
    expected_grad, = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out_patch, size", [(1, 8), (2, 16)])
def test_conv_head_draws_full_resolution_rgb(out_patch, size):
    g = generator_from_config({**TINY_NEST, "head": "conv", "out_patch": out_patch})
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size) and g.resolution == size and x.abs().max() <= 1


@pytest.mark.parametrize("deaggregation", ["conv", "linear", "pixelshuffle"])
def test_generator_deaggregation_options(deaggregation):
    g = generator_from_config({**TINY_NEST, "deaggregation": deaggregation, "widths": [32, 16]})
    assert g(torch.randn(2, 16)).shape == (2, 3, 8, 8)


def test_deaggregation_per_level_transition():
    g = generator_from_config({**TINY_NEST, "widths": [32, 16, 16], "depths": [1, 1, 1], "heads": [2, 2, 2],
                               "deaggregation": ["linear", "conv"], "upsample": "bilinear", "head": "conv",
                               "out_patch": 2})
    assert [type(m) for m in g.deaggregations] == [LinearDeaggregation, ConvDeaggregation]
    assert isinstance(g.head.up, LinearDeaggregation)  # the cheap up-step wherever a transition is linear
    assert g(torch.randn(2, 16)).shape == (2, 3, 32, 32)


def test_parallel_branches_and_out_patch():
    g = generator_from_config({**TINY_NEST, "parallel_branches": True, "out_patch": 2})
    x = g(torch.randn(3, 16))
    assert x.shape == (3, 3, 16, 16) and g.resolution == 16
    serial = generator_from_config({**TINY_NEST, "out_patch": 2})
    serial.load_state_dict(g.state_dict())
    assert not torch.allclose(serial(torch.randn(3, 16)), x)


def test_bf16_autocast_forward_backward_on_cpu():
    g = generator_from_config(TINY_NEST)
    d = build_discriminator("resnet", 16, channel_base=64, channel_max=32)
    g16 = generator_from_config({**TINY_NEST, "out_patch": 2})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = d(g16(torch.randn(4, 16)))
    logits.float().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g16.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert g(torch.randn(2, 16)).dtype == torch.bfloat16


def test_fixed_seed_gives_identical_outputs():
    def sample():
        torch.manual_seed(123)
        g = generator_from_config(TINY_NEST).eval()
        return g(torch.randn(4, 16, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(sample(), sample())


@pytest.mark.parametrize("override, message", [
    (dict(resolution=32), "not reachable"),
    (dict(widths=[33, 16]), "width 33 is not divisible by its 2 heads"),
    (dict(block_size=3), "does not divide"),
    (dict(depths=[1]), "same non-zero length"),
    (dict(deaggregation="bilinear"), "unknown deaggregation"),
    (dict(deaggregation=["conv", "linear"]), "one per level transition \\(1\\)"),
    (dict(deaggregation=["nearest"]), "unknown deaggregation 'nearest'"),
    (dict(deaggregation=3), "one kind, or one per level transition"),
    (dict(upsample="bicubic"), "unknown upsample"),
    (dict(deaggregation="pixelshuffle", upsample="bilinear"), "conv and linear de-aggregations only"),
    (dict(head="implicit"), "unknown head"),
    (dict(head="conv", out_patch=4), "out_patch 1 or 2"),
    (dict(mapping_layers=-1), "mapping_layers"),
])
def test_bad_nest_configs_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        generator_from_config({**TINY_NEST, **override})


def test_unknown_arch_and_option_are_named():
    with pytest.raises(ConfigError, match="unknown generator arch 'stylegan'"):
        generator_from_config({"arch": "stylegan"})
    with pytest.raises(ConfigError, match="unknown option.*width_list"):
        generator_from_config({**TINY_NEST, "width_list": [1]})
    with pytest.raises(ConfigError, match="power of two"):
        build_discriminator("resnet", 48)


@pytest.mark.parametrize("build", [
    lambda r: build_discriminator("resnet", r), lambda r: build_discriminator("dcgan", r),
    lambda r: generator_from_config({"arch": "conv", "resolution": r}),
    lambda r: generator_from_config({"arch": "dcgan", "resolution": r}),
])
def test_conv_networks_share_one_resolution_rule(build):
    """The config and the four conv networks ask one function, whose count of 2x steps from 4 px is the depth each
    network builds: a generator made for r px draws r px images, a discriminator takes them."""
    assert [check_resolution(r) for r in (8, 64, 128)] == [1, 4, 5]
    for bad in (4, 48, 96):
        with pytest.raises(ConfigError, match=f"resolution must be a power of two >= 8, got {bad}"):
            build(bad)
    for r in (8, 32):
        net = build(r).eval()
        with torch.no_grad():
            if hasattr(net, "z_dim"):
                assert net(torch.randn(2, net.z_dim)).shape == (2, 3, r, r)
            else:
                assert net(torch.randn(2, 3, r, r)).numel() == 2


def test_flop_count_matches_hand_count_for_one_linear_stem():
    g = NesTGenerator(z_dim=8, init_size=4, block_size=4, widths=[8], depths=[0], heads=[1])
    # stem: 8 -> 4*4*8 linear = 2*8*128; head: per pixel 8 -> 3 linear over 16 pixels = 2*8*3*16
    assert forward_flops(g) == 2 * 8 * 128 + 2 * 8 * 3 * 16
    assert count_parameters(g) == (8 * 128 + 128) + 16 * 8 + 2 * 8 + (8 * 3 + 3)
