"""The generator against an independent, from-the-spec rosinality (fused, grouped-conv) forward pass."""
import math

import pytest
import torch
import torch.nn.functional as F

from precompute.stylegan2 import Generator, GeneratorConfig, ModulatedConv2d
from tests.conftest import SMALL, make_generator

FFHQ_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}


# --- reference implementation, written from rosinality's documented semantics ---------------------
def upfirdn2d_ref(x, kernel, up, pad0, pad1):
    """Zero-insert upsampling, padding, then a true convolution with the FIR kernel (per channel)."""
    b, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(b, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    k = torch.flip(kernel, [0, 1])[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, k, groups=c)


def modconv_grouped(x, weight, style, demodulate, upsample, blur_kernel=None):
    """rosinality's fused modulated conv: per-sample weights folded into a grouped conv (groups = batch)."""
    batch, in_ch, h, w_ = x.shape
    _, out_ch, _, k, _ = weight.shape
    wt = weight / math.sqrt(in_ch * k * k) * style[:, None, :, None, None]
    if demodulate:
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
    x = x.reshape(1, batch * in_ch, h, w_)
    if upsample:
        wt = wt.transpose(1, 2).reshape(batch * in_ch, out_ch, k, k)
        out = F.conv_transpose2d(x, wt, stride=2, groups=batch)
        out = out.reshape(batch, out_ch, *out.shape[2:])
        return upfirdn2d_ref(out, blur_kernel, 1, 1, 1)
    out = F.conv2d(x, wt.reshape(batch * out_ch, in_ch, k, k), padding=k // 2, groups=batch)
    return out.reshape(batch, out_ch, h, w_)


def reference_forward(sd, wplus, lr_mlp=0.01):
    """Full rosinality synthesis from a g_ema state dict and W+ (constant noise), plus its styles."""
    def affine(prefix, w):
        wt, b = sd[f"{prefix}.modulation.weight"], sd[f"{prefix}.modulation.bias"]
        return F.linear(w, wt / math.sqrt(wt.shape[1]), b)

    def styled(prefix, x, w, noise, upsample):
        s = affine(f"{prefix}.conv", w)
        kernel = sd.get(f"{prefix}.conv.blur.kernel")
        out = modconv_grouped(x, sd[f"{prefix}.conv.weight"], s, True, upsample, kernel)
        out = out + sd[f"{prefix}.noise.weight"] * noise
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2), s

    def to_rgb(prefix, x, w, skip):
        s = affine(f"{prefix}.conv", w)
        out = modconv_grouped(x, sd[f"{prefix}.conv.weight"], s, False, False) + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + upfirdn2d_ref(skip, sd[f"{prefix}.upsample.kernel"], 2, 2, 1)
        return out, s

    n_blocks = sum(1 for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    x = sd["input.input"].repeat(wplus.shape[0], 1, 1, 1)
    x, s0 = styled("conv1", x, wplus[:, 0], sd["noises.noise_0"], False)
    skip, s1 = to_rgb("to_rgb1", x, wplus[:, 1], None)
    styles = [s0, s1]
    for b in range(n_blocks):
        i = 2 * b + 1
        x, sa = styled(f"convs.{2 * b}", x, wplus[:, i], sd[f"noises.noise_{i}"], True)
        x, sb = styled(f"convs.{2 * b + 1}", x, wplus[:, i + 1], sd[f"noises.noise_{i + 1}"], False)
        skip, sc = to_rgb(f"to_rgbs.{b}", x, wplus[:, i + 2], skip)
        styles += [sa, sb, sc]
    return skip, styles


def reference_mapping(sd, z, n_mlp, lr_mlp=0.01):
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        wt, b = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        x = F.leaky_relu(F.linear(x, wt * lr_mlp / math.sqrt(wt.shape[1])) + b * lr_mlp, 0.2) * math.sqrt(2)
    return x


def expected_rosinality_shapes(size, style_dim, n_mlp, ch):
    """The rosinality g_ema key -> shape schema, written out from its documented layout."""
    shapes = {f"style.{i}.{p}": ((style_dim, style_dim) if p == "weight" else (style_dim,))
              for i in range(1, n_mlp + 1) for p in ("weight", "bias")}
    shapes["input.input"] = (1, ch[4], 4, 4)

    def styled(prefix, cin, cout, up):
        shapes.update({f"{prefix}.conv.weight": (1, cout, cin, 3, 3), f"{prefix}.conv.modulation.weight": (cin, style_dim),
                       f"{prefix}.conv.modulation.bias": (cin,), f"{prefix}.noise.weight": (1,), f"{prefix}.activate.bias": (cout,)})
        if up:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)

    def rgb(prefix, cin, up):
        shapes.update({f"{prefix}.conv.weight": (1, 3, cin, 1, 1), f"{prefix}.conv.modulation.weight": (cin, style_dim),
                       f"{prefix}.conv.modulation.bias": (cin,), f"{prefix}.bias": (1, 3, 1, 1)})
        if up:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)

    styled("conv1", ch[4], ch[4], False)
    rgb("to_rgb1", ch[4], False)
    log_size = int(math.log2(size))
    for b, r in enumerate(range(3, log_size + 1)):
        res = 2**r
        styled(f"convs.{2 * b}", ch[res // 2], ch[res], True)
        styled(f"convs.{2 * b + 1}", ch[res], ch[res], False)
        rgb(f"to_rgbs.{b}", ch[res], True)
    for i in range(2 * (log_size - 2) + 1):
        res = 2 ** ((i + 5) // 2)
        shapes[f"noises.noise_{i}"] = (1, 1, res, res)
    return shapes


# --- FFHQ config-f ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ffhq():
    torch.manual_seed(0)
    return Generator(GeneratorConfig.rosinality(1024, 512, 8, 2)).eval()


def test_ffhq_config_f_state_dict_matches_rosinality_schema(ffhq):
    got = {k: tuple(v.shape) for k, v in ffhq.state_dict().items()}
    expected = expected_rosinality_shapes(1024, 512, 8, FFHQ_CHANNELS)
    assert len(got) == 171
    assert got == expected


def test_ffhq_config_f_parameter_count(ffhq):
    n_params = sum(p.numel() for p in ffhq.parameters())
    expected = sum(math.prod(s) for k, s in expected_rosinality_shapes(1024, 512, 8, FFHQ_CHANNELS).items()
                   if not (k.startswith("noises.") or k.endswith(".kernel")))
    assert n_params == expected
    assert 30.365e6 < n_params < 30.375e6  # rosinality reports 30.37 M for config-f
    assert ffhq.config.channel_multiplier == 2 and ffhq.config.channels == FFHQ_CHANNELS


def test_ffhq_stylespace_table(ffhq):
    layout = ffhq.layout
    assert len(layout) == 26 and layout.total == 9088
    assert layout.conv_channels == 6048 and layout.torgb_channels == 3040
    assert [l.channels for l in layout.layers] == [512] * 15 + [256] * 3 + [128] * 3 + [64] * 3 + [32] * 2
    assert [i for i, l in enumerate(layout.layers) if l.is_torgb] == list(range(1, 26, 3))
    # conv1 <- w0, to_rgb1 <- w1, block r: conv_up <- w[2r-1], conv <- w[2r], to_rgb <- w[2r+1]
    expected = [0, 1] + [w for r in range(1, 9) for w in (2 * r - 1, 2 * r, 2 * r + 1)]
    assert [l.wplus_index for l in layout.layers] == expected
    assert layout.n_latent == ffhq.n_latent == 18
    # The official fs3 covers the 11 conv layers up to 128 px: 5376 channels.
    assert sum(l.channels for l in layout.conv_layers if l.resolution <= 128) == 5376


def test_ffhq_styles_match_reference_affines(ffhq):
    w = torch.randn(2, 18, 512)
    with torch.no_grad():
        ours = ffhq.styles(w)
        sd = ffhq.state_dict()
        for layer, s in zip(ffhq.layout.layers, ours):
            wt, b = sd[f"{layer.name}.conv.modulation.weight"], sd[f"{layer.name}.conv.modulation.bias"]
            ref = F.linear(w[:, layer.wplus_index], wt / math.sqrt(512), b)
            torch.testing.assert_close(s, ref, rtol=1e-5, atol=1e-5)


# --- math of the export-friendly forward ---------------------------------------------------------------
@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3), (False, False, 1)])
def test_modulated_conv_equals_grouped_conv(upsample, demodulate, k):
    torch.manual_seed(0)
    conv = ModulatedConv2d(24, 16, k, 32, demodulate=demodulate, upsample=upsample)
    x = torch.randn(5, 24, 8, 8)
    style = conv.modulation(torch.randn(5, 32))
    with torch.no_grad():
        ours = conv(x, style)
        kernel = conv.blur.kernel if upsample else None
        ref = modconv_grouped(x, conv.weight, style, demodulate, upsample, kernel)
    assert ours.shape == ref.shape == (5, 16, 16 if upsample else 8, 16 if upsample else 8)
    assert (ours - ref).abs().max().item() < 1e-5


def test_full_synthesis_matches_reference(small_gen, wplus):
    with torch.no_grad():
        ours = small_gen.synthesis_wplus(wplus)
        ref, ref_styles = reference_forward(small_gen.state_dict(), wplus)
        for s, r in zip(small_gen.styles(wplus), ref_styles):
            torch.testing.assert_close(s, r, rtol=1e-5, atol=1e-5)
    assert ours.shape == (4, 3, 32, 32)
    assert (ours - ref).abs().max().item() < 1e-4 * ref.abs().max().item()


def test_mapping_and_truncation_match_reference(small_gen):
    z = torch.randn(6, SMALL.style_dim)
    with torch.no_grad():
        w = small_gen.mapping(z)
        torch.testing.assert_close(w, reference_mapping(small_gen.state_dict(), z, SMALL.n_mlp), rtol=1e-5, atol=1e-5)
        wp = small_gen.wplus_from_z(z, 0.5)
    avg = small_gen.latent_avg
    assert wp.shape == (6, small_gen.n_latent, SMALL.style_dim)
    torch.testing.assert_close(wp[:, 3], avg + 0.5 * (w - avg))
    torch.testing.assert_close(small_gen.wplus_from_z(z, 0.0)[:, 0], avg.expand(6, -1))


def test_mean_latent_is_seeded(small_gen):
    a = small_gen.mean_latent(512, seed=3)
    b = small_gen.mean_latent(512, seed=3)
    c = small_gen.mean_latent(512, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(small_gen.latent_avg, c)


def test_synthesis_from_styles_equals_synthesis_from_wplus(small_gen, wplus):
    with torch.no_grad():
        styles = small_gen.styles(wplus)
        a = small_gen.synthesis(styles)
        b = small_gen.synthesis_wplus(wplus)
        flat = torch.cat(styles, dim=1)
        c = small_gen.synthesis_flat(flat)
    assert flat.shape == (4, small_gen.layout.total)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_outputs_independent_of_batch_composition(small_gen, wplus):
    with torch.no_grad():
        batch = small_gen(wplus)
        singles = torch.cat([small_gen(wplus[i : i + 1]) for i in range(4)])
        shuffled = small_gen(wplus[[2, 0, 3, 1]])
    assert (batch - singles).abs().max().item() < 1e-5
    assert (shuffled - batch[[2, 0, 3, 1]]).abs().max().item() < 1e-5


def test_noise_comes_from_fixed_buffers(small_gen, wplus):
    with torch.no_grad():
        a = small_gen(wplus)
        b = small_gen(wplus)
        small_gen.noises.noise_3.add_(1.0)
        c = small_gen(wplus)
    assert torch.equal(a, b)  # deterministic: no random noise in forward
    assert not torch.allclose(a, c)  # and the buffers are really used


def test_custom_channel_table_and_sizes():
    cfg = GeneratorConfig(64, 128, 4, {4: 128, 8: 128, 16: 64, 32: 64, 64: 32})
    gen = Generator(cfg)
    assert cfg.channel_multiplier is None and gen.n_latent == 10 and len(gen.layout) == 14
    with torch.no_grad():
        img = gen(torch.randn(2, 10, 128))
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(48)
    with pytest.raises(ValueError, match="no entry for resolutions"):
        GeneratorConfig(64, 128, 4, {4: 128, 8: 128})
