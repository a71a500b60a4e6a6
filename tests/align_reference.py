"""An independent, from-the-spec FFHQ / e4e face crop (DESIGN §14, e4e's utils/alignment.py), given landmarks.

Written from the recipe, not from runtime/align.py, which it tests: the quad transform here is numpy's
own bilinear sampling of the bilinear corner map (PIL's QUAD convention: output pixel centres at i + 0.5,
the quad in pixel-edge coordinates, i.e. landmark coordinates + 0.5), so the two agree to rounding only.
The resizes are PIL's (the reference's own calls: ANTIALIAS = LANCZOS), the blur scipy's as the reference's.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def oriented_square(lm):
    """Corners (UL, LL, LR, UR) and side of e4e's crop square from 68 landmarks [68, 2]."""
    lm = np.asarray(lm, dtype=np.float64)
    left_eye = lm[36:42].mean(axis=0)
    right_eye = lm[42:48].mean(axis=0)
    eyes = (left_eye + right_eye) / 2
    across = right_eye - left_eye
    mouth = (lm[48] + lm[54]) / 2
    down = mouth - eyes
    # x: the eye line combined with the eye->mouth vector turned by 90 degrees, scaled to the larger of
    # twice the eye distance and 1.8 times the eye-mouth distance; y: x turned by 90 degrees.
    turned = np.array([down[1], -down[0]])
    x = across + turned
    x = x / np.linalg.norm(x) * max(2.0 * np.linalg.norm(across), 1.8 * np.linalg.norm(down))
    y = np.array([-x[1], x[0]])
    centre = eyes + 0.1 * down
    corners = np.array([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    return corners, 2.0 * np.linalg.norm(x)


def sample_quad(image: np.ndarray, quad: np.ndarray, side: int, rows: int = 256) -> np.ndarray:
    """uint8 [side, side, 3]: the image sampled bilinearly over the quad (pixel-edge coordinates), a block of
    output rows at a time (FFHQ's 4096 px transform would otherwise make 200 MB temporaries)."""
    h, w = image.shape[:2]
    flat = image.reshape(-1, 3).astype(np.float32)
    ul, ll, lr, ur = quad
    a = ((np.arange(side) + 0.5) / side)[None, :]  # across
    out = np.empty((side, side, 3), np.uint8)
    for start in range(0, side, rows):
        b = ((np.arange(start, min(side, start + rows)) + 0.5) / side)[:, None]  # down
        x = ul[0] * (1 - a) * (1 - b) + ur[0] * a * (1 - b) + ll[0] * (1 - a) * b + lr[0] * a * b - 0.5
        y = ul[1] * (1 - a) * (1 - b) + ur[1] * a * (1 - b) + ll[1] * (1 - a) * b + lr[1] * a * b - 0.5  # pixel centres
        x0 = np.clip(np.floor(x).astype(np.int64), 0, w - 1)
        y0 = np.clip(np.floor(y).astype(np.int64), 0, h - 1)
        x1, y1 = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
        fx = (x - np.floor(x)).astype(np.float32)[..., None]
        fy = (y - np.floor(y)).astype(np.float32)[..., None]
        top = flat[y0 * w + x0] * (1 - fx) + flat[y0 * w + x1] * fx
        bottom = flat[y1 * w + x0] * (1 - fx) + flat[y1 * w + x1] * fx
        block = top * (1 - fy) + bottom * fy
        out[start:start + len(block)] = np.clip(np.floor(block + 1e-3), 0, 255)  # PIL's 8-bit bilinear truncates
    return out


def e4e_crop(photo: np.ndarray, landmarks, output_size: int = 256, transform_size: int | None = None) -> np.ndarray:
    """The crop e4e's align_face makes of an upright RGB photo with these landmarks (uint8 [N, N, 3])."""
    transform_size = transform_size or output_size
    quad, qsize = oriented_square(landmarks)
    img = Image.fromarray(photo)
    factor = int(np.floor(qsize / output_size * 0.5))
    if factor > 1:  # shrink large faces first
        img = img.resize((int(np.rint(img.width / factor)), int(np.rint(img.height / factor))), Image.LANCZOS)
        quad, qsize = quad / factor, qsize / factor
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    box = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, img.width), min(hi[1] + border, img.height))
    if box[2] - box[0] < img.width or box[3] - box[1] < img.height:
        img = img.crop(box)
        quad = quad - np.array(box[:2])
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = [max(border - lo[0], 0), max(border - lo[1], 0), max(hi[0] - img.width + border, 0),
           max(hi[1] - img.height + border, 0)]
    arr = np.asarray(img)
    if max(pad) > border - 4:
        pad = [max(p, int(np.rint(qsize * 0.3))) for p in pad]
        left, top, right, bottom = pad
        f = np.pad(arr.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
        h, w = f.shape[:2]
        cols = np.arange(w, dtype=np.float32)[None, :, None]
        rows = np.arange(h, dtype=np.float32)[:, None, None]
        # 0 inside, rising to 1 at the padded edges (the nearer edge of each axis, the larger axis wins)
        ramp = np.maximum(1.0 - np.minimum(cols / left, (w - 1 - cols) / right),
                          1.0 - np.minimum(rows / top, (h - 1 - rows) / bottom))
        sigma = qsize * 0.02
        f = f + (ndimage.gaussian_filter(f, [sigma, sigma, 0]) - f) * np.clip(3.0 * ramp + 1.0, 0.0, 1.0)
        f = f + (np.median(f, axis=(0, 1)) - f) * np.clip(ramp, 0.0, 1.0)
        arr = np.uint8(np.clip(np.rint(f), 0, 255))
        quad = quad + np.array([left, top])
    out = sample_quad(arr, quad + 0.5, transform_size)
    if output_size < transform_size:
        out = np.asarray(Image.fromarray(out).resize((output_size, output_size), Image.LANCZOS))
    return out
