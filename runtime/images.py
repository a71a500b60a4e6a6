"""PNG grids of results (rows of images with a header line), written atomically and marked as ours."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

from .files import PRODUCER, atomic_path, check_output

PAD = 4
HEADER = 14
# One picture holds at most this much; more is an error that says how to split the work.
MAX_GRID_FACES = 256
MAX_GRID_PIXELS = 64_000_000


def check_grid(rows: int, columns: int, tile: int, scale: int = 1) -> None:
    """Refuse, before any work, a grid larger than one picture should be."""
    side = tile * scale + PAD
    pixels = (columns * side + PAD) * (HEADER + rows * side + PAD)
    if rows > MAX_GRID_FACES or pixels > MAX_GRID_PIXELS:
        raise ValueError(f"the picture would hold {rows} faces x {columns} columns ({pixels / 1e6:.0f} megapixels); one "
                         f"holds at most {MAX_GRID_FACES} faces and {MAX_GRID_PIXELS // 1_000_000} megapixels: split the "
                         "faces over several runs (e.g. --seed 0-99, then --seed 100-199)")


def grid(rows: list[list[np.ndarray]], titles: list[str] | None = None, scale: int = 1) -> Image.Image:
    """rows[i][j]: uint8 [H, W, 3] images of one size; titles label the columns."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    check_grid(len(rows), cols, max(h, w), scale)
    h, w = h * scale, w * scale
    top = HEADER if titles else 0
    canvas = Image.new("RGB", (cols * (w + PAD) + PAD, top + len(rows) * (h + PAD) + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(titles or []):
        draw.text((PAD + j * (w + PAD), 2), title[: max(4, w // 6)], fill=(0, 0, 0))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            tile = Image.fromarray(img).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (PAD + j * (w + PAD), top + PAD + i * (h + PAD)))
    return canvas


def save_png(image: Image.Image, path) -> Path:
    """Write `image` as a PNG marked as ours (text chunk Software), so a later run may replace it and
    nothing else: an existing PNG without the mark (a user's photo) is never overwritten."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {path.name}")
    check_output(path, "output picture")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", PRODUCER)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path
