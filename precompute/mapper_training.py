"""Method B: training a latent mapper for one prompt (DESIGN §4.B).

Loss = clip * (1 - cos(E_I(G(w')), E_T(t))) + l2 * MSE(w', w) [+ id * L_id(G(w'), G(w))]
       [+ keep * weighted MSE(G(w'), G(w)) outside the edited region] with
w' = w + 0.1 * M(w); `clip_views` > 1 averages the CLIP term over shifted copies of G(w') (an option
for small CLIP models, which a mapper otherwise meets with a pixel pattern). The keep term (HairCLIP's
background loss; not in StyleCLIP) needs per-latent masks: `keep_masks(z)` gives each pixel's weight.

The reference trained 50k steps of Ranger (lr 0.5, batch 2) on e4e-inverted CelebA-HQ latents; here
the latents are fresh samples (truncation 0.7) every step, and Adam is used (Ranger is not in torch)
with the same nominal lr: the EqualLinear weights are stored divided by lr_mul = 0.01, so Adam's step
of ~lr on them is ~0.005 on the effective weights.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .checkpoints import model_digest
from .clip_model import Clip
from .training import run_training, step_generator
from .mapper import GROUPS, LatentMapper, MapperConfig
from .styleclip_losses import IdentityNet, clip_loss, identity_loss, keep_loss, text_target
from .stylegan2 import Generator


@dataclass
class MapperTrainConfig:
    prompt: str
    steps: int = 1000
    batch: int = 8
    lr: float = 0.5
    clip_weight: float = 1.0
    l2_weight: float = 0.8
    id_weight: float = 0.1  # only with an identity network
    truncation: float = 0.7
    keep: str = ""  # what the keep term's masks free (the demo's attribute, e.g. "hair_color"); "": no keep term
    keep_weight: float = 200.0  # with `keep` (the demo's purple hair and smiling; 1000 left purple hair unedited)
    clip_views: int = 1  # > 1: the CLIP loss averages shifted copies (styleclip_losses.shifted_views)
    enabled: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(GROUPS, True))
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self):
        if not self.prompt.strip():
            raise ValueError("the prompt is empty; describe the edit, e.g. 'a face with purple hair'")
        if self.keep and self.keep_weight <= 0:
            raise ValueError(f"the keep term needs a positive weight, got {self.keep_weight}")
        if self.steps < 1 or self.batch < 1 or self.lr <= 0 or self.clip_views < 1:
            raise ValueError(f"steps, batch, lr and clip_views must be positive, got {self.steps}, {self.batch}, "
                             f"{self.lr}, {self.clip_views}")


def train_mapper(gen: Generator, clip: Clip, cfg: MapperTrainConfig, workdir, identity: IdentityNet | None = None,
                 progress: bool = True, stop_at: int | None = None,
                 keep_masks: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[LatentMapper, dict]:
    """Train (or resume, from `workdir`) a mapper for `cfg.prompt`; returns it and the run info (run_training's,
    and "terms": the names of each history row's values after its step). With `cfg.keep`,
    `keep_masks(z)` gives the keep term's pixel weights [B, 1, H, W] for a batch's codes z."""
    if cfg.keep and keep_masks is None:
        raise ValueError(f"the keep term ({cfg.keep!r}) needs keep_masks")
    gen.eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)
    mapper = LatentMapper(MapperConfig(gen.n_latent, gen.config.style_dim, enabled=dict(cfg.enabled), prompt=cfg.prompt))
    opt = torch.optim.Adam(mapper.parameters(), lr=cfg.lr)
    target = text_target(clip, cfg.prompt)
    use_id = identity is not None and cfg.id_weight > 0

    def step_fn(step: int) -> dict:
        z = torch.randn(cfg.batch, gen.config.style_dim, generator=step_generator(cfg.seed, step))
        with torch.no_grad():
            w = gen.wplus_from_z(z, cfg.truncation)
        w_edit = mapper.edit(w)
        images = gen(w_edit)
        views = clip_loss(clip, images, target, cfg.clip_views, step_generator(cfg.seed + 1, step))
        terms = {"clip": views.mean(), "l2": F.mse_loss(w_edit, w)}
        loss = cfg.clip_weight * terms["clip"] + cfg.l2_weight * terms["l2"]
        if use_id or cfg.keep:
            with torch.no_grad():
                source = gen(w)
        if use_id:
            terms["id"] = identity_loss(identity, images, source).mean()
            loss = loss + cfg.id_weight * terms["id"]
        if cfg.keep:
            terms["keep"] = keep_loss(images, source, keep_masks(z).to(images)).mean()
            loss = loss + cfg.keep_weight * terms["keep"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}

    # the weights too: a finished checkpoint made with another generator or CLIP must not be resumed
    hparams = dict(asdict(cfg), identity=use_id, generator=gen.config.to_dict(), generator_weights=model_digest(gen),
                   clip_weights=model_digest(clip.model))
    hparams.pop("checkpoint_every")
    if not cfg.keep:  # checkpoints from before the keep term still resume
        del hparams["keep_weight"], hparams["keep"]
    if use_id and isinstance(identity, torch.nn.Module):  # nor one made with another identity network
        hparams["identity_weights"] = model_digest(identity)
    info = run_training(workdir=workdir, hparams=hparams, model=mapper, optimizer=opt, steps=cfg.steps,
                        step_fn=step_fn, lr_fn=lambda step, group: cfg.lr, checkpoint_every=cfg.checkpoint_every,
                        stop_at=stop_at, desc=f"mapper {cfg.prompt!r}", progress=progress)
    info["terms"] = ["loss", "clip", "l2"] + ["id"] * use_id + ["keep"] * bool(cfg.keep)  # step_fn's, in its order
    return mapper.eval(), info
