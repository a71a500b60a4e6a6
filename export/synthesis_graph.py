"""The synthesis network as it is exported: the same function as `Generator.synthesis`, fewer slow kernels.

Built from a generator's weights, with its constants computed once here instead of per call, and only
ever exported; validation compares the exported graph with the generator itself (DESIGN §6, §11).
`upsample="transposed"` keeps the transposed convolution (for OpenVINO, whose oneDNN deconvolution is
fast and whose Col2Im is a reference implementation); everything else is the same.

- The stride-2 transposed 3x3 convolution becomes four ordinary convolutions on the input, one per
  output phase (even/odd row x even/odd column) with the 1x1, 1x2, 2x1 and 2x2 taps cut from the 3x3:
  9 taps, the transposed conv's FLOPs. onnxruntime's CPU provider runs them in its blocked NCHWc
  kernels; its ConvTranspose (im2col GEMM + col2im) ran at less than half that speed on the large maps.
  The phases are interleaved by Col2Im (`F.fold`, 2x2 kernel, stride 2: one copy): onnxruntime's
  DepthToSpace copies at a fifth of the speed of a Concat, and two stacking Concats cost more (docs/benchmarks.md).
- The [1,3,3,1] blur stays a depthwise pass on the interleaved map: merged into the phases it would
  make every phase read 3x3 taps of every input channel (4x the FLOPs) to save one depthwise pass.
- ToRGB's 1x1 modulated convolution is one batched MatMul with per-sample weights W * s ([B, 3, C]),
  so the feature map is read once and never multiplied by the style; the skip image's 2x FIR
  upsampling is a grouped 3x3 convolution (each RGB channel -> its 4 phases) and a pixel shuffle.
- Leaky ReLU is positively homogeneous (lrelu(a x) = a lrelu(x) for a > 0), so its sqrt(2) gain is not a
  pass over the feature map: it rides on the next layer's per-sample style multiply and on ToRGB's
  weights, which exist anyway.
- Demodulation is rsqrt(s^2 @ sum_k W^2 + 1e-8) with sum_k W^2 precomputed, as is noise x noise weight.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from precompute.stylegan2 import Generator, StyledConv, ToRGB

SQRT2 = math.sqrt(2.0)
# 1-D view of the phases. Output 2j + r - 1 of the transposed conv (j = 0 .. H, so each phase has H + 1
# outputs and together they cover -1 .. 2H) reads input rows j - 1 and j through these taps of the
# 3-tap kernel, on the input zero-padded by (before, after).
PHASE_TAPS = {0: ([1], (1, 0)), 1: ([2, 0], (1, 1))}
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) phase of each phase kernel, in this order
UPSAMPLING = ("phases", "transposed")


def phase_weights(w: torch.Tensor) -> list[tuple[torch.Tensor, tuple[int, int, int, int]]]:
    """A transposed-conv kernel w [out, in, 3, 3] (conv2d layout, as ModulatedConv2d stores it) as four
    ordinary conv kernels in PHASES order, each with its F.pad padding (left, right, top, bottom)."""
    out = []
    for r, c in PHASES:
        rows, (top, bottom) = PHASE_TAPS[r]
        cols, (left, right) = PHASE_TAPS[c]
        out.append((w[:, :, rows][:, :, :, cols].contiguous(), (left, right, top, bottom)))
    return out


def interleave(phases: list[torch.Tensor]) -> torch.Tensor:
    """Four [B, C, H, W] maps in PHASES order -> [B, C, 2H, 2W] with phase (r, c) at pixel (2h + r, 2w + c).

    Stacked behind the channels, each phase is a 2x2 block's (r, c) entry: fold (ONNX Col2Im) with a 2x2
    kernel and stride 2 places the blocks without overlap."""
    b, c, h, w = phases[0].shape
    return F.fold(torch.stack(phases, 2).reshape(b, 4 * c, h * w), (2 * h, 2 * w), kernel_size=2, stride=2)


def skip_upsample_weight(kernel: torch.Tensor) -> torch.Tensor:
    """upfirdn2d(up=2, pad=(2, 1)) with a 4x4 FIR `kernel` as a grouped 3x3 conv (padding 1, groups 3)
    whose 12 outputs are each RGB channel's four output phases in pixel-shuffle order (c * 4 + r * 2 + col).

    In 1-D, output 2n + r is a true convolution: phase 0 = k[3] x[n-1] + k[1] x[n], phase 1 =
    k[2] x[n] + k[0] x[n+1]; as correlation taps over the window (x[n-1], x[n], x[n+1]) that is
    (k3, k1, 0) and (0, k2, k0).
    """
    window = torch.zeros(2, 3, 4, dtype=kernel.dtype)  # [phase, window position, kernel tap]
    window[0, 0, 3] = window[0, 1, 1] = window[1, 1, 2] = window[1, 2, 0] = 1
    w = torch.einsum("rik,cjl,kl->rcij", window, window, kernel)  # [row phase, col phase, 3, 3]
    return w.reshape(4, 1, 3, 3).repeat(3, 1, 1, 1)


class _Styled(nn.Module):
    """One StyledConv with its constants: conv (or phase) weights, sum_k W^2, noise x weight, bias."""

    def __init__(self, layer: StyledConv, noise: torch.Tensor, upsample: str):
        super().__init__()
        conv = layer.conv
        w = (conv.weight[0] * conv.scale).detach()
        self.upsample = conv.upsample and upsample
        self.register_buffer("wsq", w.square().sum((2, 3)).t().contiguous())  # [in, out]
        if self.upsample == "transposed":
            self.register_buffer("weight", w.transpose(0, 1).contiguous())
            self.register_buffer("blur", conv.blur.kernel.expand(conv.out_ch, 1, 4, 4).clone())
        elif self.upsample:
            phases = phase_weights(w)
            for i, (pw, _) in enumerate(phases):
                self.register_buffer(f"phase{i}", pw)
            self.pads = [pad for _, pad in phases]
            self.register_buffer("blur", conv.blur.kernel.expand(conv.out_ch, 1, 4, 4).clone())
        else:
            self.register_buffer("weight", w.clone())
        self.register_buffer("noise", (layer.noise.weight * noise).detach().clone())  # [1, 1, H, W]
        self.register_buffer("bias", layer.activate.bias.detach().clone()[None, :, None, None])

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        if not self.upsample:
            return F.conv2d(x, self.weight, padding=1)
        if self.upsample == "transposed":
            x = F.conv_transpose2d(x, self.weight, stride=2)
            return F.conv2d(x, self.blur, padding=1, groups=self.blur.shape[0])
        x = interleave([F.conv2d(F.pad(x, pad), getattr(self, f"phase{i}")) for i, pad in enumerate(self.pads)])
        # The map covers transposed-conv outputs -1 .. 2H; the blur (padding 1 around the 2H + 1 outputs)
        # also reads output 2H + 1, a zero: one more row and column at the end.
        return F.conv2d(F.pad(x, (0, 1, 0, 1)), self.blur, groups=self.blur.shape[0])

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float) -> torch.Tensor:
        """x: the true input divided by `gain`; returns the true output divided by sqrt(2)."""
        x = self.conv(x * (style * gain)[:, :, None, None])
        demod = torch.rsqrt(style.square() @ self.wsq + 1e-8)
        return F.leaky_relu(x * demod[:, :, None, None] + self.noise + self.bias, 0.2)


class _ToRGB(nn.Module):
    def __init__(self, layer: ToRGB):
        super().__init__()
        conv = layer.conv
        self.register_buffer("weight", (conv.weight[0, :, :, 0, 0] * conv.scale).detach().clone())  # [3, in]
        self.register_buffer("bias", layer.bias.detach().clone())  # [1, 3, 1, 1]
        if hasattr(layer, "upsample"):
            self.register_buffer("up", skip_upsample_weight(layer.upsample.kernel.detach()))

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float, skip=None) -> torch.Tensor:
        b, c, h, w = x.shape
        weight = self.weight[None] * (style * gain)[:, None, :]  # [B, 3, in]: per sample, tiny
        out = (weight @ x.reshape(b, c, h * w)).reshape(b, 3, h, w) + self.bias
        if skip is not None:
            out = out + F.pixel_shuffle(F.conv2d(skip, self.up, padding=1, groups=3), 2)
        return out


class ExportSynthesis(nn.Module):
    """Flat S [B, total] -> image, equal to `gen.synthesis_flat`. W+ is rendered through the `styles` graph
    first (S is small), so a bundle carries the synthesis weights once."""

    def __init__(self, gen: Generator, upsample: str = "phases"):
        super().__init__()
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {upsample!r}")
        self.layout = gen.layout
        self.register_buffer("input", gen.input.input.detach().clone())
        noises = [getattr(gen.noises, f"noise_{i}") for i in range(2 * len(gen.to_rgbs) + 1)]
        self.convs = nn.ModuleList(_Styled(c, n, upsample) for c, n in zip([gen.conv1, *gen.convs], noises))
        self.to_rgbs = nn.ModuleList(_ToRGB(t) for t in [gen.to_rgb1, *gen.to_rgbs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        styles = self.layout.split(x)
        h = self.convs[0](self.input.expand(x.shape[0], -1, -1, -1), styles[0], 1.0)
        skip = self.to_rgbs[0](h, styles[1], SQRT2)
        for b in range(1, len(self.to_rgbs)):
            s_up, s_conv, s_rgb = styles[3 * b - 1: 3 * b + 2]
            h = self.convs[2 * b - 1](h, s_up, SQRT2)
            h = self.convs[2 * b](h, s_conv, SQRT2)
            skip = self.to_rgbs[b](h, s_rgb, SQRT2, skip)
        return skip
