"""Method A: text-guided latent optimization in W+ (DESIGN §4.A).

Loss per latent: (1 - cos(E_I(G(w)), E_T(t))) + l2 * sum((w - w_s)^2) + id * L_id [+ keep * the keep
term (styleclip_losses.keep_loss) with each latent's pixel weights], the CLIP term optionally
averaged over shifted copies of the image (`clip_views`; the same shifts for every latent, so batching
still does not couple them). Adam at lr 0.1 with StyleCLIP's schedule: linear ramp-up
over the first 5 % of steps, cosine ramp-down over the last 25 % (so the first step has lr 0). A batch
of latents is optimized at once; the losses are summed, so every latent follows exactly the path it
would alone (Adam is per-coordinate).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .clip_model import Clip
from .styleclip_losses import IdentityNet, clip_loss, identity_loss, keep_loss, text_target
from .stylegan2 import Generator


def lr_at(step: int, steps: int, lr: float = 0.1, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


@dataclass
class OptimizeConfig:
    steps: int = 300
    lr: float = 0.1
    l2: float = 0.008
    # weight of L_id, used only when an identity network is given: StyleCLIP's optimization notebook's
    # id_lambda (its script's default, 0, is the no-network case)
    identity: float = 0.005
    clip_views: int = 1  # > 1: CLIP loss averaged over shifted copies (styleclip_losses.shifted_views)
    seed: int = 0  # of the views' shifts
    keep_weight: float = 0.0  # the keep term's, used only with keep weights (0: none)

    def __post_init__(self):
        if (self.steps < 1 or self.lr <= 0 or self.l2 < 0 or self.identity < 0 or self.clip_views < 1
                or self.keep_weight < 0):
            raise ValueError(f"invalid optimization settings {self}")


def optimize_latents(gen: Generator, clip: Clip, prompt: str, w_start: torch.Tensor,
                     cfg: OptimizeConfig = OptimizeConfig(), identity: IdentityNet | None = None,
                     progress: bool = True, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
    """Edited W+ [B, n_latent, D] for `prompt`, starting from `w_start`, and the loss history. `keep`: the keep
    term's pixel weights [B, 1, H, W] (precompute/demo/keep.py), used when `cfg.keep_weight` > 0."""
    target = text_target(clip, prompt)
    w_start = w_start.detach()
    use_id = identity is not None and cfg.identity > 0
    use_keep = cfg.keep_weight > 0
    if use_keep and (keep is None or keep.shape[0] != w_start.shape[0]):
        raise ValueError(f"the keep term needs one weight map per latent ({w_start.shape[0]})")
    with torch.no_grad():
        source = gen(w_start) if use_id or use_keep else None
    w = w_start.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.lr)
    shifts = torch.Generator().manual_seed(cfg.seed)
    history = []
    start = time.perf_counter()
    for step in tqdm(range(cfg.steps), desc=f"optimize {prompt!r}", disable=not progress):
        opt.param_groups[0]["lr"] = lr_at(step, cfg.steps, cfg.lr)
        images = gen(w)
        terms = {"clip": clip_loss(clip, images, target, cfg.clip_views, shifts), "l2": ((w - w_start) ** 2).sum((1, 2))}
        loss = terms["clip"] + cfg.l2 * terms["l2"]
        if use_id:
            terms["id"] = identity_loss(identity, images, source)
            loss = loss + cfg.identity * terms["id"]
        if use_keep:
            terms["keep"] = keep_loss(images, source, keep)
            loss = loss + cfg.keep_weight * terms["keep"]
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        history.append({k: v.mean().item() for k, v in terms.items()})
    history.append({"seconds": time.perf_counter() - start})
    return w.detach(), history
