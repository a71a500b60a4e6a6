"""The graphs a bundle holds: thin torch wrappers with one tensor in and one out, plus realistic inputs.

Every graph has a dynamic batch (axis 0); the text encoder of a causal, end-of-text-pooled CLIP also a
dynamic token length (axis 1; the runtime cuts the padding, `runtime.tokenizer.trim_padding`);
everything else is static. Inputs for export and validation
come from the models themselves (z -> w -> W+ -> S as in real edits, real token sequences), so errors
are measured where the graphs actually operate, not on arbitrary noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from precompute.clip_model import Clip, text_embedding
from precompute.encoder import Encoder4Editing
from precompute.mapper import LatentMapper
from precompute.stylegan2 import Generator

from . import text_graph
from .synthesis_graph import ExportSynthesis

TRUNCATION = 0.7  # StyleCLIP samples with psi 0.7


@dataclass
class GraphSpec:
    name: str
    module: nn.Module
    input_name: str
    output_name: str
    metric: str  # "image" | "embedding" | "latent": the domain metric validation uses
    sample: Callable[[int, np.random.Generator], np.ndarray]  # batch, rng -> one input batch
    dynamic: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # axis >= 1 -> (name, min, max)
    # What the ONNX graph is exported from when it is not `module` itself: the same function rewritten for
    # the runtime (export/synthesis_graph.py). `module` stays the reference validation compares against.
    onnx_module: nn.Module | None = None
    openvino_module: nn.Module | None = None  # the form OpenVINO runs best, for the 'openvino' variant

    def variant_module(self, variant: str) -> nn.Module:
        return self.openvino_module if variant == "openvino" and self.openvino_module is not None else self.exported

    @property
    def exported(self) -> nn.Module:
        return self.onnx_module if self.onnx_module is not None else self.module

    def input_shape(self, array: np.ndarray) -> list:
        return ["batch", *(self.dynamic[a][0] if a in self.dynamic else d for a, d in enumerate(array.shape) if a)]

    def shape_range(self, array: np.ndarray, batches=(1, 4, 32)) -> list[tuple]:
        """(min, opt, max) input shapes (TensorRT's profile): `batches` on axis 0; a dynamic axis from
        its min, optimized for its max; static axes as in `array`."""
        def tail(k):
            return tuple(self.dynamic[a][k] if a in self.dynamic else d for a, d in enumerate(array.shape) if a)
        return [(batches[0], *tail(1)), (batches[1], *tail(2)), (batches[2], *tail(2))]


class _Call(nn.Module):
    """Exposes one method of a model as forward (the exporter traces forward)."""

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x):
        return getattr(self.model, self.method)(x)


class _Styles(nn.Module):
    def __init__(self, gen: Generator):
        super().__init__()
        self.gen = gen

    def forward(self, wplus):
        return torch.cat(self.gen.styles(wplus), dim=1)


class _TextEncoder(nn.Module):
    def __init__(self, clip: Clip):
        super().__init__()
        self.model = clip.model

    def forward(self, tokens):
        return text_embedding(self.model, tokens)


class _ImageEncoder(nn.Module):
    """Raw generator images -> unit CLIP embedding, preprocessing included (the bundle records which)."""

    def __init__(self, clip: Clip):
        super().__init__()
        self.clip = clip

    def forward(self, images):
        return self.clip.encode_image(images)


class InputSampler:
    """Realistic graph inputs drawn from the models: z, W+ (truncated, per-row jitter), S, images, tokens,
    and pictures for an encoder of `photo_size` px."""

    def __init__(self, gen: Generator, clip: Clip | None = None, photo_size: int | None = None):
        self.gen, self.clip, self.photo_size = gen, clip, photo_size

    @torch.no_grad()
    def z(self, batch, rng):
        return rng.standard_normal((batch, self.gen.config.style_dim), dtype=np.float32)

    @torch.no_grad()
    def wplus(self, batch, rng):
        w = self.gen.wplus_from_z(torch.from_numpy(self.z(batch, rng)), TRUNCATION)
        jitter = rng.standard_normal(w.shape, dtype=np.float32) * 0.1  # inverted latents differ per row
        return (w + torch.from_numpy(jitter)).numpy()

    @torch.no_grad()
    def styles(self, batch, rng):
        return torch.cat(self.gen.styles(torch.from_numpy(self.wplus(batch, rng))), dim=1).numpy()

    @torch.no_grad()
    def images(self, batch, rng):
        return self.gen(torch.from_numpy(self.wplus(batch, rng))).numpy()

    @torch.no_grad()
    def photos(self, batch, rng):
        """Generator images as an encoder takes them: clamped to [-1, 1], area-resized to its input size
        and quantized to 8 bits, as a user's picture is. Drawn one image at a time (the latents all first,
        as `images` draws them): at 1024 px a batch of 4 through the generator holds 2 GB of activations."""
        w = torch.from_numpy(self.wplus(batch, rng))
        x = torch.cat([self.gen(w[i:i + 1]) for i in range(batch)]).clamp(-1, 1)
        if x.shape[-1] != self.photo_size:
            x = torch.nn.functional.interpolate(x, size=(self.photo_size, self.photo_size), mode="area")
        return (torch.round((x + 1) * 127.5) / 127.5 - 1).numpy()

    def tokens(self, batch, rng):
        words = ["a", "face", "with", "purple", "blonde", "hair", "smiling", "glasses", "blue", "eyes",
                 "photo", "of", "the", "bald", "person", "on", "green", "background", "surprised", "😀"]
        texts = [" ".join(rng.choice(words, size=rng.integers(1, 40))) for _ in range(batch)]
        return self.clip.tokenize(texts).numpy()


def generator_graphs(gen: Generator, sampler: InputSampler) -> list[GraphSpec]:
    """No W+ -> image graph: it would carry all the synthesis weights a second time (117 MB at FFHQ size);
    W+ renders as `styles` then `synthesis`."""
    return [
        GraphSpec("mapping", _Call(gen, "mapping"), "z", "w", "latent", sampler.z),
        GraphSpec("styles", _Styles(gen), "wplus", "styles", "latent", sampler.wplus),
        GraphSpec("synthesis", _Call(gen, "synthesis_flat"), "styles", "image", "image", sampler.styles,
                  onnx_module=ExportSynthesis(gen), openvino_module=ExportSynthesis(gen, upsample="transposed")),
    ]


def mapper_graph(name: str, mapper: LatentMapper, sampler: InputSampler) -> GraphSpec:
    """W+ -> edited W+ at strength 1 (the runtime scales: w + k * (w' - w))."""
    return GraphSpec(f"mapper_{name}", _Call(mapper, "edit"), "wplus", "wplus_edited", "latent", sampler.wplus)


def clip_graphs(clip: Clip, sampler: InputSampler, image_encoder: bool) -> list[GraphSpec]:
    length = {1: ("length", 2, clip.context_length)} if clip.trims_tokens else {}
    fused = text_graph.ExportTextEncoder(clip) if text_graph.supports(clip) else None
    specs = [GraphSpec("text_encoder", _TextEncoder(clip), "tokens", "text_embedding", "embedding", sampler.tokens, length,
                       onnx_module=fused)]
    if image_encoder:
        specs.append(GraphSpec("image_encoder", _ImageEncoder(clip), "images", "image_embedding", "embedding", sampler.images))
    return specs


def encoder_graph(encoder: Encoder4Editing, sampler: InputSampler) -> GraphSpec:
    """Pictures [B, 3, S, S] in [-1, 1] -> W+ [B, n_latent, style_dim], latent_avg included."""
    return GraphSpec("encoder", encoder.eval(), "image", "wplus", "latent", sampler.photos)
