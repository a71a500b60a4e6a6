"""The losses StyleCLIP's methods A and B share (DESIGN §4): CLIP, latent L2 and a pluggable identity term."""
from __future__ import annotations

from typing import Callable

import torch

from .clip_model import Clip

# Any image-embedding network: raw generator images [B, 3, H, W] -> embeddings [B, D] (ArcFace for faces).
IdentityNet = Callable[[torch.Tensor], torch.Tensor]


def text_target(clip: Clip, prompt: str) -> torch.Tensor:
    """The unit text embedding [1, D] a CLIP loss pulls towards."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty; describe the edit, e.g. 'a face with purple hair'")
    with torch.no_grad():
        return clip.encode_text([prompt])


def clip_loss(clip: Clip, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos(E_I(x), E_T(t)) per image [B] (StyleCLIP: 1 - logits/100 with logit scale 100)."""
    return 1 - (clip.encode_image(images) * target).sum(-1)


def identity_loss(identity: IdentityNet, edited: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """1 - cos(id(edited), id(source)) per image [B]; the source features are fixed targets."""
    with torch.no_grad():
        ref = torch.nn.functional.normalize(identity(source), dim=-1)
    return 1 - (torch.nn.functional.normalize(identity(edited), dim=-1) * ref).sum(-1)
