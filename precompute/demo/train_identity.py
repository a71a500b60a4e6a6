"""The demo world's identity network (DESIGN §7, §14): a small ArcFace of the IR-SE family, trained on renders.

In the demo world the geometry vector (face shape and position) is identity. Training renders `views`
faces per identity that share its geometry and redraw everything else (hair colour and style, glasses,
expression, eyes, skin, background, hair strands), and pulls the views of one identity together and those
of the others in the batch apart: InfoNCE (NT-Xent) over the batch's 2B unit features, two views per
identity. Inputs get a random colour tint (colour is never identity here, and edits spill colour over the
whole face), then training.augment's blur and noise (stronger than the classifier's: the generator blurs);
never a geometric change (position is identity here). The attribute classifier plays no part.

The metric is the ROC AUC of the cosine similarity, same-identity pairs against different-identity pairs,
on held-out renders (`evaluate_identity`), and on renders against their reconstructions through the demo
encoder and generator when those are given.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..identity import IdentityConfig, IdentityNetwork, save_identity
from .render import GEOMETRY_NAMES, Face, render_batch, sample_faces
from .training import (
    HELDOUT_SEED, augment, cached_arrays, cosine_lr, run_training, set_threads, step_generator, step_rng,
    to_model_input, to_uint8,
)

# No face crop: the demo faces fill their 64 px frame, and StyleCLIP's crop (47 of the 64 px) cuts hair, ears
# and low chins, which carry geometry here. Measured against the crop at 48 px (a pilot, figures in the
# README): the same AUCs, face width resolved far better, in the same wall time (the crop's pooling costs what
# the smaller input saves). 4 units of 16-64 channels: 0.2 M values, 0.4 MB in fp16.
DEMO_IDENTITY = IdentityConfig(units=(1, 1, 1, 1), widths=(16, 32, 48, 64), embedding=64, input_size=64,
                               se_reduction=8, crop=False)
NEAR_SHIFT = 0.25  # the evaluation's hard negatives: one geometry value moved by a quarter of its range
RENDER_SEED_OFFSET = 800_000  # the identity renders: not the other demo trainers' seeds nor the held-out set


@dataclass
class IdentityTrainConfig:
    steps: int = 1200
    batch: int = 32  # identities per step (sibling pairs, see identity_faces), two views each
    n_identities: int = 6000
    near: tuple[float, float] = (0.1, 0.5)  # siblings: one geometry value moved by this much (normalized)
    views: int = 4  # cached renders per identity; each step picks two of them
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: int = 50
    temperature: float = 0.1
    dropout: float = 0.0  # the Backbone's 0.6 kept this narrow network blind to face width (README)
    tint: float = 0.5  # half the images blended towards a random colour by up to this share
    noise: float = 0.06  # augment: pixel noise up to this std
    blur_p: float = 0.5  # augment: share of the images blurred
    checkpoint_every: int = 100
    seed: int = 0


def moved(geometry: tuple[float, ...], dim: int, shift: float) -> tuple[float, ...]:
    """`geometry` with value `dim` moved by `shift` <= 0.5 (normalized units): up, or down where up leaves [0, 1]."""
    g = geometry[dim] + shift if geometry[dim] + shift <= 1 else geometry[dim] - shift
    return geometry[:dim] + (g,) + geometry[dim + 1:]


def identity_faces(n: int, views: int, seed: int, near: tuple[float, float] | None = None) -> list[Face]:
    """n identities x `views` faces, identity-major: the views of one identity share the geometry of its
    first view; attributes and hair strands are each view's own draw. With `near` = (lo, hi), identity 2k + 1
    is identity 2k with one geometry value (a random one) moved by U(lo, hi): the hard negatives that make
    every value count, not only the few that already tell random faces apart."""
    faces = sample_faces(n * views, seed)
    geometry = [faces[i * views].geometry for i in range(n)]
    if near is not None:
        rng = np.random.default_rng([seed, 1])
        dims, shifts = rng.integers(len(geometry[0]), size=n), rng.uniform(*near, size=n)
        geometry = [moved(geometry[i - 1], dims[i], shifts[i]) if i % 2 else g for i, g in enumerate(geometry)]
    return [replace(f, geometry=geometry[i // views]) for i, f in enumerate(faces)]


def identity_renders(n: int, views: int, seed: int, near: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 [n, views, 64, 64, 3]: `identity_faces` rendered."""
    return render_batch(identity_faces(n, views, seed, near)).reshape(n, views, 64, 64, 3)


def cached_identity_renders(workdir, n: int, views: int, seed: int, near: tuple[float, float]) -> np.ndarray:
    folder = f"{workdir}/identity-renders-{n}x{views}-{seed}-near{near[0]:g}-{near[1]:g}"
    return cached_arrays(folder, ("images",), lambda: (identity_renders(n, views, seed, near),),
                         lambda a: a[0].shape == (n, views, 64, 64, 3))[0]


def tint(x: torch.Tensor, g: torch.Generator, strength: float, p: float = 0.5) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1], a random share `p` of them blended towards a random colour each, by a
    share up to `strength`."""
    n = x.shape[0]
    colour = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    share = torch.rand(n, 1, 1, 1, generator=g) * strength * (torch.rand(n, 1, 1, 1, generator=g) < p)
    return x + share * (colour - x)


def info_nce(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """features [B, 2, D] (unit; two views per identity) -> NT-Xent: each view's softmax over the other 2B - 1
    picks its identity's other view."""
    b = features.shape[0]
    f = features.reshape(2 * b, -1)
    logits = (f @ f.T / temperature).fill_diagonal_(float("-inf"))
    partner = torch.arange(2 * b) ^ 1  # rows are identity-major: 2i and 2i + 1
    return F.cross_entropy(logits, partner)


def train_identity(workdir, cfg: IdentityTrainConfig = IdentityTrainConfig(), config: IdentityConfig = DEMO_IDENTITY,
                   *, threads: int | None = None, stop_at: int | None = None,
                   progress: bool = True) -> tuple[IdentityNetwork, dict]:
    """Train (or resume from `workdir`); returns the network (eval mode) and run_training's info."""
    set_threads(threads)
    if not 2 <= cfg.batch <= cfg.n_identities or cfg.batch % 2 or cfg.n_identities % 2 or cfg.views < 2:
        raise ValueError(f"need an even batch and n_identities, 2 <= batch <= n_identities and views >= 2, got batch "
                         f"{cfg.batch}, n_identities {cfg.n_identities}, views {cfg.views}")
    hparams = dict(asdict(cfg), identity=config.to_dict(), loss="InfoNCE, sibling pairs v1")
    near = tuple(cfg.near)
    images = torch.from_numpy(cached_identity_renders(workdir, cfg.n_identities, cfg.views,
                                                      cfg.seed + RENDER_SEED_OFFSET, near))
    torch.manual_seed(cfg.seed)
    net = IdentityNetwork(config)
    net.output_layer[1].p = cfg.dropout  # a training setting: dropout does nothing in eval mode
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.99))

    def step_fn(step: int) -> dict:
        rng = step_rng(cfg.seed, step)
        pairs = rng.choice(cfg.n_identities // 2, cfg.batch // 2, replace=False)
        ids = torch.from_numpy(np.stack([2 * pairs, 2 * pairs + 1], 1).ravel())  # siblings side by side
        pick = torch.from_numpy(np.argsort(rng.random((cfg.batch, cfg.views)), axis=1)[:, :2])  # two distinct views
        x = to_model_input(images[ids[:, None], pick].flatten(0, 1))
        g = step_generator(cfg.seed, step)
        x = augment(tint(x, g, cfg.tint) if cfg.tint else x, g, noise=cfg.noise, blur_p=cfg.blur_p)
        torch.manual_seed(int(rng.integers(2**62)))  # the Backbone's dropout draws from torch's global generator
        loss = info_nce(net(x).view(cfg.batch, 2, -1), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    info = run_training(workdir=workdir, hparams=hparams, model=net, optimizer=opt, steps=cfg.steps, step_fn=step_fn,
                        lr_fn=lambda s, _: cosine_lr(s, cfg.steps, cfg.lr, cfg.warmup),
                        checkpoint_every=cfg.checkpoint_every, stop_at=stop_at, desc="demo identity", progress=progress)
    info["hparams"] = hparams
    return net.eval(), info


def finalize(net: IdentityNetwork, out, hparams: dict, metrics: dict | None = None):
    """Ship the network with its training settings (and metrics), fp16 tensors like the other demo files;
    measure the shipped file (`load_identity`), not this module."""
    extra = {"training": {k: v for k, v in hparams.items() if k != "identity"}}
    if metrics:
        extra["metrics"] = metrics
    return save_identity(net, out, extra, dtype=torch.float16)


# --- evaluation -------------------------------------------------------------------------------------------
def roc_auc(positive, negative) -> float:
    """ROC AUC of scores: the probability that a positive beats a negative, ties counting half."""
    pos, neg = np.asarray(positive, np.float64).ravel(), np.asarray(negative, np.float64).ravel()
    if not len(pos) or not len(neg):
        raise ValueError("the AUC needs at least one positive and one negative score")
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


@torch.no_grad()
def features(net: IdentityNetwork, images, batch: int = 500) -> torch.Tensor:
    """uint8 renders [N, H, W, 3] or float images [N, 3, H, W] in [-1, 1] -> unit features [N, D]."""
    x = images if isinstance(images, torch.Tensor) and images.is_floating_point() else to_model_input(images)
    return torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)])


def pair_scores(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Row-aligned features a, b [N, D] (a[i], b[i] one identity; i and i + 1 different ones): the AUC of the
    pairs (a[i], b[i]) against (a[i], b[i + 1]), and the mean similarity of each."""
    same, other = (a * b).sum(1).numpy(), (a * b.roll(-1, 0)).sum(1).numpy()
    return {"auc": roc_auc(same, other), "same": float(same.mean()), "different": float(other.mean())}


@torch.no_grad()
def evaluate_identity(net: IdentityNetwork, n: int = 1000, seed: int = HELDOUT_SEED, encoder=None, generator=None,
                      shift: float | None = NEAR_SHIFT, batch: int = 250) -> dict:
    """On `n` held-out identities, two renders each (`identity_faces`): "renders", the AUC of render pairs of one
    identity against pairs of two (the bar). With `shift`, "near": per geometry value, the same pairs against
    the first render and its twin with that one value moved by `shift` (hard negatives: what the network
    resolves). With the demo `encoder` and `generator`, each identity's first render is reconstructed
    (G(E(render)), saved as uint8): "reconstructions" scores (render, its reconstruction) against (render, the
    next identity's reconstruction); "reconstructions_other_view" the identity's second render (other
    attributes) against the same reconstructions."""
    if n < 2:
        raise ValueError(f"the evaluation needs n >= 2 identities, got {n}")
    faces = identity_faces(n, 2, seed)
    images = render_batch(faces).reshape(n, 2, 64, 64, 3)
    first, second = features(net, images[:, 0]), features(net, images[:, 1])
    out = {"n": n, "seed": seed, "renders": pair_scores(first, second)}
    if shift is not None:
        same = (first * second).sum(1).numpy()
        near = {}
        for dim, name in enumerate(GEOMETRY_NAMES):
            twins = [replace(f, geometry=moved(f.geometry, dim, shift)) for f in faces[1::2]]
            other = (first * features(net, render_batch(twins))).sum(1).numpy()
            near[name] = roc_auc(same, other)
        out["near"] = {"shift": shift, "auc": near, "auc_min": min(near.values())}
    if encoder is not None and generator is not None:
        from .train_encoder import invert_renders

        wplus = invert_renders(encoder, images[:, 0], batch)
        recon = torch.cat([generator(wplus[i:i + batch]) for i in range(0, n, batch)])
        recon = features(net, to_model_input(to_uint8(recon)))
        out["reconstructions"] = pair_scores(first, recon)
        out["reconstructions_other_view"] = pair_scores(second, recon)
    return out


def format_metrics(metrics: dict) -> str:
    """The evaluation as lines of text."""
    lines = [f"identity AUC on {metrics['n']} held-out identities (seed {metrics['seed']}), same vs different:"]
    for key, label in (("renders", "render vs render (other attributes)"),
                       ("reconstructions", "render vs its reconstruction G(E(render))"),
                       ("reconstructions_other_view", "render vs reconstruction of its other-attribute twin")):
        if key in metrics:
            m = metrics[key]
            lines.append(f"  {label}: AUC {m['auc']:.4f} (mean cosine same {m['same']:.3f}, different {m['different']:.3f})")
    if "near" in metrics:
        near = metrics["near"]
        lines.append(f"  against one geometry value moved by {near['shift']:g}: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in near["auc"].items()))
    return "\n".join(lines)
