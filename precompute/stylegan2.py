"""StyleGAN2 generator in the rosinality layout, written for export (DESIGN §2).

Parameter and buffer names match rosinality/stylegan2-pytorch exactly, so its checkpoints load
strictly. The forward pass differs from rosinality's fused path in one way that keeps the batch
dimension dynamic in ONNX: styles modulate the *activations* and demodulation multiplies the conv
output, instead of building a per-sample weight and a grouped conv (groups = batch). The result is
mathematically identical (tests prove it against the grouped formulation). Blur and upsampling use
constant depthwise kernels, and noise always comes from the fixed buffers, as every edit needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from runtime.stylespace import StyleSpaceLayout, log2_size, n_latent_for

from .layers import EqualLinear, PixelNorm, lrelu

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


def blur_kernel(gain: float = 4.0) -> torch.Tensor:
    """The [1,3,3,1] FIR as a normalized 4x4 kernel times `gain` (rosinality stores it ×4)."""
    k = torch.tensor(BLUR_TAPS)
    k = torch.outer(k, k)
    return k / k.sum() * gain


def rosinality_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's channel rule: 512 up to 32 px, then 256·cm, 128·cm, ... halving per level."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {
        2**r: base[2**r] * (channel_multiplier if 2**r >= 64 else 1) for r in range(2, log2_size(size) + 1)
    }


@dataclass
class GeneratorConfig:
    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channels: dict[int, int] = field(default_factory=dict)  # resolution -> feature maps
    lr_mlp: float = 0.01

    def __post_init__(self):
        log2_size(self.size)
        self.channels = {int(r): int(c) for r, c in self.channels.items()} or rosinality_channels(self.size)
        StyleSpaceLayout.for_generator(self.size, self.channels)  # validates the table

    @classmethod
    def rosinality(cls, size=1024, style_dim=512, n_mlp=8, channel_multiplier=2) -> "GeneratorConfig":
        return cls(size, style_dim, n_mlp, rosinality_channels(size, channel_multiplier))

    @property
    def channel_multiplier(self) -> int | None:
        """The rosinality multiplier that gives this channel table, or None for a custom table."""
        for cm in (1, 2, 4):
            if rosinality_channels(self.size, cm) == self.channels:
                return cm
        return None

    @property
    def n_latent(self) -> int:
        return n_latent_for(self.size)

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "channels": {str(r): c for r, c in sorted(self.channels.items())},
            "lr_mlp": self.lr_mlp,
            "channel_multiplier": self.channel_multiplier,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(d["size"], d["style_dim"], d["n_mlp"], d["channels"], d.get("lr_mlp", 0.01))


class Blur(nn.Module):
    """Depthwise [1,3,3,1] blur with padding 1 (rosinality Blur(pad=(1,1)) after a 2x transposed conv)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", blur_kernel(4.0))

    def forward(self, x):
        # The kernel is symmetric, so correlation (conv2d) equals upfirdn2d's true convolution.
        k = self.kernel.expand(self.channels, 1, 4, 4)
        return F.conv2d(x, k, padding=1, groups=self.channels)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip image, equal to upfirdn2d(up=2, pad=(2,1), kernel ×4)."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", blur_kernel(4.0))

    def forward(self, x):
        k = self.kernel.expand(self.channels, 1, 4, 4)
        return F.conv_transpose2d(x, k, stride=2, groups=self.channels)[:, :, 1:-1, 1:-1]


class ModulatedConv2d(nn.Module):
    """Modulated conv computed as demod ⊙ conv(x ⊙ s, W·scale): dynamic batch, no grouped conv."""

    def __init__(self, in_ch, out_ch, kernel_size, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        if upsample:
            self.blur = Blur(out_ch)

    def forward(self, x, style):
        """x [B,in,H,W], style [B,in] (the StyleSpace vector of this layer)."""
        w = self.weight[0] * self.scale
        x = x * style[:, :, None, None]
        if self.upsample:
            x = self.blur(F.conv_transpose2d(x, w.transpose(0, 1), stride=2))
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.demodulate:
            # sum_{in,k} (W s)^2 = s^2 @ sum_k W^2: a [B,in]x[in,out] matmul, never a 5-D tensor.
            demod = torch.rsqrt(style.square() @ w.square().sum((2, 3)).t() + 1e-8)
            x = x * demod[:, :, None, None]
        return x


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class BiasLeakyReLU(nn.Module):
    """rosinality's FusedLeakyReLU on feature maps: per-channel bias, leaky ReLU(0.2), gain sqrt(2)."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return lrelu(x + self.bias[None, :, None, None])


class StyledConv(nn.Module):
    def __init__(self, in_ch, out_ch, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = BiasLeakyReLU(out_ch)

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Upsample(3)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch_like):
        return self.input.expand(batch_like.shape[0], -1, -1, -1)


class Generator(nn.Module):
    """StyleGAN2 generator. Styles are lists of [B, C_l] tensors in `layout` order."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c, sd = config.channels, config.style_dim
        self.layout = StyleSpaceLayout.for_generator(config.size, c)
        self.style = nn.Sequential(
            PixelNorm(dim=1),
            *[EqualLinear(sd, sd, lr_mul=config.lr_mlp, activation=True) for _ in range(config.n_mlp)],
        )
        self.input = ConstantInput(c[4])
        self.conv1 = StyledConv(c[4], c[4], sd)
        self.to_rgb1 = ToRGB(c[4], sd, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        log_size = log2_size(config.size)
        for i in range(2 * (log_size - 2) + 1):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        for log_res in range(3, log_size + 1):
            res = 2**log_res
            self.convs.append(StyledConv(c[res // 2], c[res], sd, upsample=True))
            self.convs.append(StyledConv(c[res], c[res], sd))
            self.to_rgbs.append(ToRGB(c[res], sd))
        # The truncation centre: from a checkpoint's latent_avg or mean_latent(); not in g_ema's keys.
        self.register_buffer("latent_avg", torch.zeros(sd), persistent=False)
        modules = dict(self.named_modules())
        self.modulated = [modules[f"{layer.name}.conv"] for layer in self.layout.layers]

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    # --- z -> w -> W+ ----------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of mapped N(0,I) samples (seeded, unlike rosinality's); stored as `latent_avg`."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.config.style_dim, generator=g).to(self.latent_avg.device)
        self.latent_avg.copy_(self.mapping(z).mean(0))
        return self.latent_avg.clone()

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        return self.latent_avg + psi * (w - self.latent_avg)

    def wplus_from_z(self, z: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """z [B, style_dim] -> W+ [B, n_latent, style_dim] (one w on every row, truncated)."""
        w = self.truncate(self.mapping(z), psi)
        return w[:, None, :].expand(-1, self.n_latent, -1)

    # --- W+ -> S -> image --------------------------------------------------------------------------
    def styles(self, wplus: torch.Tensor) -> list[torch.Tensor]:
        """W+ [B, n_latent, style_dim] -> the StyleSpace vectors, one [B, C_l] per layout layer."""
        return [m.modulation(wplus[:, layer.wplus_index]) for m, layer in zip(self.modulated, self.layout.layers)]

    def synthesis(self, styles: list[torch.Tensor]) -> torch.Tensor:
        """StyleSpace vectors -> image [B, 3, size, size] (about [-1, 1], not clamped)."""
        if len(styles) != len(self.layout):
            raise ValueError(f"synthesis needs {len(self.layout)} style tensors, got {len(styles)}")
        noises = [getattr(self.noises, f"noise_{i}") for i in range(2 * len(self.to_rgbs) + 1)]
        x = self.conv1(self.input(styles[0]), styles[0], noises[0])
        skip = self.to_rgb1(x, styles[1])
        for b, to_rgb in enumerate(self.to_rgbs):
            s_up, s_conv, s_rgb = styles[2 + 3 * b : 5 + 3 * b]
            x = self.convs[2 * b](x, s_up, noises[2 * b + 1])
            x = self.convs[2 * b + 1](x, s_conv, noises[2 * b + 2])
            skip = to_rgb(x, s_rgb, skip)
        return skip

    def synthesis_flat(self, s_flat: torch.Tensor) -> torch.Tensor:
        """Flat S [B, layout.total] -> image; the interface global-direction edits use."""
        return self.synthesis(self.layout.split(s_flat))

    def synthesis_wplus(self, wplus: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.styles(wplus))

    def forward(self, wplus: torch.Tensor) -> torch.Tensor:
        return self.synthesis_wplus(wplus)
