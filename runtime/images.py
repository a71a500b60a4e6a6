"""PNG grids of results (rows of images with a header line), written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .files import atomic_path

PAD = 4
HEADER = 14


def grid(rows: list[list[np.ndarray]], titles: list[str] | None = None, scale: int = 1) -> Image.Image:
    """rows[i][j]: uint8 [H, W, 3] images of one size; titles label the columns."""
    h, w = rows[0][0].shape[:2]
    h, w = h * scale, w * scale
    cols = max(len(r) for r in rows)
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
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {path.name}")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
