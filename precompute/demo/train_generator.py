"""Training the demo StyleGAN2 on renders (DESIGN §7): an autoencoder plus a distilled mapping.

Why not plain distillation (G(z) regressed onto render(f(z)))? Planning measured it: the generator
must learn discontinuous functions of z from scratch and collapses to the mean face. And a GAN is too
slow on 2 cores. So one loop trains three things together, each with an easy target:

1. autoencoder (steps < distill_from): a small CNN encoder E maps a render x to one w; the synthesis
   network decodes it (W+ = w on every row). Loss: L1 on pixels and on image gradients (edges: eyes,
   mouth, glasses).
2. mapping fit (once, at distill_from): z is a *structured* code of the render's parameters
   (`face_to_z`: for an attribute with n values, the argmax of an n-dim Gaussian block; for a
   geometry value g, Phi^-1(g); other dims are free noise). With E frozen, the mapping network
   regresses E(x) from z over the whole cached set: no images, so thousands of steps take seconds.
   (Fitting it jointly with a moving encoder, as first tried, gave mean faces: the targets kept moving
   and their spread was small, so a low MSE said little.)
3. distillation (steps >= distill_from): G(mapping(z)) is decoded and compared with x as well, so the
   synthesis network learns the exact region the mapping produces.

Sampling z ~ N(0, I) then gives faces with uniformly distributed attributes (argmax of iid Gaussians)
and uniform geometry: the renderer's prior. `z_to_face` reads the intended face back from z.
The encoder is kept: it inverts a render to W+, the demo world's analogue of e4e.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from runtime.files import atomic_path

from ..checkpoints import load_model, save_generator, save_model
from ..stylegan2 import Generator, GeneratorConfig
from .render import ATTRIBUTES, GEOMETRY, Face, render_batch

# The demo generator: 64 px, style dim 128, a short mapping network, few channels (2-core budget).
DEMO_CONFIG = GeneratorConfig(64, 128, 4, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32})
ATTR_SIZES = [len(v) for v in ATTRIBUTES.values()]
CODE_DIMS = sum(ATTR_SIZES) + len(GEOMETRY)  # structured dims at the start of z; the rest is noise


_normal_ppf = np.vectorize(NormalDist().inv_cdf, otypes=[np.float32])
_normal_cdf = np.vectorize(NormalDist().cdf, otypes=[np.float32])


# --- the structured code ------------------------------------------------------------------------------
def face_to_z(attrs: np.ndarray, geometry: np.ndarray, rng: np.random.Generator, dim: int) -> np.ndarray:
    """z [N, dim] whose attribute blocks have their argmax at the face's values and whose geometry
    dims are Phi^-1(g): a draw from N(0, I) conditioned on the face (free dims stay N(0, 1))."""
    n = len(attrs)
    z = rng.standard_normal((n, dim)).astype(np.float32)
    col = 0
    for k, size in enumerate(ATTR_SIZES):
        block = z[:, col : col + size]
        top = block.argmax(1)
        rows = np.arange(n)
        block[rows, top], block[rows, attrs[:, k]] = block[rows, attrs[:, k]], block[rows, top].copy()
        col += size
    z[:, col : col + len(GEOMETRY)] = _normal_ppf(np.clip(geometry, 1e-4, 1 - 1e-4))
    return z


def z_to_face(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The intended (attrs [N, n_attrs], geometry [N, n_geom]) of codes z [N, dim]."""
    attrs, col = [], 0
    for size in ATTR_SIZES:
        attrs.append(z[:, col : col + size].argmax(1))
        col += size
    return np.stack(attrs, 1), _normal_cdf(z[:, col : col + len(GEOMETRY)])


# --- the encoder --------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """64x64 image in [-1, 1] -> w [style_dim]."""

    def __init__(self, style_dim: int = 128, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]  # 64 -> 32 -> 16 -> 8 -> 4
        layers = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2),
                       nn.Conv2d(cout, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1] * 16, style_dim)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def image_loss(fake, real):
    """L1 on pixels plus L1 on horizontal/vertical differences (sharp edges for small features)."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.l1_loss(fake, real) + F.l1_loss(dx(fake), dx(real)) + F.l1_loss(dy(fake), dy(real))


# --- data -------------------------------------------------------------------------------------------------
def render_dataset(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """n random faces: images uint8 [n, 3, 64, 64], attrs [n, n_attrs], geometry [n, n_geom]."""
    rng = np.random.default_rng(seed)
    faces = [Face.sample(rng) for _ in range(n)]
    images = torch.from_numpy(render_batch(faces)).permute(0, 3, 1, 2).contiguous()
    attrs = np.array([f.attrs for f in faces], dtype=np.int64)
    geometry = np.array([f.geometry for f in faces], dtype=np.float32)
    return images, attrs, geometry


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float() / 127.5 - 1


@dataclass
class TrainConfig:
    steps: int = 5000
    batch: int = 32
    n_train: int = 20000
    lr: float = 1e-3
    distill_from: int = 2500  # step at which the mapping is fitted and G(mapping(z)) joins the loss
    distill_weight: float = 1.0
    map_fit_steps: int = 4000  # mapping-only steps of stage 2 (batch 512)
    checkpoint_every: int = 250
    seed: int = 0


class Trainer:
    """Resumable: all state (models, optimizer, step, RNG) is saved atomically to `workdir/state.pt`."""

    def __init__(self, workdir, cfg: TrainConfig = TrainConfig(), gen_config: GeneratorConfig = DEMO_CONFIG):
        self.workdir, self.cfg = Path(workdir), cfg
        self.workdir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.gen = Generator(gen_config)
        self.enc = Encoder(gen_config.style_dim)
        mapping = list(self.gen.style.parameters())
        ids = {id(p) for p in mapping}
        others = [p for p in self.gen.parameters() if id(p) not in ids] + list(self.enc.parameters())
        betas = (0.9, 0.99)  # planning: lr 1e-3 with these was stable, 2e-3 with beta1 0 diverged
        # The mapping's weights are stored divided by lr_mul (0.01, rosinality's convention); a 1/lr_mul
        # larger step size gives them the same effective learning rate as everything else.
        self.opt = torch.optim.Adam([{"params": others, "lr": cfg.lr},
                                     {"params": mapping, "lr": cfg.lr / gen_config.lr_mlp}], betas=betas)
        self.step = 0
        self.mapping_fit: dict | None = None  # stage 2's result, once done
        self.history: list[dict] = []
        self.images, self.attrs, self.geometry = render_dataset(cfg.n_train, cfg.seed)
        self.rng = np.random.default_rng(cfg.seed + 1)
        if (self.workdir / "state.pt").is_file():
            self._load()

    def _state(self):
        return {"gen": self.gen.state_dict(), "enc": self.enc.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "history": self.history, "rng": self.rng.bit_generator.state,
                "mapping_fit": self.mapping_fit or {},
                "torch_rng": torch.get_rng_state()}

    def save(self):
        with atomic_path(self.workdir / "state.pt") as tmp:
            torch.save(self._state(), tmp)

    def _load(self):
        state = torch.load(self.workdir / "state.pt", weights_only=True)
        self.gen.load_state_dict(state["gen"])
        self.enc.load_state_dict(state["enc"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.history = state["step"], state["history"]
        self.mapping_fit = state.get("mapping_fit") or None
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])

    @torch.no_grad()
    def encode_all(self, batch: int = 256) -> torch.Tensor:
        return torch.cat([self.enc(to_float(self.images[i : i + batch])) for i in range(0, len(self.images), batch)])

    def fit_mapping(self, batch: int = 512) -> dict:
        """Stage 2: regress the frozen encoder's codes from the structured z (fresh noise dims each step)."""
        targets = self.encode_all()
        mean, var = targets.mean(0), targets.var(0).mean()
        params = list(self.gen.style.parameters())
        opt = torch.optim.Adam(params, lr=self.cfg.lr / self.gen.config.lr_mlp, betas=(0.9, 0.99))
        for step in tqdm(range(self.cfg.map_fit_steps), desc="fit mapping", leave=False):
            idx = self.rng.integers(0, len(targets), batch)
            z = torch.from_numpy(face_to_z(self.attrs[idx], self.geometry[idx], self.rng, self.gen.config.style_dim))
            loss = F.mse_loss(self.gen.mapping(z), targets[idx]) / var  # relative: 1 = predicting the mean
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            z = torch.from_numpy(face_to_z(self.attrs, self.geometry, self.rng, self.gen.config.style_dim))
            pred = torch.cat([self.gen.mapping(z[i : i + 1024]) for i in range(0, len(z), 1024)])
        return {"r2": 1 - (F.mse_loss(pred, targets) / var).item(), "target_mean_norm": mean.norm().item()}

    def train_step(self) -> dict:
        cfg = self.cfg
        if self.step >= cfg.distill_from and self.mapping_fit is None:
            self.mapping_fit = self.fit_mapping()
            self.history.append({"step": self.step, "mapping_r2": self.mapping_fit["r2"]})
        idx = self.rng.integers(0, len(self.images), cfg.batch)
        x = to_float(self.images[idx])
        n = self.gen.n_latent
        w_enc = self.enc(x)
        recon = self.gen.synthesis_wplus(w_enc[:, None].expand(-1, n, -1))
        terms = {"recon": image_loss(recon, x)}
        loss = terms["recon"]
        if self.step >= cfg.distill_from:
            z = torch.from_numpy(face_to_z(self.attrs[idx], self.geometry[idx], self.rng, self.gen.config.style_dim))
            fake = self.gen.synthesis_wplus(self.gen.mapping(z)[:, None].expand(-1, n, -1))
            terms["distill"] = image_loss(fake, x)
            loss = loss + cfg.distill_weight * terms["distill"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(list(self.gen.parameters()) + list(self.enc.parameters()), 1.0)
        self.opt.step()
        self.step += 1
        return {k: v.item() for k, v in terms.items()}

    def train(self, progress: bool = True) -> None:
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train generator", disable=not progress)
        start = time.time()
        while self.step < cfg.steps:
            terms = self.train_step()
            self.history.append({"step": self.step, **terms})
            bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
            bar.update()
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save()
        bar.close()
        self.seconds = time.time() - start

    def finalize(self, out) -> None:
        """Ship: the generator (latent_avg = mean of the mapped prior) and the encoder."""
        self.gen.eval().mean_latent(4096, seed=0)
        save_generator(self.gen, Path(out) / "generator")
        save_encoder(self.enc, Path(out) / "encoder")


def save_encoder(enc: Encoder, path):
    return save_model(path, "demo-encoder", {"style_dim": enc.head.out_features,
                                              "width": enc.features[0].out_channels}, enc.state_dict())


def load_encoder(path) -> Encoder:
    config, tensors = load_model(path, "demo-encoder")
    enc = Encoder(config["style_dim"], config["width"])
    enc.load_state_dict(tensors)
    return enc.eval()


@torch.no_grad()
def sample_images(gen: Generator, n: int, seed: int, psi: float = 1.0, batch: int = 64):
    """n generator samples (uint8 [n, 64, 64, 3]) and their z."""
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, gen.config.style_dim), dtype=np.float32))
    out = []
    for i in range(0, n, batch):
        img = gen(gen.wplus_from_z(z[i : i + batch], psi))
        out.append(((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1))
    return torch.cat(out).numpy(), z.numpy()

