"""Save a PNG grid of demo-world renders for looking at.

    python scripts/render_contact_sheet.py out.png              # 8x8 random faces
    python scripts/render_contact_sheet.py out.png --sweep      # one row per attribute, all values
    python scripts/render_contact_sheet.py out.png --captions   # also print one caption per tile
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from precompute.demo.render import ATTRIBUTES, caption, render, sample_faces  # noqa: E402


def grid(tiles: list[list[np.ndarray | None]], scale: int, gap: int = 2) -> Image.Image:
    """Rows of equally sized tiles (None: blank), upscaled by `scale` (nearest)."""
    h, w = next(t for row in tiles for t in row if t is not None).shape[:2]
    cols = max(len(row) for row in tiles)
    sheet = np.full((len(tiles) * (h + gap) + gap, cols * (w + gap) + gap, 3), 40, np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            if tile is not None:
                y, x = gap + i * (h + gap), gap + j * (w + gap)
                sheet[y:y + h, x:x + w] = tile
    image = Image.fromarray(sheet)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def random_tiles(rows: int, cols: int, seed: int, captions: bool) -> list[list[np.ndarray]]:
    faces = sample_faces(rows * cols, seed)
    r = random.Random(seed)
    if captions:
        for k, face in enumerate(faces):
            print(f"({k // cols},{k % cols}) {face.values()} | {caption(face, r)}")
    return [[render(faces[i * cols + j]) for j in range(cols)] for i in range(rows)]


def sweep_tiles(seed: int) -> list[list[np.ndarray]]:
    """Each row: one base face with one attribute set to each of its values."""
    base = sample_faces(1, seed)[0].with_values(hair_style="short")
    rows = []
    for name, values in ATTRIBUTES.items():
        rows.append([render(base.with_values(**{name: value})) for value in values])
        print(name, values)
    for skin in ATTRIBUTES["skin_tone"]:  # hair colour on every skin tone, bald (eyebrows only)
        rows.append([render(base.with_values(skin_tone=skin, hair_style="bald", hair_color=c))
                     for c in ATTRIBUTES["hair_color"]])
        print("bald, skin", skin, ATTRIBUTES["hair_color"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("out", type=Path, help="PNG path to write")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscale factor")
    parser.add_argument("--sweep", action="store_true", help="attribute sweep instead of random faces")
    parser.add_argument("--captions", action="store_true", help="print labels and a caption per tile")
    args = parser.parse_args()
    tiles = sweep_tiles(args.seed) if args.sweep else random_tiles(args.rows, args.cols, args.seed,
                                                                   args.captions)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(tiles, args.scale).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
