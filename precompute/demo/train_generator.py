"""Training the demo StyleGAN2 on renders (DESIGN §7): a conditional decoder, then a distilled mapping.

Planning measured why the obvious objectives fail on 2 cores: regressing G(z) onto render(f(z)) collapses
to the mean face (the mapping must learn discontinuous functions of z while the synthesis network learns
to draw), and a GAN is too slow. An autoencoder works but an encoder's codes also hold the stochastic
hair texture, so a mapping from z cannot fit them well. So every stage gets an easy, exact target:

1. decoder (steps < fit_at): a small MLP `cond` turns the render parameters (one-hot attributes,
   geometry) into one w; the synthesis network decodes it (W+ = w on every row). Loss: MSE on pixels
   and on image gradients (edges: eyes, mouth, glasses); see `image_loss` for why not L1.
2. mapping fit (once, at fit_at): z is a *structured* code of the render parameters (`face_to_z`: for
   an attribute with n values, the argmax of an n-dim Gaussian block; for a geometry value g, Phi^-1(g);
   the other dims are free noise). The mapping network regresses cond(parameters(z)) from z, fresh z
   every step: no images, thousands of steps take seconds.
3. distillation (steps >= fit_at): G(mapping(z)) is compared with the render of parameters(z); mapping
   and synthesis train together, which sharpens the attribute boundaries the mapping only approximated.

4. refinement (`refine`, its own command and workdir): more distillation of the finished generator with
   the loss weighted up on the small features (`render.feature_regions`: eyes with brows and lenses,
   mouth). They hold four of the seven attributes (a bald face's hair colour only in its brows) in
   ~17% of the pixels, and the plain loss left them blurred.
5. sharpening (`sharpen_mapping`, the end of `refine`): the mapping alone learns w(z) =
   w(widen_margins(z)), a frozen copy of itself as the target: w depends on which value each attribute
   block picks, not on how clearly. Images never pin that down (the boundary faces are few), so
   regression left the argmax steps as ramps, and a face near a boundary drew a blend of two values.

Sampling z ~ N(0, I) then gives the renderer's prior (argmax of iid Gaussians is uniform; Phi of a
normal is uniform), and `z_to_face` reads the intended face back from any z.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from runtime.files import sha256_file

from ..checkpoints import load_generator, save_generator
from ..stylegan2 import Generator, GeneratorConfig
from .render import ATTRIBUTES, GEOMETRY, feature_regions
from .training import cached_dataset, cosine_lr, run_training, set_threads, step_rng, to_model_input, to_uint8

# The demo generator: 64 px, style dim 128, few channels (2-core budget); 8 mapping layers as in
# StyleGAN2: the mapping has to approximate argmax boundaries sharply.
DEMO_CONFIG = GeneratorConfig(64, 128, 8, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32})
ATTR_SIZES = [len(v) for v in ATTRIBUTES.values()]
ATTR_DIMS = sum(ATTR_SIZES)  # z starts with one block per attribute ...
CODE_DIMS = ATTR_DIMS + len(GEOMETRY)  # ... then the geometry: the structured dims; the rest is noise

_normal_ppf = np.vectorize(NormalDist().inv_cdf, otypes=[np.float32])
_normal_cdf = np.vectorize(NormalDist().cdf, otypes=[np.float32])


# --- the structured code ------------------------------------------------------------------------------
def attribute_blocks(z: np.ndarray) -> list[np.ndarray]:
    """Views of z's attribute blocks (the first ATTR_DIMS columns), one per attribute in ATTRIBUTES
    order; writing to a view writes to z."""
    ends = np.cumsum(ATTR_SIZES)
    return [z[:, end - size : end] for size, end in zip(ATTR_SIZES, ends)]


def face_to_z(attrs: np.ndarray, geometry: np.ndarray, rng: np.random.Generator, dim: int) -> np.ndarray:
    """z [N, dim] whose attribute blocks have their argmax at the face's values and whose geometry
    dims are Phi^-1(g): a draw from N(0, I) conditioned on the face (free dims stay N(0, 1))."""
    n = len(attrs)
    z = rng.standard_normal((n, dim)).astype(np.float32)
    rows = np.arange(n)
    for k, block in enumerate(attribute_blocks(z)):
        top = block.argmax(1)
        block[rows, top], block[rows, attrs[:, k]] = block[rows, attrs[:, k]], block[rows, top].copy()
    z[:, ATTR_DIMS:CODE_DIMS] = _normal_ppf(np.clip(geometry, 1e-4, 1 - 1e-4))
    return z


def widen_margins(z: np.ndarray, margin: float) -> np.ndarray:
    """z with every attribute block's top entry raised to at least `margin` above the block's second:
    the same intended face (`z_to_face`), decided by a clear margin."""
    z = z.copy()
    for block in attribute_blocks(z):
        srt = np.sort(block, 1)
        block[np.arange(len(z)), block.argmax(1)] = np.maximum(srt[:, -1], srt[:, -2] + margin)
    return z


def near_ties(z: np.ndarray, rng: np.random.Generator, share: float = 0.5) -> np.ndarray:
    """z with a random `share` of its attribute blocks (same argmax) brought within 0.05 of a tie."""
    z = z.copy()
    for block in attribute_blocks(z):
        srt = np.sort(block, 1)
        rows = np.flatnonzero(rng.random(len(z)) < share)
        tied = srt[:, -2] + 0.05 * rng.random(len(z)) * np.minimum(srt[:, -1] - srt[:, -2], 1)
        block[rows, block[rows].argmax(1)] = tied[rows]
    return z


def z_to_face(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The intended (attrs [N, n_attrs], geometry [N, n_geom]) of codes z [N, dim]."""
    return np.stack([block.argmax(1) for block in attribute_blocks(z)], 1), _normal_cdf(z[:, ATTR_DIMS:CODE_DIMS])


def face_code(attrs: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
    """Render parameters as the conditional decoder's input: one-hot attributes, geometry in [-1, 1]."""
    onehots = [F.one_hot(attrs[:, k], size).float() for k, size in enumerate(ATTR_SIZES)]
    return torch.cat(onehots + [geometry.float() * 2 - 1], 1)


class DemoTraining(nn.Module):
    """What one run trains: the generator and the conditional decoder's input MLP."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.gen = Generator(config)
        d = config.style_dim
        self.cond = nn.Sequential(nn.Linear(CODE_DIMS, 2 * d), nn.LeakyReLU(0.2), nn.Linear(2 * d, d))
        self.register_buffer("mapping_r2", torch.tensor(float("nan")))  # stage 2's fit, once done


def image_loss(fake, real, weight=None):
    """MSE on pixels and on horizontal/vertical differences (edges of the small features), as a mean
    weighted by `weight` [N, H, W] (none: plain MSE).

    Not L1: its optimum is the per-pixel median, and while the network cannot yet place a small
    feature (eyes, mouth) exactly, that feature covers any one pixel in under half of the faces, so
    the median erases it and no gradient ever draws it (measured: no eyes or mouths after 3,600 L1
    steps; both appear within 300 MSE steps from there)."""
    w = torch.ones_like(fake[:, :1]) if weight is None else weight[:, None].to(fake)
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731

    def mean(err, w):
        return (err.square() * w).sum() / (w.sum() * err.shape[1])

    return (mean(fake - real, w) + mean(dx(fake) - dx(real), w[..., :, 1:])
            + mean(dy(fake) - dy(real), w[..., 1:, :]))


@dataclass
class TrainConfig:
    steps: int = 7000
    fit_at: int = 4000  # step at which the mapping is fitted and distillation replaces the decoder stage
    batch: int = 32
    n_train: int = 20000
    lr: float = 1e-3
    warmup: int = 100
    map_fit_steps: int = 10000  # mapping-only steps of stage 2 (batch 512)
    # Stage 2's Adam lr, in the units of `lr`. Equalized-lr layers scale a step by lr_mul/sqrt(fan_in), so
    # the mapping needs a larger one than a plain MLP: measured relative MSE after 3000 steps 0.56 at
    # 1e-3, 0.31 at 1e-2, 0.18 at 3e-2.
    map_fit_lr: float = 3e-2
    checkpoint_every: int = 100
    seed: int = 0


def _adam(model: nn.Module, gen: Generator, lr: float) -> torch.optim.Adam:
    """Adam over `model` (which holds `gen`); group "scale" multiplies the schedule's lr.

    Betas (0.9, 0.99) at lr 1e-3 were stable in planning (beta1 0 at 2e-3 diverged). The mapping's
    weights are stored divided by lr_mul (rosinality's convention): 1/lr_mul larger steps give them
    the same effective learning rate as the rest."""
    mapping = list(gen.style.parameters())
    ids = {id(p) for p in mapping}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.Adam([{"params": rest, "scale": 1.0}, {"params": mapping, "scale": 1 / gen.config.lr_mlp}],
                            lr=lr, betas=(0.9, 0.99))


def distill_loss(gen: Generator, data, rng: np.random.Generator, batch: int, feature_weight: float = 0.0):
    """Stages 3-4: G(mapping(z)) for the structured z of `batch` random training faces against their
    renders; with `feature_weight` > 0 the loss weighs 1 + feature_weight inside `feature_regions`."""
    images, labels, geometry = data
    idx = rng.integers(0, len(images), batch)
    z = face_to_z(labels[idx], geometry[idx], rng, gen.config.style_dim)
    w = gen.mapping(torch.from_numpy(z))
    fake = gen.synthesis_wplus(w[:, None].expand(-1, gen.n_latent, -1))
    weight = torch.from_numpy(1 + feature_weight * feature_regions(geometry[idx])) if feature_weight else None
    return image_loss(fake, to_model_input(images[idx]), weight)


def margin_loss(gen: Generator, teacher: nn.Module, rng: np.random.Generator, batch: int, margin: float) -> torch.Tensor:
    """Relative MSE (over w's per-dimension variance) between gen.mapping(z) and the frozen
    teacher(widen_margins(z)) for fresh z ~ N(0, I), half of them drawn near ties (`near_ties`)."""
    z = rng.standard_normal((batch, gen.config.style_dim)).astype(np.float32)
    z[batch // 2 :] = near_ties(z[batch // 2 :], rng)
    with torch.no_grad():
        target = teacher(torch.from_numpy(widen_margins(z, margin)))
    return F.mse_loss(gen.mapping(torch.from_numpy(z)), target) / target.var(0).mean()


def sharpen_mapping(gen: Generator, steps: int, margin: float = 2.0, lr: float = 2e-2, batch: int = 512,
                    seed: int = 0, progress: bool = True) -> tuple[float, float]:
    """Stage 5: make the mapping margin-invariant, w(z) = w(widen_margins(z)), i.e. a function of which
    value each attribute block picks, not of how clearly it picks it. Regression on images leaves the
    argmax boundaries soft (measured on the refined generator: a face whose expression block leads by
    < 0.25 shows its intended expression in 50% of samples, by > 1 in 94%), and a soft w draws a blend
    that the classifier is sure of for no value. The target is a frozen copy of the mapping (a
    self-referential target collapsed the attributes within 100 joint steps); mapping passes only, no
    images. Returns the loss (relative MSE) before and after."""
    teacher = copy.deepcopy(gen.style).requires_grad_(False)
    lr = lr / gen.config.lr_mlp  # the weights are stored divided by lr_mul
    opt = torch.optim.Adam(gen.style.parameters(), lr=lr, betas=(0.9, 0.99))
    losses = []
    for step in tqdm(range(steps), desc="sharpen mapping", leave=False, disable=not progress):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, 50)
        loss = margin_loss(gen, teacher, step_rng(seed + 3, step), batch, margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    head = min(50, max(1, steps // 10))
    return float(np.mean(losses[:head])), float(np.mean(losses[-head:]))


@torch.no_grad()
def mapping_r2(model: DemoTraining, attrs: np.ndarray, geometry: np.ndarray, rng: np.random.Generator) -> float:
    """1 - MSE(mapping(z), cond(face)) / Var(cond(face)) on faces the fit did not see the noise of."""
    target = model.cond(face_code(torch.from_numpy(attrs), torch.from_numpy(geometry)))
    z = torch.from_numpy(face_to_z(attrs, geometry, rng, model.gen.config.style_dim))
    return 1 - (F.mse_loss(model.gen.mapping(z), target) / target.var(0).mean()).item()


def fit_mapping(model: DemoTraining, cfg: TrainConfig, batch: int = 512, progress: bool = True) -> float:
    """Stage 2: regress cond(face) from the structured z of random faces; returns the held-out R^2."""
    rng = step_rng(cfg.seed + 1, cfg.fit_at)
    params = list(model.gen.style.parameters())
    lr = cfg.map_fit_lr / model.gen.config.lr_mlp  # the weights are stored divided by lr_mul
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    for step in tqdm(range(cfg.map_fit_steps), desc="fit mapping", leave=False, disable=not progress):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.map_fit_steps, lr, 100)
        attrs = np.stack([rng.integers(0, s, batch) for s in ATTR_SIZES], 1)
        geometry = rng.random((batch, len(GEOMETRY)), dtype=np.float32)
        with torch.no_grad():
            target = model.cond(face_code(torch.from_numpy(attrs), torch.from_numpy(geometry)))
        z = torch.from_numpy(face_to_z(attrs, geometry, rng, model.gen.config.style_dim))
        loss = F.mse_loss(model.gen.mapping(z), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    attrs = np.stack([rng.integers(0, s, 4096) for s in ATTR_SIZES], 1)
    return mapping_r2(model, attrs, rng.random((4096, len(GEOMETRY)), dtype=np.float32), rng)


def train(workdir, cfg: TrainConfig = TrainConfig(), gen_config: GeneratorConfig = DEMO_CONFIG, *,
          threads: int | None = None, stop_at: int | None = None, progress: bool = True) -> tuple[DemoTraining, dict]:
    """Train (resuming from `workdir`); returns the model and run_training's info."""
    set_threads(threads)
    if not 0 < cfg.fit_at <= cfg.steps:
        raise ValueError(f"fit_at must be in 1..steps ({cfg.steps}), got {cfg.fit_at}")
    hparams = dict(asdict(cfg), generator=gen_config.to_dict(), recipe="cond-decoder/map-fit/distill v2 (MSE)")
    images, labels, geometry = cached_dataset(workdir, cfg.n_train, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = DemoTraining(gen_config)
    opt = _adam(model, model.gen, cfg.lr)
    n = model.gen.n_latent

    def lr_fn(step: int, group: dict) -> float:
        if step < cfg.fit_at:  # decoder stage: warm-up, then constant
            return group["scale"] * cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        return group["scale"] * cosine_lr(step - cfg.fit_at, cfg.steps - cfg.fit_at, cfg.lr, cfg.warmup)

    def step_fn(step: int) -> dict:
        if step == cfg.fit_at or (step > cfg.fit_at and torch.isnan(model.mapping_r2)):
            model.mapping_r2.fill_(fit_mapping(model, cfg, progress=progress))
        rng = step_rng(cfg.seed, step)
        if step < cfg.fit_at:
            idx = rng.integers(0, len(images), cfg.batch)
            w = model.cond(face_code(torch.from_numpy(labels[idx]), torch.from_numpy(geometry[idx])))
            loss = image_loss(model.gen.synthesis_wplus(w[:, None].expand(-1, n, -1)), to_model_input(images[idx]))
        else:
            loss = distill_loss(model.gen, (images, labels, geometry), rng, cfg.batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item(), "stage": 1.0 if step < cfg.fit_at else 3.0}

    info = run_training(workdir=workdir, hparams=hparams, model=model, optimizer=opt, steps=cfg.steps,
                        step_fn=step_fn, lr_fn=lr_fn, checkpoint_every=cfg.checkpoint_every, stop_at=stop_at,
                        desc="generator", progress=progress)
    info["mapping_r2"] = float(model.mapping_r2)
    return model, info


@dataclass
class RefineConfig:
    """Stage 4: `steps` more distillation steps of a finished generator, features weighted up; stage 5:
    `sharpen_steps` of `sharpen_mapping`."""
    steps: int = 3000
    feature_weight: float = 8.0  # the loss weighs 1 + feature_weight inside render.feature_regions
    batch: int = 32
    n_train: int = 20000
    lr: float = 1e-3
    warmup: int = 20
    checkpoint_every: int = 100
    seed: int = 0
    # Then stage 5, `sharpen_mapping`: deterministic and not checkpointed (10 min), and not among the
    # image steps' settings, so it can be redone without them. Measured (`cli.py evaluate-demo`): samples
    # the classifier is sure of on every attribute 0.158 -> 0.368; fewer steps sharpen less.
    sharpen_steps: int = 50000
    margin: float = 2.0
    sharpen_lr: float = 2e-2


_SHARPEN_FIELDS = ("sharpen_steps", "margin", "sharpen_lr")


def refine(workdir, init, cfg: RefineConfig = RefineConfig(), *, threads: int | None = None,
           stop_at: int | None = None, progress: bool = True) -> tuple[Generator, dict]:
    """Stages 4-5 on the generator saved at `init` (resuming from `workdir`); returns it and run_training's
    info (with "sharpen_loss": stage 5's loss before and after)."""
    set_threads(threads)
    gen = load_generator(init)
    weights = Path(init).with_suffix(".safetensors")
    hparams = dict({k: v for k, v in asdict(cfg).items() if k not in _SHARPEN_FIELDS},
                   init_sha256=sha256_file(weights) if weights.is_file() else sha256_file(init),
                   recipe="refine v1 (feature-weighted MSE)")
    data = cached_dataset(workdir, cfg.n_train, cfg.seed)
    opt = _adam(gen, gen, cfg.lr)

    def step_fn(step: int) -> dict:
        loss = distill_loss(gen, data, step_rng(cfg.seed + 2, step), cfg.batch, cfg.feature_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item()}

    info = run_training(workdir=workdir, hparams=hparams, model=gen, optimizer=opt, steps=cfg.steps, step_fn=step_fn,
                        lr_fn=lambda step, g: g["scale"] * cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup),
                        checkpoint_every=cfg.checkpoint_every, stop_at=stop_at, desc="refine generator",
                        progress=progress)
    if cfg.sharpen_steps and info["step"] == cfg.steps:
        info["sharpen_loss"] = sharpen_mapping(gen, cfg.sharpen_steps, cfg.margin, cfg.sharpen_lr, seed=cfg.seed,
                                               progress=progress)
    return gen, info


def finalize(gen: Generator, out) -> tuple[Path, Path]:
    """Ship the generator (latent_avg = mean of the mapped prior) as `out/generator.{safetensors,json}`."""
    gen.eval()
    gen.mean_latent(4096, seed=0)
    return save_generator(gen, Path(out) / "generator")


@torch.no_grad()
def sample_images(gen: Generator, n: int, seed: int, psi: float = 1.0, batch: int = 64):
    """n generator samples (uint8 [n, 64, 64, 3]) and their z."""
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, gen.config.style_dim), dtype=np.float32))
    out = []
    for i in range(0, n, batch):
        img = gen(gen.wplus_from_z(z[i : i + batch], psi))
        out.append(to_uint8(img))
    return np.concatenate(out), z.numpy()


def contact_sheet(gen: Generator, n: int = 32, seed: int = 0, psi: float = 1.0, columns: int = 8):
    """Grid image of n samples; below each row of samples, the renders of their intended faces
    (`z_to_face(z)`), so a reader sees what the distilled generator was asked to draw."""
    from runtime.images import grid

    from .render import Face, render_batch

    images, z = sample_images(gen, n, seed, psi)
    attrs, geometry = z_to_face(z)
    intended = render_batch([Face(tuple(int(v) for v in a), tuple(float(g) for g in geo)) for a, geo in zip(attrs, geometry)])
    rows = []
    for i in range(0, n, columns):
        rows += [list(images[i : i + columns]), list(intended[i : i + columns])]
    return grid(rows, scale=2)
