"""The CLIP text encoder as it is exported: open_clip's causal text transformer with each attention block
as one onnxruntime Attention node (com.microsoft, packed QKV weights, `unidirectional` = the causal mask).

The dynamo exporter writes nn.MultiheadAttention as MatMuls with explicit head split/merge Transposes
(8 per layer, 96 in ViT-B-32's 12 layers), and onnxruntime's transformer optimizer recognises no
attention pattern in that graph (docs/benchmarks.md). The Attention kernel projects Q, K and V in one
GEMM and runs every head's softmax(QK^T)V with its causal mask in place, with no transposes. The token
axis stays dynamic (the runtime cuts the padding). In PyTorch the module runs open_clip's own blocks;
validation compares the exported graph with open_clip's `encode_text`.
"""
from __future__ import annotations

import torch
from torch import nn
from open_clip.transformer import ResidualAttentionBlock
from torch.nn import functional as F

from precompute.clip_model import Clip

MS_DOMAIN = "com.microsoft"


class _Attention(nn.Module):
    """nn.MultiheadAttention(x, x, x) with a causal mask; an onnxruntime Attention node when exported."""

    def __init__(self, attn: nn.MultiheadAttention):
        super().__init__()
        self.attn, self.heads = attn, attn.num_heads
        self.register_buffer("qkv_weight", attn.in_proj_weight.detach().t().contiguous())  # [D, 3D]: q | k | v
        self.register_buffer("qkv_bias", attn.in_proj_bias.detach().clone())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            y = torch.onnx.ops.symbolic(f"{MS_DOMAIN}::Attention", (x, self.qkv_weight, self.qkv_bias),
                                        {"num_heads": self.heads, "unidirectional": 1}, dtype=x.dtype,
                                        shape=x.shape, version=1)
            return self.attn.out_proj(y)
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]


class ExportTextEncoder(nn.Module):
    """Token ids [B, n] (any n up to the context) -> unit text embedding, equal to `text_embedding`."""

    def __init__(self, clip: Clip):
        super().__init__()
        self.model = clip.model
        self.attention = nn.ModuleList(_Attention(block.attn) for block in self.model.transformer.resblocks)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        model, n = self.model, tokens.shape[1]
        x = model.token_embedding(tokens) + model.positional_embedding[:n]
        mask = model.attn_mask[:n, :n]
        for block, attention in zip(model.transformer.resblocks, self.attention):
            x = x + block.ls_1(attention(block.ln_1(x), mask))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        x = model.ln_final(x)[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
        proj = model.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1)


def supports(clip: Clip) -> bool:
    """The rewrite covers open_clip's causal CLIP text tower pooled at end-of-text (`Clip.trims_tokens`)
    with pre-norm blocks of packed-projection nn.MultiheadAttention; anything else exports as it is."""
    transformer = getattr(clip.model, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    return bool(clip.trims_tokens and blocks and transformer.batch_first and all(
        type(b) is ResidualAttentionBlock and b.attn.in_proj_weight is not None and b.attn.batch_first
        and not hasattr(b, "ln_1_kv") for b in blocks))
