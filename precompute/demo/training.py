"""What the demo models' training loops share besides `precompute.training` (the resumable loop): a
cached render set, image conversion, augmentation and the learning-rate schedule.

Every random choice of step `s` (which images, which captions, the augmentation noise) is drawn from
`step_rng(seed, s)` / `step_generator(seed, s)`, so a run that is interrupted and resumed from its
checkpoint takes exactly the steps an uninterrupted run would have taken.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from runtime.files import atomic_path

from ..training import run_training, step_generator, step_rng  # noqa: F401  (re-exported for the demo trainers)
from .render import ATTRIBUTES, GEOMETRY, sample_dataset

MAX_THREADS = 2  # the reference machine has 2 cores (DESIGN section 7)
HELDOUT_SEED = 900_001  # evaluation renders (training sets use the training seed, e.g. 0)


def set_threads(threads: int | None = None) -> None:
    torch.set_num_threads(max(1, min(threads or MAX_THREADS, MAX_THREADS)))


# --- data -----------------------------------------------------------------------------------------
def cached_arrays(folder, names: tuple[str, ...], make, valid=lambda arrays: True) -> tuple[np.ndarray, ...]:
    """`make()`'s arrays (one per name), computed once and kept in `folder` (uncompressed .npy); a cache that
    fails `valid` is made again."""
    folder = Path(folder)
    if all((folder / f"{k}.npy").is_file() for k in names):
        arrays = tuple(np.load(folder / f"{k}.npy") for k in names)
        if valid(arrays):
            return arrays
    arrays = make()
    with atomic_path(folder, is_dir=True, replace=lambda _: None) as tmp:  # an incomplete cache of ours
        for k, a in zip(names, arrays):
            np.save(tmp / f"{k}.npy", a)
    return arrays


def cached_dataset(workdir, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`sample_dataset(n, seed)`, rendered once and kept in `workdir` (uint8, uncompressed .npy)."""
    return cached_arrays(Path(workdir) / f"renders-{n}-{seed}", ("images", "labels", "geometry"),
                         lambda: sample_dataset(n, seed),
                         lambda a: len(a[0]) == n and a[1].shape == (n, len(ATTRIBUTES)) and a[2].shape == (n, len(GEOMETRY)))


def to_model_input(images) -> torch.Tensor:
    """uint8 renders [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1], the range of generator output."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 renders [N, H, W, 3], got {x.dtype}; pass float images as [N, 3, H, W] in [-1, 1]")
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator-style float images [N, 3, H, W] about [-1, 1] -> uint8 [N, H, W, 3] (inverse of to_model_input)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def as_input(images) -> torch.Tensor:
    """Renders (uint8 NHWC) or generator-style images (float NCHW in [-1, 1]) -> float NCHW."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected float images [N, 3, H, W], got {tuple(images.shape)}")
        return images.float()
    return to_model_input(images)


_BLUR = torch.tensor([1.0, 2.0, 1.0]) / 4


def augment(x: torch.Tensor, g: torch.Generator, noise: float = 0.06, blur_p: float = 0.3) -> torch.Tensor:
    """Light, label-preserving corruption (no geometric change): a 3x3 blur on a random subset and
    Gaussian pixel noise of a random strength per image, so the models tolerate generator artefacts."""
    n = x.shape[0]
    if blur_p > 0:
        k = (_BLUR[:, None] * _BLUR[None, :]).to(x).expand(3, 1, 3, 3)
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
        pick = (torch.rand(n, generator=g) < blur_p).to(x).view(n, 1, 1, 1)
        x = pick * blurred + (1 - pick) * x
    if noise > 0:
        sigma = torch.rand(n, 1, 1, 1, generator=g).to(x) * noise
        x = x + sigma * torch.randn(x.shape, generator=g).to(x)
    return x.clamp(-1, 1)


def cosine_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 5% of `lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
