"""The demo encoder (DESIGN §7, §10): e4e's architecture at 64 px, trained on renders to the shipped demo
generator's W+.

Renders are the demo world's photographs: the generator never reproduced any of them exactly (and never
saw this set: it is drawn with its own seed). e4e's objective, as far as this world allows, in two stages:

1. latent stage (steps < latent_steps, encoder only, no generator pass: fast): every render's parameters
   are known, so its intended w is known too: the mapping of the structured code `face_to_z` (mean over
   a few draws of the free dims). The encoder regresses it on every row. This puts inversions where the
   sampled latents are, which is what the edits (mappers, fs3) were made for.
2. image stage: G(E(x)) against the render: pixel + edge MSE with the small features (eyes, brows,
   mouth) weighted up (`train_generator.image_loss`, `render.feature_regions`), the demo CLIP's image
   embedding as the perceptual / identity term, e4e's delta regularization (L2 norm of each row's
   offset from row 0) and the latent term kept at a small weight, so reconstructions improve without
   leaving the region the edits work in.

No classifier in any loss (it only evaluates, `evaluate_inversion`). All of e4e's deltas are trained
from the start (e4e adds one per progressive stage): the latent stage already starts them at zero.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runtime.files import sha256_file

from ..encoder import Encoder4Editing, EncoderConfig, save_encoder
from .render import ATTRIBUTE_NAMES, GEOMETRY_NAMES, feature_regions, sample_dataset
from .training import HELDOUT_SEED, augment, cached_dataset, cosine_lr, run_training, set_threads, step_generator, step_rng
from .training import to_model_input, to_uint8

# 64 px, the demo generator's 10 rows of 128; IR-SE units 2/2/3/2 of 32-128 channels: ~0.3 GFLOP per image,
# so a training step of 32 renders costs ~0.3 s (latent stage) / ~0.7 s (image stage) on 2 cores.
DEMO_ENCODER = EncoderConfig(64, (2, 2, 3, 2), (32, 48, 96, 128), n_latent=10, style_dim=128, se_reduction=8)
RENDER_SEED_OFFSET = 700_000  # the encoder's renders: not the generator's (seed) nor the held-out set
TARGET_DRAWS = 8  # free-dim draws averaged for each render's intended w


@dataclass
class EncoderTrainConfig:
    steps: int = 2200
    latent_steps: int = 1600  # stage 1 (latent regression) before the image stage
    batch: int = 32
    n_train: int = 20000
    lr: float = 1e-3
    image_lr: float = 3e-4  # stage 2 restarts its cosine schedule here
    warmup: int = 50
    feature_weight: float = 8.0  # the pixel loss weighs 1 + this inside render.feature_regions
    clip_weight: float = 0.3
    latent_weight: float = 0.2  # stage 2's weight of the (relative) latent MSE; stage 1 has only that term
    delta_weight: float = 2e-3  # e4e's delta_norm_lambda for sum_i ||w_i - w_0||_2 (e4e: 2e-4 at 512 dims)
    noise: float = 0.03  # input augmentation: pixel noise up to this std, and a light blur on some renders
    checkpoint_every: int = 100
    seed: int = 0


@torch.no_grad()
def intended_latents(gen, labels: np.ndarray, geometry: np.ndarray, seed: int, draws: int = TARGET_DRAWS,
                     batch: int = 4096) -> torch.Tensor:
    """The w each render's parameters map to: mean over `draws` structured codes (free dims redrawn)."""
    from .train_generator import face_to_z

    out = []
    for i in range(0, len(labels), batch):
        rng = np.random.default_rng([seed, i])
        z = [face_to_z(labels[i:i + batch], geometry[i:i + batch], rng, gen.config.style_dim) for _ in range(draws)]
        out.append(torch.stack([gen.mapping(torch.from_numpy(zk)) for zk in z]).mean(0))
    return torch.cat(out)


def delta_norms(codes: torch.Tensor) -> torch.Tensor:
    """e4e's delta regularization: sum over rows i >= 1 of ||w_i - w_0||_2, mean over the batch."""
    return (codes[:, 1:] - codes[:, :1]).norm(dim=2).sum(1).mean()


def train_encoder(workdir, generator, clip, cfg: EncoderTrainConfig = EncoderTrainConfig(),
                  config: EncoderConfig = DEMO_ENCODER, *, threads: int | None = None, stop_at: int | None = None,
                  progress: bool = True) -> tuple[Encoder4Editing, dict]:
    """Train (or resume from `workdir`) an encoder for the generator/CLIP files given; returns it (eval
    mode) and run_training's info."""
    from ..checkpoints import load_generator
    from ..clip_model import load_clip
    from .train_generator import image_loss

    set_threads(threads)
    if not 0 <= cfg.latent_steps <= cfg.steps:
        raise ValueError(f"latent_steps must be in 0..steps ({cfg.steps}), got {cfg.latent_steps}")
    gen = load_generator(generator).eval().requires_grad_(False)
    if (gen.n_latent, gen.config.style_dim) != (config.n_latent, config.style_dim):
        raise ValueError(f"the encoder config gives W+ [{config.n_latent}, {config.style_dim}], the generator's is "
                         f"[{gen.n_latent}, {gen.config.style_dim}]")
    if gen.config.size != config.input_size:
        raise ValueError(f"the encoder reads {config.input_size} px renders, the generator draws {gen.config.size} px")
    clip_model = load_clip(weights=clip)
    clip_model.model.eval().requires_grad_(False)
    hparams = dict(asdict(cfg), encoder=config.to_dict(), recipe="latent stage, then image stage v1",
                   generator_sha256=sha256_file(Path(generator).with_suffix(".safetensors")
                                                if Path(generator).suffix == ".json" else generator),
                   clip_sha256=sha256_file(Path(clip).with_suffix(".safetensors") if Path(clip).suffix == ".json" else clip))
    images, labels, geometry = cached_dataset(workdir, cfg.n_train, cfg.seed + RENDER_SEED_OFFSET)
    images_t = torch.from_numpy(images)
    target = intended_latents(gen, labels, geometry, cfg.seed)
    w_var = target.var(0).sum()  # the latent MSE in units of the intended w's spread
    torch.manual_seed(cfg.seed)
    encoder = Encoder4Editing(config)
    with torch.no_grad():
        encoder.latent_avg.copy_(gen.latent_avg.expand(config.n_latent, -1))  # e4e: start from the average latent
    opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, betas=(0.9, 0.99))

    def lr_fn(step: int, group: dict) -> float:
        if step < cfg.latent_steps:
            return cosine_lr(step, cfg.latent_steps, cfg.lr, cfg.warmup)
        return cosine_lr(step - cfg.latent_steps, cfg.steps - cfg.latent_steps, cfg.image_lr, cfg.warmup)

    def step_fn(step: int) -> dict:
        idx = torch.from_numpy(step_rng(cfg.seed, step).integers(cfg.n_train, size=cfg.batch))
        real = to_model_input(images_t[idx])
        x = augment(real, step_generator(cfg.seed, step), noise=cfg.noise)
        codes = encoder.codes(x)
        wplus = codes + encoder.latent_avg
        latent = (wplus - target[idx][:, None]).square().sum(2).mean() / w_var
        logs = {"latent": latent.item()}
        if step < cfg.latent_steps:
            loss = latent
        else:
            fake = gen(wplus)
            weight = 1 + cfg.feature_weight * torch.from_numpy(feature_regions(geometry[idx.numpy()]))
            pixel = image_loss(fake, real, weight)
            with torch.no_grad():
                real_emb = clip_model.encode_image(real)
            clip_loss = (1 - (clip_model.encode_image(fake) * real_emb).sum(1)).mean()
            delta = delta_norms(codes)
            loss = pixel + cfg.clip_weight * clip_loss + cfg.latent_weight * latent + cfg.delta_weight * delta
            logs.update(pixel=pixel.item(), clip=clip_loss.item(), delta=delta.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item(), **logs}

    info = run_training(workdir=workdir, hparams=hparams, model=encoder, optimizer=opt, steps=cfg.steps,
                        step_fn=step_fn, lr_fn=lr_fn, checkpoint_every=cfg.checkpoint_every, stop_at=stop_at,
                        desc="demo encoder", progress=progress)
    info["hparams"] = hparams
    return encoder.eval(), info


def finalize(encoder: Encoder4Editing, out, hparams: dict, metrics: dict | None = None) -> tuple[Path, Path]:
    """Ship the encoder with its training settings (and metrics): fp16 tensors, as the demo CLIP (the demo
    world's files stay within issue 3's 40 MB); measure the shipped file (`load_encoder`), not this module."""
    extra = {"training": {k: v for k, v in hparams.items() if k != "encoder"}}
    if metrics:
        extra["metrics"] = metrics
    return save_encoder(encoder, out, extra, dtype=torch.float16)


# --- evaluation (the classifier only reads) -------------------------------------------------------------
@torch.no_grad()
def invert_renders(encoder: Encoder4Editing, images: np.ndarray, batch: int = 250) -> torch.Tensor:
    """uint8 renders [N, S, S, 3] -> W+ [N, n_latent, style_dim]."""
    x = to_model_input(images)
    return torch.cat([encoder(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def evaluate_inversion(encoder: Encoder4Editing, gen, classifier, n: int = 1000, seed: int = HELDOUT_SEED,
                       data=None, batch: int = 250) -> dict:
    """Reconstructions G(E(render)) of `n` held-out renders: per attribute, how often the classifier reads
    the same value on the reconstruction as on the render; R^2 of the geometry it reads on the
    reconstruction against the render's; PSNR (render vs reconstruction, [0, 255]). The same for the
    generator drawing each render's intended w (`intended_latents`, what the mapping gives its
    parameters): how well the generator draws these faces at all, without any encoder."""
    from .classifier import r2_scores, read_attributes

    images, labels, geometry = (data if data is not None else sample_dataset(n, seed))
    images, labels, geometry = images[:n], labels[:n], geometry[:n]
    a0, _, g0 = read_attributes(classifier, images)

    def scores(wplus, prefix):
        recon = np.concatenate([to_uint8(gen(wplus[i:i + batch])) for i in range(0, len(wplus), batch)])
        a1, _, g1 = read_attributes(classifier, recon)
        err = (recon.astype(np.float64) - images.astype(np.float64)) ** 2
        psnr = 10 * np.log10(255.0**2 / err.reshape(len(images), -1).mean(1))
        r2 = r2_scores(g1.astype(np.float64), g0.astype(np.float64))
        return {f"{prefix}agreement": {name: float((a0[:, k] == a1[:, k]).mean()) for k, name in enumerate(ATTRIBUTE_NAMES)},
                f"{prefix}agreement_all": float((a0 == a1).all(1).mean()),
                f"{prefix}r2": dict(zip(GEOMETRY_NAMES, map(float, r2))), f"{prefix}r2_mean": float(r2.mean()),
                f"{prefix}psnr": float(psnr.mean()), f"{prefix}psnr_p10": float(np.percentile(psnr, 10))}

    intended = intended_latents(gen, labels, geometry, seed)[:, None].expand(-1, gen.n_latent, -1)
    return {"n": int(len(images)), "seed": seed, **scores(invert_renders(encoder, images, batch), ""),
            **scores(intended, "generator_")}


def reconstruction_rows(encoder: Encoder4Editing, gen, n: int = 8, seed: int = HELDOUT_SEED) -> list[np.ndarray]:
    """Two grid rows: n held-out renders and their reconstructions."""
    images = sample_dataset(n, seed)[0]
    with torch.no_grad():
        recon = to_uint8(gen(invert_renders(encoder, images)))
    return [list(images), list(recon)]

