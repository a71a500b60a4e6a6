"""An independent, from-the-spec ArcFace IR-SE-50 as StyleCLIP's IDLoss uses it (TreB1eN's
`Backbone(112, 50, 'ir_se', drop_ratio=0.6)`, models/facial_recognition/model_irse.py) and
`IDLoss.extract_feats` (criteria/id_loss.py), as a functional forward over a plain state dict, plus
official-format `model_ir_se50.pth` files built from it (random weights, TreB1eN's key names).

The IR-SE units are e4e_reference's (the same helpers in both originals). The adaptive average pools are
written from their definition (output cell i averages input rows floor(i*n/m) .. ceil((i+1)*n/m) - 1),
not with torch's adaptive pooling. Nothing here imports precompute.irse or precompute.identity: it is
what they are tested against.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.e4e_reference import backbone_shapes, bn_ref, bn_shapes, input_layer_ref, irse_ref, random_state, unit_plan

WIDTHS = (64, 128, 256, 512)
EMBEDDING = 512


def parameter_shapes() -> dict:
    """Every tensor of the Backbone's state dict: input_layer.*, body.0-23.*, then output_layer.0 (BN2d),
    .3 (Linear 512*7*7 -> 512), .4 (BN1d, affine); dropout (.1) and flatten (.2) hold nothing."""
    return {**backbone_shapes(WIDTHS, 16), **bn_shapes("output_layer.0", WIDTHS[3]),
            "output_layer.3.weight": (EMBEDDING, WIDTHS[3] * 7 * 7), "output_layer.3.bias": (EMBEDDING,),
            **bn_shapes("output_layer.4", EMBEDDING)}


def random_weights(seed: int = 0) -> dict:
    """e4e_reference's random scales (BN running statistics far from 0 / 1, so BN is really tested), with the
    linear layer scaled by 1 / sqrt(fan_in) so the embedding stays O(1)."""
    state = random_state(parameter_shapes(), seed)
    w = state["output_layer.3.weight"]
    g = torch.Generator().manual_seed(seed + 1)
    state["output_layer.3.weight"] = torch.randn(w.shape, generator=g) / math.sqrt(w.shape[1])
    return state


def official_file(path, seed: int = 0) -> dict:
    """Write `model_ir_se50.pth` as TreB1eN saves it (torch.save of the model's state dict); returns the state."""
    state = random_weights(seed)
    torch.save(state, path)
    return state


# --- the forward pass, from the spec --------------------------------------------------------------------
def pool_matrix(n: int, m: int) -> torch.Tensor:
    """[m, n]: row i averages inputs floor(i * n / m) .. ceil((i + 1) * n / m) - 1 (adaptive average pooling)."""
    p = torch.zeros(m, n, dtype=torch.float64)
    for i in range(m):
        start, end = (i * n) // m, -(-((i + 1) * n) // m)
        p[i, start:end] = 1.0 / (end - start)
    return p


def adaptive_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Separable: pool the rows, then the columns (in float64, so the reference adds no rounding of its own)."""
    ph, pw = pool_matrix(x.shape[2], size), pool_matrix(x.shape[3], size)
    return (ph @ x.double() @ pw.T).float()


def backbone_ref(sd, x):
    """Backbone.forward: input layer, 24 IR-SE units, BN2d, flatten (C, H, W order), linear, BN1d, L2 norm."""
    x = input_layer_ref(sd, x)
    for i, (cin, depth, stride) in enumerate(unit_plan(WIDTHS[0], WIDTHS)):
        x = irse_ref(sd, f"body.{i}", x, cin, depth, stride)
    x = bn_ref(sd, "output_layer.0", x).reshape(x.shape[0], -1)
    x = bn_ref(sd, "output_layer.4", F.linear(x, sd["output_layer.3.weight"], sd["output_layer.3.bias"]))
    return x / x.norm(dim=1, keepdim=True)


def extract_feats_ref(sd, images):
    """IDLoss.extract_feats: pool to 256 unless 256 px, crop rows 35:223 and columns 32:220, pool to 112."""
    if images.shape[2] != 256:
        images = adaptive_pool(images, 256)
    return backbone_ref(sd, adaptive_pool(images[:, :, 35:223, 32:220], 112))
