"""The losses StyleCLIP's methods A and B share (DESIGN §4): CLIP, latent L2, a pluggable identity term, and the
keep term (HairCLIP's background loss, not StyleCLIP's; the demo world's masks: precompute/demo/keep.py)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .clip_model import Clip

# Any image-embedding network: raw generator images [B, 3, H, W] -> embeddings [B, D] (ArcFace for faces).
IdentityNet = Callable[[torch.Tensor], torch.Tensor]


def text_target(clip: Clip, prompt: str) -> torch.Tensor:
    """The unit text embedding [1, D] a CLIP loss pulls towards."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty; describe the edit, e.g. 'a face with purple hair'")
    with torch.no_grad():
        return clip.encode_text([prompt])


def clip_loss(clip: Clip, images: torch.Tensor, target: torch.Tensor, views: int = 1,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """1 - cos(E_I(x), E_T(t)) per image [B] (StyleCLIP: 1 - logits/100 with logit scale 100); with
    `views` > 1, averaged over that many copies shifted by up to 1/16 of the size (`shifted_views`)."""
    if views <= 1:
        return 1 - (clip.encode_image(images) * target).sum(-1)
    loss = 1 - (clip.encode_image(shifted_views(images, views, generator)) * target).sum(-1)
    return loss.view(views, len(images)).mean(0)


def shifted_views(images: torch.Tensor, views: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[views * B, 3, H, W]: the images translated by random offsets of up to H/16 px (reflect padding).

    A small CLIP is easily met by a pixel pattern instead of the attribute (the demo CLIP's mappers
    drew blobs); a pattern tied to one position and patch grid does not survive the shifts."""
    size = images.shape[-1]
    pad = max(1, size // 16)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (views, 2), generator=generator).tolist()
    return torch.cat([padded[..., y : y + size, x : x + size] for y, x in offsets])


def identity_loss(identity: IdentityNet, edited: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """1 - cos(id(edited), id(source)) per image [B]; the source features are fixed targets."""
    with torch.no_grad():
        ref = torch.nn.functional.normalize(identity(source), dim=-1)
    return 1 - (torch.nn.functional.normalize(identity(edited), dim=-1) * ref).sum(-1)


def keep_loss(edited: torch.Tensor, source: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per image [B], the weighted mean squared pixel change (weights [B, 1, H, W], 0 where the edit may change)."""
    total = weights.sum((1, 2, 3)).clamp(min=1e-8) * edited.shape[1]
    return (((edited - source) ** 2) * weights).sum((1, 2, 3)) / total
