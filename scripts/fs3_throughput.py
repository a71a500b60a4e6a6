"""fs3 throughput: measured channels/s and the projected time of whole tables (random weights, same compute).

  (a) demo-sized: 64 px generator (style 128, channels <= 128) + the demo CLIP config (ViT width 192,
      4 layers, patch 8, 64 px), N = 100 latents per channel -> time of the full demo table.
  (b) FFHQ-1024 config-f + ViT-B-32: a few channels at small N, projected to N = 100 over 6048 rows
      (all conv layers) and 5376 rows (the official table, <= 128 px).

Projection: every channel renders and embeds 2·N images, so with t_img = measured seconds per
(generator + CLIP) image, one channel costs 2·N·t_img and a table of R rows R·2·N·t_img / shards run
in parallel (one core or GPU each). The first channel group (model hashing, warm-up) is not timed.

  .venv/bin/python scripts/fs3_throughput.py [--threads 1] [--demo-channels 6] [--ffhq-channels 3 --ffhq-images 4]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.bench import fs3_seconds_per_image  # noqa: E402
from precompute import global_directions as gd  # noqa: E402
from precompute.clip_model import Clip, new_clip  # noqa: E402
from precompute.stylegan2 import Generator, GeneratorConfig  # noqa: E402

from export.presets import DEMO_CLIP as DEMO_CLIP_CONFIG, DEMO_GENERATOR as DEMO_GEN  # noqa: E402


def random_generator(config: GeneratorConfig) -> Generator:
    torch.manual_seed(0)
    gen = Generator(config).eval()
    gen.mean_latent(1024)
    return gen


def measure(gen, clip, channels: int, n_images: int, batch: int | None, compile: bool = False) -> float:
    """Seconds per image (generator + CLIP), timed between channel groups after the first."""
    mean, std = gd.style_statistics(gen, 2000, batch=500)
    return fs3_seconds_per_image(gen, clip, mean, std, channels, n_images, batch, compile)


def hms(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def report(name: str, t_img: float, measured_n: int, tables: dict[str, int], n: int = 100) -> None:
    per_channel = 2 * n * t_img
    print(f"{name}: {t_img * 1e3:.1f} ms per image (measured at N={measured_n}) -> "
          f"{1 / per_channel:.3g} channels/s at N={n} ({per_channel:.1f} s per channel)")
    for label, rows in tables.items():
        total = rows * per_channel
        print(f"  {label}: {rows} rows x 2 x {n} images = {rows * 2 * n:,} passes -> {hms(total)} "
              f"on one process, {hms(total / 2)} with 2 shards, {hms(total / 16)} with 16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--demo-channels", type=int, default=6, help="timed channels of the demo-sized table")
    ap.add_argument("--demo-images", type=int, default=100)
    ap.add_argument("--ffhq-channels", type=int, default=3, help="timed channels at FFHQ-1024 (0: skip)")
    ap.add_argument("--ffhq-images", type=int, default=4)
    ap.add_argument("--ffhq-batch", type=int, default=2, help="images per 1024 px generator call")
    ap.add_argument("--demo-batch", type=int, help="images per demo generator call [default_batch]")
    ap.add_argument("--compile", action="store_true", help="torch.compile generator and CLIP (needs a C++ compiler)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")

    if args.demo_channels:
        gen = random_generator(DEMO_GEN)
        clip = new_clip(DEMO_CLIP_CONFIG, preprocess="normalized", seed=0)
        batch = args.demo_batch or gd.default_batch(gen)
        t_img = measure(gen, clip, args.demo_channels, args.demo_images, batch, args.compile)
        report(f"demo 64 px (batch {batch}{', compiled' if args.compile else ''})", t_img, args.demo_images,
               {"full demo table (all conv layers)": gen.layout.conv_channels}, n=args.demo_images)

    if args.ffhq_channels:
        import open_clip

        gen = random_generator(GeneratorConfig.rosinality(1024))
        torch.manual_seed(0)
        clip = Clip(open_clip.create_model("ViT-B-32"), open_clip.get_model_config("ViT-B-32"), name="ViT-B-32",
                    preprocess="styleclip")
        t_img = measure(gen, clip, args.ffhq_channels, args.ffhq_images, args.ffhq_batch, args.compile)
        report(f"FFHQ-1024 config-f + ViT-B-32 (batch {args.ffhq_batch}{', compiled' if args.compile else ''})",
               t_img, args.ffhq_images,
               {"all conv layers": gen.layout.conv_channels, "official (<= 128 px)": gd.fs3_rows(gen.layout, 128)})


if __name__ == "__main__":
    main()
