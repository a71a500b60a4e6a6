"""Export and validate at real size: FFHQ-1024 config-f StyleGAN2 + ViT-B-32 CLIP, random weights.

Real weights are not available here; random weights have exactly the real compute, file sizes and
numerics paths. Writes the models, the bundle and its report under --work and prints export time,
file sizes and the validation table (the figures quoted in the export issue's closing note).

    python scripts/real_size_export.py --work build/real_size
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


def write_models(work: Path) -> Sources:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.rosinality(1024, 512, 8, 2)).eval()
    gen.mean_latent(4096)
    save_rosinality(gen, work / "stylegan2-ffhq-config-f-random.pt")
    clip = open_clip.create_model("ViT-B-32", pretrained=None)
    torch.save(clip.state_dict(), work / "vit-b-32-random.pt")
    mapper = LatentMapper(MapperConfig(18, 512, prompt="purple hair"))
    save_mapper(mapper, work / "purple_hair")
    rng = np.random.default_rng(0)
    fs3 = rng.standard_normal((5376, 512)).astype(np.float32)  # the official table's row count
    np.save(work / "fs3.npy", fs3 / np.linalg.norm(fs3, axis=1, keepdims=True))
    with torch.no_grad():
        s = torch.cat(gen.styles(gen.wplus_from_z(torch.randn(2000, 512), 0.7)), 1).numpy()
    np.savez(work / "s_stats.npz", mean=s.mean(0), std=s.std(0))
    return Sources(work / "stylegan2-ffhq-config-f-random.pt", work / "vit-b-32-random.pt", "ViT-B-32",
                   [work / "purple_hair.json"], work / "fs3.npy", work / "s_stats.npz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("build/real_size"))
    ap.add_argument("--fp16", action="store_true", help="also export and validate fp16 variants")
    ap.add_argument("--batches", default="1,4")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    src = write_models(args.work)
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
