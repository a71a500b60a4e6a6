"""Global-direction edit math (DESIGN §4.C), in numpy: the one implementation precompute, export,
validation and the runtime all call.

  text direction  dt = unit(class(target) - class(neutral)), class(t) = unit(mean_k unit(E_T(template_k(t))))
  relevance       r  = fs3 @ dt                  (one row of fs3 per non-ToRGB style channel)
  threshold       r_c = 0 where |r_c| < beta      (beta: disentanglement)
  direction       ds = r / max|r| * std           (ToRGB channels and channels past fs3's rows get 0)
  edit            s' = s + sum_i alpha_i * ds_i
"""
from __future__ import annotations

import numpy as np

from . import checks
from .stylespace import StyleSpaceLayout

DEFAULT_ALPHA = 4.1
DEFAULT_BETA = 0.15
ALPHA_RANGE = (-10.0, 10.0)
BETA_RANGE = (0.0, 1.0)
DEFAULT_STRENGTH = 1.0  # a mapper's W+ offset scale: 1 = the offset it was trained with ...
STRENGTH_RANGE = (-5.0, 5.0)  # ... and the range it may take

# CLIP's 80 ImageNet prompt templates without 'a photo of many {}.' (StyleCLIP uses these 79).
TEMPLATES = (
    'a bad photo of a {}.',
    'a sculpture of a {}.',
    'a photo of the hard to see {}.',
    'a low resolution photo of the {}.',
    'a rendering of a {}.',
    'graffiti of a {}.',
    'a bad photo of the {}.',
    'a cropped photo of the {}.',
    'a tattoo of a {}.',
    'the embroidered {}.',
    'a photo of a hard to see {}.',
    'a bright photo of a {}.',
    'a photo of a clean {}.',
    'a photo of a dirty {}.',
    'a dark photo of the {}.',
    'a drawing of a {}.',
    'a photo of my {}.',
    'the plastic {}.',
    'a photo of the cool {}.',
    'a close-up photo of a {}.',
    'a black and white photo of the {}.',
    'a painting of the {}.',
    'a painting of a {}.',
    'a pixelated photo of the {}.',
    'a sculpture of the {}.',
    'a bright photo of the {}.',
    'a cropped photo of a {}.',
    'a plastic {}.',
    'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.',
    'a photo of the {}.',
    'a good photo of the {}.',
    'a rendering of the {}.',
    'a {} in a video game.',
    'a photo of one {}.',
    'a doodle of a {}.',
    'a close-up photo of the {}.',
    'a photo of a {}.',
    'the origami {}.',
    'the {} in a video game.',
    'a sketch of a {}.',
    'a doodle of the {}.',
    'a origami {}.',
    'a low resolution photo of a {}.',
    'the toy {}.',
    'a rendition of the {}.',
    'a photo of the clean {}.',
    'a photo of a large {}.',
    'a rendition of a {}.',
    'a photo of a nice {}.',
    'a photo of a weird {}.',
    'a blurry photo of a {}.',
    'a cartoon {}.',
    'art of a {}.',
    'a sketch of the {}.',
    'a embroidered {}.',
    'a pixelated photo of a {}.',
    'itap of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.',
    'a plushie {}.',
    'a photo of the nice {}.',
    'a photo of the small {}.',
    'a photo of the weird {}.',
    'the cartoon {}.',
    'art of the {}.',
    'a drawing of the {}.',
    'a photo of the large {}.',
    'a black and white photo of a {}.',
    'the plushie {}.',
    'a dark photo of a {}.',
    'itap of a {}.',
    'graffiti of the {}.',
    'a toy {}.',
    'itap of my {}.',
    'a photo of a cool {}.',
    'a photo of a small {}.',
    'a tattoo of the {}.',
)


class NoChannelError(ValueError):
    """No style channel passes the threshold beta."""


def unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def template_prompts(text: str, templates=TEMPLATES) -> list[str]:
    return [t.format(text) for t in templates]


def class_embedding(embeddings: np.ndarray) -> np.ndarray:
    """Per-template embeddings [T, D] of one text -> its unit class embedding [D]."""
    return unit(unit(np.asarray(embeddings, dtype=np.float64)).mean(axis=0))


def text_direction(encode, target: str, neutral: str, templates=TEMPLATES) -> np.ndarray:
    """dt [D] from `encode(list[str]) -> [N, D]`; both texts' templates go in one batched call."""
    embs = np.asarray(encode(template_prompts(target, templates) + template_prompts(neutral, templates)))
    n = len(templates)
    diff = class_embedding(embs[:n]) - class_embedding(embs[n:])
    if np.linalg.norm(diff) < 1e-6:
        raise ValueError(f"the target text {target!r} and the neutral text {neutral!r} have the same CLIP embedding, so "
                         "the edit direction is zero; describe the change in the target or pick another neutral text")
    return unit(diff).astype(np.float32)


def relevance(fs3: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """r [n_rows]: cosine of each channel's image-space direction with the text direction."""
    return np.asarray(fs3, dtype=np.float32) @ np.asarray(dt, dtype=np.float32)


def auto_beta(r: np.ndarray, min_channels: int) -> float:
    """A beta that keeps the `min_channels` most relevant channels.

    It lies midway between the K-th and the (K+1)-th largest |r|, not on the K-th itself: a beta
    exactly at a channel's |r| would let a 1e-7 difference in dt (another runtime, fp16) drop it.
    """
    if not 1 <= min_channels <= r.size:
        raise ValueError(f"min_channels must be in 1..{r.size}, got {min_channels}")
    ranked = np.sort(np.abs(r))[::-1]
    below = ranked[min_channels] if min_channels < r.size else 0.0
    return float((ranked[min_channels - 1] + below) / 2)


def check_range(name: str, value: float, bounds: tuple[float, float]) -> float:
    """`value` as a float: TypeError unless a real number, ValueError outside `bounds`."""
    return checks.real(name, value, bounds)


def check_wplus(wplus, n_latent: int, style_dim: int) -> np.ndarray:
    """W+ latents as float32 [N, n_latent, style_dim] (one [n_latent, style_dim] latent is accepted)."""
    wplus = checks.real_array("latents", wplus, f"of W+ [N, {n_latent}, {style_dim}]")
    if wplus.ndim == 2 and wplus.shape == (n_latent, style_dim):
        wplus = wplus[None]
    if wplus.ndim != 3 or wplus.shape[1:] != (n_latent, style_dim) or len(wplus) == 0:
        raise ValueError(f"latents must be W+ of shape [N, {n_latent}, {style_dim}], got {list(wplus.shape)}")
    if not np.isfinite(wplus).all():
        raise ValueError("latents contain NaN or infinite values")
    return wplus


def style_direction(r: np.ndarray, beta: float, std: np.ndarray, layout: StyleSpaceLayout) -> np.ndarray:
    """Flat Δs [layout.total] for relevance `r` (rows in layout.conv_index() order, possibly fewer)."""
    check_range("beta", beta, BETA_RANGE)
    conv_index = layout.conv_index()
    if r.ndim != 1 or r.size > conv_index.size:
        raise ValueError(f"relevance has shape {r.shape}; the generator has {conv_index.size} non-ToRGB channels")
    kept = np.where(np.abs(r) >= beta, r, 0.0)
    peak = np.abs(kept).max(initial=0.0)
    if peak == 0.0:
        raise NoChannelError(
            f"no style channel reaches beta={beta:g} (the strongest has |r|={np.abs(r).max(initial=0.0):.3f}); "
            f"use beta <= {np.floor(np.abs(r).max(initial=0.0) * 1000) / 1000:.3f} or auto-beta"
        )
    ds = np.zeros(layout.total, dtype=np.float32)
    ds[conv_index[: r.size]] = kept / peak * np.asarray(std, dtype=np.float32)[conv_index[: r.size]]
    return ds


def apply_edits(s: np.ndarray, directions, alphas) -> np.ndarray:
    """s [B, total] + sum_i alpha_i * ds_i."""
    out = np.array(s, dtype=np.float32, copy=True)
    for ds, alpha in zip(directions, alphas, strict=True):
        out += np.float32(check_range("alpha", alpha, ALPHA_RANGE)) * ds
    return out
