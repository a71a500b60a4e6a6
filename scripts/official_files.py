"""Write the official FFHQ files a StyleCLIP user owns, in their exact formats, with random weights.

Real weights cannot be downloaded here; these files have the real layouts, sizes and key names, so the
README's FFHQ commands can be walked and measured as a user would run them (issue 26):

  stylegan2-ffhq-config-f.pt  rosinality's convert_weight.py output: {'g_ema': state dict, 'latent_avg'}
  e4e_ffhq_encode.pt          e4e's coach checkpoint: {'state_dict': encoder.* + decoder.*, 'opts', 'latent_avg'}
  ViT-B-32.pt                 OpenAI's CLIP release: a TorchScript archive, fp16, QuickGELU, with the
                              input_resolution / context_length / vocab_size tensors
  fs3.npy                     StyleCLIP's global-direction table: 5,376 unit rows (conv layers up to 128 px) x 512
  S_mean_std                  StyleCLIP's pickle [means, stds], one array per style layer
  purple_hair.pt              a StyleCLIP latent mapper: {'state_dict': mapper.* + decoder.*, 'opts'}, the
                              coarse group left out (--no_coarse_mapper) and description "purple hair"
  model_ir_se50.pth           TreB1eN's ArcFace IR-SE-50 state dict (StyleCLIP's and e4e's ID loss)

    python scripts/official_files.py --out build/official        # 1.97 GB, ~20 s

Every file is written under a temporary name and renamed; existing files are replaced only by this script's
own names in --out (a folder it creates or that holds only these files and temporaries of a killed run).
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.presets import FFHQ_FS3_ROWS, FFHQ_GENERATOR, e4e_checkpoint, random_fs3, style_samples  # noqa: E402
from precompute.checkpoints import save_rosinality  # noqa: E402
from runtime.files import atomic_path  # noqa: E402

FILES = ("stylegan2-ffhq-config-f.pt", "e4e_ffhq_encode.pt", "ViT-B-32.pt", "fs3.npy", "S_mean_std",
         "purple_hair.pt", "model_ir_se50.pth")
def save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def generator():
    from precompute.stylegan2 import Generator

    gen = Generator(FFHQ_GENERATOR).eval()
    gen.mean_latent(4096)
    return gen


def e4e_file(gen, path: Path) -> None:
    from precompute.encoder import EncoderConfig, Encoder4Editing

    encoder = Encoder4Editing(EncoderConfig.official(gen.n_latent))
    with torch.no_grad():
        encoder.latent_avg.copy_(gen.latent_avg.expand(gen.n_latent, -1))
    save(e4e_checkpoint(encoder, FFHQ_GENERATOR.size, gen.state_dict(),
                        {"dataset_type": "ffhq_encode", "exp_dir": "experiment/e4e_ffhq_encode", "checkpoint_path": None}),
         path)


def openai_clip(path: Path) -> None:
    """OpenAI ships a traced TorchScript module in fp16 whose state dict keeps three architecture scalars."""
    import open_clip

    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    for key, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        model.__dict__.pop(key, None)  # open_clip keeps ints; OpenAI's archive holds tensors
        model.register_buffer(key, torch.tensor(value))
    with warnings.catch_warnings():  # tracing warns about every Python branch; the archive is only a file here
        warnings.simplefilter("ignore")
        archive = torch.jit.trace(model, (torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)),
                                  check_trace=False)
    with atomic_path(path) as tmp:
        archive.half().save(str(tmp))


def styleclip_tables(gen, fs3_path: Path, stats_path: Path) -> None:
    with atomic_path(fs3_path) as tmp, open(tmp, "wb") as f:
        np.save(f, random_fs3(FFHQ_FS3_ROWS, 512))  # ViT-B/32's 512-d embeddings
    s = style_samples(gen)
    layout = gen.layout
    with atomic_path(stats_path) as tmp:
        tmp.write_bytes(pickle.dumps([layout.split(s.mean(0)), layout.split(s.std(0))]))


def styleclip_mapper(gen, path: Path) -> None:
    from precompute.mapper import LatentMapper, MapperConfig

    mapper = LatentMapper(MapperConfig(gen.n_latent, 512, enabled={"coarse": False, "medium": True, "fine": True}))
    state = {f"mapper.{k}": v for k, v in mapper.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in gen.state_dict().items()})
    opts = {"description": "purple hair", "stylegan_size": 1024, "no_coarse_mapper": True, "no_medium_mapper": False,
            "no_fine_mapper": False, "clip_lambda": 1.0, "latent_l2_lambda": 0.8, "id_lambda": 0.1,
            "exp_dir": "mapper/results/purple_hair", "checkpoint_path": None}
    save({"state_dict": state, "opts": opts}, path)


def arcface(path: Path) -> None:
    from precompute.identity import IdentityNetwork

    save(IdentityNetwork().state_dict(), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/official"))
    args = ap.parse_args()
    out = args.out
    foreign = out.exists() and (not out.is_dir() or any(p.name not in FILES and not p.name.startswith(".")
                                                        for p in out.iterdir()))  # "." : a killed run's temporaries
    if foreign:
        print(f"error: {out} exists and holds files this script did not write; choose another --out", file=sys.stderr)
        sys.exit(2)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    start = time.perf_counter()
    gen = generator()
    steps = [("stylegan2-ffhq-config-f.pt", lambda: save_rosinality(gen, out / FILES[0])),
             ("e4e_ffhq_encode.pt", lambda: e4e_file(gen, out / FILES[1])),
             ("ViT-B-32.pt", lambda: openai_clip(out / FILES[2])),
             ("fs3.npy, S_mean_std", lambda: styleclip_tables(gen, out / FILES[3], out / FILES[4])),
             ("purple_hair.pt", lambda: styleclip_mapper(gen, out / FILES[5])),
             ("model_ir_se50.pth", lambda: arcface(out / FILES[6]))]
    for name, step in steps:
        step()
        print(f"wrote {out / name.split(',')[0]}{' and S_mean_std' if ',' in name else ''} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    for name in FILES:
        print(f"  {name:<28} {(out / name).stat().st_size / 1e6:9.1f} MB")


if __name__ == "__main__":
    main()
