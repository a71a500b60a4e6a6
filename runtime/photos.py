"""A user's pictures as the encoder takes them (numpy + PIL only): read, checked, converted, resized.

Accepted: paths (str / Path), PIL images, uint8 arrays [H, W, 3] or a batch [B, H, W, 3] (also [H, W],
[H, W, 1] greyscale and [H, W, 4] RGBA). Colour: RGB; greyscale is repeated to three channels, an alpha
channel is composited over white, palette/CMYK images are converted. A photo's EXIF orientation is
applied. Only 8-bit images: a 16-bit PNG is refused rather than silently cut to 8 bits.

Size: a square image of the encoder's size is used as it is; any other square one is resized with
PIL's bilinear filter (antialiased when shrinking: what torchvision's Resize does on PIL images, which
is how e4e prepared its training and test images). A non-square image is an error unless the caller
asks for `crop="center"`: the largest centred square. Then [0, 255] -> [-1, 1] (e4e's
Normalize(0.5, 0.5)).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .files import regular_file

MIN_SIDE = 16  # smaller pictures hold no face worth inverting (and 0x0 / 1x1 files are broken ones)
MAX_PIXELS = 80_000_000  # larger files are refused before decoding (PIL warns at 89 M, refuses at 179 M)
CROPS = (None, "center")


def _from_pil(im, name: str) -> np.ndarray:
    from PIL import Image, ImageOps

    # A 16-bit RGB PNG opens as mode "RGB" (PIL drops the low bytes); its tile's raw mode tells.
    raw_modes = [str(t[3]) for t in getattr(im, "tile", None) or [] if len(t) > 3]
    if any(";16" in m for m in raw_modes) or im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise ValueError(f"{name} is a 16-bit (or floating-point) image; save it as an 8-bit RGB PNG or JPEG")
    try:
        im.load()
    except OSError as err:  # "image file is truncated", decoder errors
        raise ValueError(f"{name} is damaged or truncated and cannot be read ({err})") from None
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_image(path) -> np.ndarray:
    """A picture file as uint8 RGB [H, W, 3]; a bad file is a ValueError naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not an image; pass the image files in it")
    regular_file(path, "image")  # missing, or a pipe or device (which would block the reader)
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the size is checked below, in one error line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.width * im.height > MAX_PIXELS:  # checked before any pixel is decoded
                raise ValueError(f"{path} is {im.width}x{im.height} pixels, more than the {MAX_PIXELS // 10**6} "
                                 "megapixels read at once; crop the face first")
            return _from_pil(im, str(path))
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image PIL can read (PNG, JPEG, WebP, ...), or it is damaged") from None
    except (Image.DecompressionBombError, SyntaxError, OSError) as err:
        raise ValueError(f"{path} cannot be read as an image ({err})") from None


def _array_images(a: np.ndarray, index: int) -> list[np.ndarray]:
    what = f"image {index}"
    if a.dtype != np.uint8:
        raise ValueError(f"{what}: arrays must be uint8 [H, W, 3] or [B, H, W, 3] in 0..255, got {a.dtype}; "
                         "convert with (x * 255).round().astype(np.uint8) for floats in [0, 1]")
    if a.ndim == 4:
        return [im for k in range(len(a)) for im in _array_images(a[k], index + k)]
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"{what}: expected [H, W, 3] (or [H, W], [H, W, 1], [H, W, 4]), got shape {list(a.shape)}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:  # alpha over white, as for files
        from PIL import Image

        a = _from_pil(Image.fromarray(np.ascontiguousarray(a), "RGBA"), what)
    return [np.ascontiguousarray(a)]


def as_rgb_list(images) -> tuple[list[np.ndarray], list[str]]:
    """Any accepted input -> (uint8 RGB [H, W, 3] images, a name for each, for error messages)."""
    from PIL import Image

    if isinstance(images, np.ndarray) and images.ndim == 4:
        items = _array_images(images, 0)
        return items, [f"image {i}" for i in range(len(items))]
    if isinstance(images, (str, Path, np.ndarray, Image.Image)):
        images = [images]
    out, names = [], []
    for i, item in enumerate(images):
        if isinstance(item, (str, Path)):
            out.append(read_image(item))
            names.append(str(item))
        elif isinstance(item, Image.Image):
            out.append(_from_pil(item, f"image {i}"))
            names.append(f"image {i}")
        elif isinstance(item, np.ndarray):
            arrays = _array_images(item, i)
            out += arrays
            names += [f"image {i}"] * len(arrays)
        else:
            raise TypeError(f"image {i}: expected a path, a PIL image or a uint8 array, got {type(item).__name__}")
    if not out:
        raise ValueError("no images given")
    return out, names


def square(image: np.ndarray, name: str, crop: str | None) -> np.ndarray:
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"{name} is {w}x{h} pixels; the encoder needs a face picture of at least "
                         f"{MIN_SIDE}x{MIN_SIDE}")
    if h == w:
        return image
    if crop is None:
        raise ValueError(f"{name} is {w}x{h}, not square; pass an aligned square face crop, or ask for the "
                         "centre square (crop='center', `--crop center`)")
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """A square uint8 image at size x size (unchanged when it already is)."""
    from PIL import Image

    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def prepare(images, size: int, crop: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, size, size, 3] as the encoder sees them, float32 [N, 3, size, size] in [-1, 1])."""
    rgb, names = as_rgb_list(images)
    seen = np.stack([resize(square(im, name, crop), size) for im, name in zip(rgb, names)])
    x = seen.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return seen, np.ascontiguousarray(x)
