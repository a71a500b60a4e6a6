"""IR-SE units (ArcFace's "improved residual" bottleneck with squeeze-excite), shared by e4e's encoder
(DESIGN §10) and the ArcFace identity network (§14).

Parameter names are those of TreB1eN's InsightFace port, which e4e, pSp and StyleCLIP all copy
(`input_layer.0/1/2`, `body.N.shortcut_layer.*`, `body.N.res_layer.0..5`, `res_layer.5.fc1/fc2`), so
their official state dicts load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SEModule(nn.Module):
    """Squeeze-excite: x * sigmoid(fc2(relu(fc1(mean over H, W)))), 1x1 convs without bias."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIRSE(nn.Module):
    """IR-SE unit: BN, 3x3 conv, PReLU, 3x3 conv (stride), BN, SE; plus the shortcut (1x1 subsample, or
    1x1 conv + BN when the width changes)."""

    def __init__(self, in_ch: int, depth: int, stride: int, reduction: int):
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # no parameters: picks every stride-th pixel
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth), SEModule(depth, reduction))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


def check_stages(units, widths, reduction: int, what: str) -> None:
    """ValueError unless (units, widths, reduction) describe four stages an IR-SE backbone can build."""
    if len(units) != 4 or len(widths) != 4 or min(units) < 1 or min(widths) < 1:
        raise ValueError(f"{what} has 4 stages with >= 1 unit and >= 1 channel each, got units {tuple(units)}, "
                         f"widths {tuple(widths)}")
    if reduction < 1 or min(widths) < reduction:
        raise ValueError(f"every width must be >= se_reduction {reduction} (>= 1), got {tuple(widths)}")


def irse_backbone(units, widths, reduction: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(input_layer, body): a 3x3 conv without bias + BN + PReLU to widths[0] channels, then per stage
    `units[i]` bottlenecks of widths[i] channels, the first of each stage with stride 2 (so /16 in all)."""
    input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                nn.PReLU(widths[0]))
    body, in_ch = [], widths[0]
    for n, depth in zip(units, widths):
        for k in range(n):
            body.append(BottleneckIRSE(in_ch, depth, 2 if k == 0 else 1, reduction))
            in_ch = depth
    return input_layer, nn.Sequential(*body)
