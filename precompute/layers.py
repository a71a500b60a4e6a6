"""Building blocks shared by the generator and the latent mapper (rosinality parameter layout).

Everything here is plain torch so that the models export to ONNX/TorchScript unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

SQRT2 = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN's leaky ReLU: slope 0.2, gain sqrt(2) to keep the activation variance."""
    return F.leaky_relu(x, 0.2) * SQRT2


class PixelNorm(nn.Module):
    """x / rms(x) over `dim` (features for z; W+ rows for StyleCLIP's mapper, see mapper.py)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=self.dim, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalized-learning-rate linear layer.

    The stored weight is N(0,1)/lr_mul and is scaled by lr_mul/sqrt(in) at run time; the stored bias
    is scaled by lr_mul. With `activation=True` the bias is added before the leaky ReLU, acting on the
    last dimension (as rosinality/StyleCLIP's fused_leaky_relu does for 2-D and 3-D input).
    """

    def __init__(self, in_dim, out_dim, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return lrelu(out) if self.activation else out

    def extra_repr(self):
        out_dim, in_dim = self.weight.shape
        return f"{in_dim}->{out_dim}, lr_mul={self.lr_mul}, activation={self.activation}"
