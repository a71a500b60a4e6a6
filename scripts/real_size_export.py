"""Export and validate random-weight models of real size or demo size, and print the figures.

--preset ffhq: FFHQ-1024 config-f StyleGAN2 + ViT-B-32 (real weights are not available here; random
weights have exactly the real compute, file sizes and numerics paths). --preset demo: the demo
world's architectures (64 px generator, small open_clip) with random weights. Writes the models, the
bundle and its report under --work and prints export time, file sizes and the validation table.

    python scripts/real_size_export.py --preset ffhq --work build/real_size --fp16
    python scripts/real_size_export.py --preset demo --work build/demo_size --fp16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.bundle import ExportOptions, Sources, export_bundle  # noqa: E402
from export.validate import Validator, format_table  # noqa: E402
from precompute.checkpoints import save_rosinality  # noqa: E402
from precompute.mapper import LatentMapper, MapperConfig, save_mapper  # noqa: E402
from precompute.stylegan2 import Generator, GeneratorConfig  # noqa: E402


# The demo world's architectures (precompute/demo): 64 px generator, small open_clip at 64 px.
DEMO_GENERATOR = GeneratorConfig(64, 128, 4, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32})
DEMO_CLIP = {"embed_dim": 128,
             "vision_cfg": {"image_size": 64, "layers": 4, "width": 192, "patch_size": 8, "head_width": 64},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 4}}


def write_models(work: Path, preset: str) -> Sources:
    torch.manual_seed(0)
    if preset == "ffhq":
        gen = Generator(GeneratorConfig.rosinality(1024, 512, 8, 2)).eval()
        clip, clip_name, rows = open_clip.create_model("ViT-B-32", pretrained=None), "ViT-B-32", 5376  # official fs3 rows
    else:
        gen = Generator(DEMO_GENERATOR).eval()
        clip, clip_name, rows = open_clip.CLIP(**DEMO_CLIP), None, None
    gen.mean_latent(4096)
    save_rosinality(gen, work / "generator.pt")
    torch.save(clip.state_dict(), work / "clip.pt")
    dim, embed = gen.config.style_dim, clip.text_projection.shape[1]
    save_mapper(LatentMapper(MapperConfig(gen.n_latent, dim, prompt="purple hair")), work / "purple_hair")
    rng = np.random.default_rng(0)
    fs3 = rng.standard_normal((rows or gen.layout.conv_channels, embed)).astype(np.float32)
    np.save(work / "fs3.npy", fs3 / np.linalg.norm(fs3, axis=1, keepdims=True))
    with torch.no_grad():
        s = torch.cat(gen.styles(gen.wplus_from_z(torch.randn(2000, dim), 0.7)), 1).numpy()
    np.savez(work / "s_stats.npz", mean=s.mean(0), std=s.std(0))
    if clip_name is None:  # a custom config: save it in our format, which records the config
        from precompute.clip_model import Clip, save_clip

        save_clip(Clip(clip, DEMO_CLIP), work / "clip")
    clip_file = work / ("clip.pt" if clip_name else "clip.json")
    return Sources(work / "generator.pt", clip_file, clip_name, [work / "purple_hair.json"], work / "fs3.npy",
                   work / "s_stats.npz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=["ffhq", "demo"], default="ffhq")
    ap.add_argument("--work", type=Path, default=Path("build/real_size"))
    ap.add_argument("--fp16", action="store_true", help="also export and validate fp16 variants")
    ap.add_argument("--batches", default="1,4")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    src = write_models(args.work, args.preset)
    bundle = args.work / "bundle"
    start = time.perf_counter()
    manifest = export_bundle(bundle, src, ExportOptions(fp16=args.fp16))
    export_s = time.perf_counter() - start
    print(f"\nexport: {export_s:.1f} s, torch {torch.__version__}, opset {manifest['producer']['opset']}")
    for rel, entry in sorted(manifest["files"].items()):
        print(f"  {rel:<40} {entry['size'] / 1e6:9.1f} MB")
    start = time.perf_counter()
    checks = Validator(bundle, [int(b) for b in args.batches.split(",")]).run()
    print(f"\nvalidate: {time.perf_counter() - start:.1f} s\n{format_table(checks)}")
    print(f"report: {bundle / 'report' / 'index.html'}")
    sys.exit(0 if all(c.passed for c in checks) else 1)


if __name__ == "__main__":
    main()
