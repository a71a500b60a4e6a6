"""Small random models written to files, as a user would hand them to `cli.py export`."""
from pathlib import Path

import numpy as np
import torch

from export.bundle import Sources
from precompute.checkpoints import save_generator
from precompute.clip_model import Clip, save_clip
from precompute.mapper import LatentMapper, MapperConfig, save_mapper
from precompute.stylegan2 import GeneratorConfig
from tests import e4e_reference
from tests.conftest import make_generator
from tests.test_clip import TINY, tiny_model

GEN_CONFIG = GeneratorConfig(32, 64, 3, {4: 32, 8: 32, 16: 16, 32: 8})
CLIP_CONFIG = dict(TINY, vision_cfg=dict(TINY["vision_cfg"], image_size=32, patch_size=8))


def write_global_tables(gen, folder: Path, embed_dim: int, n_samples: int) -> None:
    """A random unit fs3.npy and S statistics of `n_samples` mapped latents (psi 0.7), as the fs3/s-stats commands write."""
    rng = np.random.default_rng(0)
    fs3 = rng.standard_normal((gen.layout.conv_channels, embed_dim)).astype(np.float32)
    np.save(folder / "fs3.npy", fs3 / np.linalg.norm(fs3, axis=1, keepdims=True))
    with torch.no_grad():
        s = torch.cat(gen.styles(gen.wplus_from_z(torch.randn(n_samples, gen.config.style_dim), 0.7)), 1).numpy()
    np.savez(folder / "s_stats.npz", mean=s.mean(0), std=s.std(0))


def write_random_models(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    gen = make_generator(GEN_CONFIG)
    save_generator(gen, folder / "gen")
    save_clip(Clip(tiny_model(vision_cfg=CLIP_CONFIG["vision_cfg"]), CLIP_CONFIG), folder / "clip")
    torch.manual_seed(0)
    mapper = LatentMapper(MapperConfig(gen.n_latent, GEN_CONFIG.style_dim, prompt="purple hair"))
    save_mapper(mapper, folder / "purple_hair")
    write_global_tables(gen, folder, CLIP_CONFIG["embed_dim"], 512)
    # e4e's official checkpoint layout (tests/e4e_reference.py), sized for this generator: W+ [8, 64]
    e4e_reference.official_checkpoint(folder / "e4e.pt", gen.state_dict())
    return {"generator": folder / "gen.json", "clip": folder / "clip.json", "mapper": folder / "purple_hair.json",
            "fs3": folder / "fs3.npy", "s_stats": folder / "s_stats.npz", "encoder": folder / "e4e.pt"}


# Tuned settings the shared test bundle records (runtime/edit_settings.py): one global edit, the mapper's strength.
EDIT_SETTINGS = {"A face with  blue hair": {"neutral": "a face with hair", "alpha": 2.0, "beta": 0.1},
                 "purple hair": {"strength": 0.5}}


def sources(models: dict[str, Path], mappers: bool = True, encoder: bool = True) -> Sources:
    return Sources(models["generator"], models["clip"], None, [models["mapper"]] if mappers else [],
                   models["fs3"], models["s_stats"], edit_settings=EDIT_SETTINGS,
                   encoder=models["encoder"] if encoder else None)
