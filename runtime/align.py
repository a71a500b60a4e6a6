"""Real photos: find faces, crop them the FFHQ / e4e way, and paste edited faces back (DESIGN §14).

Torch-free; needs the `[align]` extra (dlib-bin, face-recognition-models, scipy). dlib's HOG detector
finds faces, its 68-point shape predictor places landmarks, and the crop is e4e's `utils/alignment.py`
(FFHQ's recipe): an oriented square from the eye centres and mouth corners, a shrink for large faces,
a reflect-padded border blurred and faded to the median colour, a QUAD transform (bilinear) to the
transform size, then a resize to the output size. e4e uses output = transform = 256 (our default at any
size N: transform = N); FFHQ's own images are 4096 -> 1024 (`transform_size=4096`).

Where we differ from the reference, on purpose (each is one of its known faults):
- the best-scoring detection, not the last one (on scikit-image's astronaut the suit's mission patch is
  the last and scores 0.12 beside the face's 1.16), or every face by score;
- the photo's EXIF orientation is applied before detection, and it is converted to RGB (runtime/photos);
- LANCZOS where it called PIL's ANTIALIAS (removed in Pillow 10; it was LANCZOS under another name);
- no face is an `AlignError` naming the photo, not an UnboundLocalError.

`align_face` returns the crop and the quad it really sampled, in photo pixels: `paste_back` warps an
edited crop back through that quad and blends it with a feathered face mask; every photo pixel outside
the mask keeps its exact bytes.
"""
from __future__ import annotations

import importlib.util
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import ToolWarning
from .files import regular_file, sha256_file
from .photos import MIN_SIDE

EXTRA_HINT = "pip install 'styleclip-edge[align]' (in a source checkout: pip install '.[align]')"
LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
# dlib's 68-point model as face-recognition-models and Debian's libdlib-data ship it (one file, one hash).
LANDMARKS_SHA256 = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"
DEBIAN_LANDMARKS = Path("/usr/share/dlib") / LANDMARKS_FILE
UPSAMPLE = 1  # the detector's image pyramid upsampling, as e4e (and FFHQ) ran it
DETECT_SIDE = 2048  # larger photos are searched for faces at this size (faces under ~40 px of it are missed)
# px: the smallest crop square aligned. The detector finds faces down to ~50 px squares; below 64 the 68
# landmarks sit on a face ~30 px wide and e4e's 256 px crop would be over 4x interpolation.
MIN_FACE = 64
FACES = ("best", "all")


class AlignError(ValueError):
    """A photo, or a landmark model, that cannot be aligned; the message names the file and what to do."""


# --- the landmark model and dlib ------------------------------------------------------------------------
def _dlib():
    try:
        import dlib
    except ImportError:
        raise AlignError(f"face alignment needs dlib, which is not installed here: {EXTRA_HINT}") from None
    return dlib


def landmark_model_path(path=None) -> Path:
    """The 68-point model file: `path` if given, else face-recognition-models' copy (found without importing
    that package, which needs pkg_resources), else Debian's /usr/share/dlib one."""
    if path is not None:
        return Path(path)
    spec = importlib.util.find_spec("face_recognition_models")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "models" / LANDMARKS_FILE for p in spec.submodule_search_locations]
    candidates.append(DEBIAN_LANDMARKS)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise AlignError(f"dlib's 68-point landmark model ({LANDMARKS_FILE}) was not found: install it with "
                     f"{EXTRA_HINT}, or Debian's libdlib-data ({DEBIAN_LANDMARKS}), or pass --landmarks PATH")


_models: dict = {}
_lock = threading.Lock()


def load_models(path=None):
    """(detector, predictor, model path), loaded once per file (~1 s; later calls return them); the file's
    sha256 is checked first. `detect_faces` calls it: call it yourself to load before timing or serving."""
    dlib = _dlib()
    path = landmark_model_path(path)
    key = str(path.resolve()) if path.exists() else str(path)
    with _lock:
        if key not in _models:
            try:
                regular_file(path, "landmark model")
            except (OSError, ValueError) as err:
                raise AlignError(f"{err}; pass dlib's {LANDMARKS_FILE} with --landmarks, or install {EXTRA_HINT}") from None
            digest = sha256_file(path)
            if digest != LANDMARKS_SHA256:
                raise AlignError(f"{path} is not dlib's 68-point landmark model {LANDMARKS_FILE} (sha256 {digest[:12]}…, "
                                 f"expected {LANDMARKS_SHA256[:12]}…); pass the original file with --landmarks")
            _models[key] = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path)), path)
        return _models[key]


@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class Face:
    """One detected face: dlib's box (left, top, right, bottom), its detection score and 68 landmarks [68, 2]
    (x, y in photo pixels)."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray


def detect_faces(photo: np.ndarray, landmarks=None) -> list[Face]:
    """Every face dlib's HOG detector finds in an RGB uint8 photo [H, W, 3], best score first.

    Photos larger than DETECT_SIDE are searched at that size (the HOG pyramid's cost grows with the pixels:
    ~0.1 s at 512 px, ~1.6 s at 2048 px); the landmarks are always placed on the full-size photo."""
    from PIL import Image

    dlib = _dlib()
    detector, predictor, _ = load_models(landmarks)
    photo = np.ascontiguousarray(photo)
    h, w = photo.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = photo if scale == 1.0 else np.asarray(
        Image.fromarray(photo).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS))
    rects, scores, _ = detector.run(small, UPSAMPLE, 0.0)
    faces = []
    for rect, score in zip(rects, scores):
        if scale != 1.0:
            rect = dlib.rectangle(*(int(round(v / scale)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom())))
        shape = predictor(photo, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        faces.append(Face((rect.left(), rect.top(), rect.right(), rect.bottom()), float(score), points))
    return sorted(faces, key=lambda f: -f.score)


# --- e4e's crop -------------------------------------------------------------------------------------------
def face_quad(landmarks) -> tuple[np.ndarray, float]:
    """The oriented crop square from 68 landmarks: corners [4, 2] (upper left, lower left, lower right,
    upper right, PIL's QUAD order) and its side in pixels."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) * 0.5, eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # the eye line tilted by the perpendicular of eye->mouth
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]), float(np.hypot(*x) * 2)


@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class Aligned:
    """An aligned crop (uint8 [N, N, 3]) and the quad it samples in the photo, in photo pixels (the same
    convention as the landmarks: pixel i's centre at i)."""

    crop: np.ndarray
    quad: np.ndarray


def _pad_and_fade(img: np.ndarray, pad, qsize: float) -> np.ndarray:
    """Reflect-pad a float32 [H, W, 3] crop, blur towards the new edges and fade them to the median colour."""
    from scipy.ndimage import gaussian_filter

    img = np.pad(img, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = img.shape
    yy, xx, _ = np.ogrid[:h, :w, :1]
    edge = np.maximum(1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
                      1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]))
    blur = qsize * 0.02
    img += (gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(edge * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(edge, 0.0, 1.0)
    return np.uint8(np.clip(np.rint(img), 0, 255))


def align_face(photo: np.ndarray, face, size: int = 256, transform_size: int | None = None) -> Aligned:
    """The FFHQ-aligned crop of one face (a `Face` or its 68 landmarks) of an RGB uint8 photo [H, W, 3].

    `size` is the output side; `transform_size` (default `size`) the side the quad is sampled at before a
    LANCZOS resize to `size` (FFHQ: 4096 -> 1024). The reference's constants throughout."""
    from PIL import Image

    transform_size = transform_size or size
    if size < 1 or transform_size < size:
        raise ValueError(f"need 1 <= size <= transform_size, got size {size}, transform_size {transform_size}")
    landmarks = face.landmarks if isinstance(face, Face) else face
    quad, qsize = face_quad(landmarks)
    img = Image.fromarray(np.ascontiguousarray(photo), "RGB")
    full = np.array(img.size, dtype=np.float64)
    scale = np.ones(2)  # photo pixels per working-image pixel (per axis, after the shrink's rounding)
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink
        scale = full / np.array(rsize, dtype=np.float64)
    offset = np.zeros(2)  # working-image origin in the (shrunk) photo: crop corner minus padding
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
            int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, img.size[0]),
            min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - crop[0:2]
        offset += crop[0:2]
    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
           int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - img.size[0] + border, 0),
           max(pad[3] - img.size[1] + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = Image.fromarray(_pad_and_fade(np.float32(img), pad, qsize), "RGB")
        quad = quad + pad[:2]
        offset -= pad[:2]
    out = img.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    if size < transform_size:
        out = out.resize((size, size), Image.LANCZOS)
    # The quad PIL sampled, in the photo: +0.5 to pixel edges, undo the crop/pad and the shrink, -0.5 back.
    sampled = (quad + 0.5 + offset) * scale - 0.5
    return Aligned(np.asarray(out, dtype=np.uint8), sampled)


def check_face_size(face: Face, name: str) -> None:
    qsize = face_quad(face.landmarks)[1]
    if qsize < MIN_FACE:
        raise AlignError(f"{name}: the face at {list(face.box)} is too small to align: its crop square is "
                         f"{qsize:.0f} px, under the {MIN_FACE} px a crop needs; use a larger photo of the face")


def find_faces(photo: np.ndarray, name: str, faces: str = "best", landmarks=None) -> list[Face]:
    """The best face (`faces="best"`) or every face, best score first; AlignError when there is none."""
    if faces not in FACES:
        raise ValueError(f"faces must be one of {FACES}, got {faces!r}")
    found = detect_faces(photo, landmarks)
    if not found:
        raise AlignError(f"{name}: no face found (dlib's frontal face detector); use a photo with a face seen from "
                         "the front, at least ~80 px across, or pass an aligned crop without --align")
    found = found[:1] if faces == "best" else found
    for face in found:
        check_face_size(face, name)
    return found


# --- paste-back -------------------------------------------------------------------------------------------
# The face region of an aligned crop, in crop units ([0, 1] both ways): an ellipse around the face and hair,
# full inside FEATHER of its radius, fading to 0 at its edge (the crop's corners are background or padding).
MASK_CENTRE = (0.5, 0.5)
MASK_RADII = (0.40, 0.46)
FEATHER = 0.75


def face_mask(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The blend weight at crop coordinates u (across) and v (down), both in crop units."""
    r = np.hypot((u - MASK_CENTRE[0]) / MASK_RADII[0], (v - MASK_CENTRE[1]) / MASK_RADII[1])
    t = np.clip((1.0 - r) / (1.0 - FEATHER), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep: no visible seam at either end of the feather


def paste_back(photo: np.ndarray, edited: np.ndarray, quad) -> np.ndarray:
    """The photo with `edited` (an uint8 square [S, S, 3], any S) warped back through the inverse of the
    crop's quad and blended with the feathered face mask. Pixels outside the mask are the photo's bytes."""
    photo = np.asarray(photo)
    quad = np.asarray(quad, dtype=np.float64)
    s = edited.shape[0]
    if edited.ndim != 3 or edited.shape[1] != s or edited.shape[2] != 3 or quad.shape != (4, 2):
        raise ValueError(f"paste_back needs a square RGB image and a quad [4, 2], got {list(edited.shape)}, "
                         f"{list(quad.shape)}")
    h, w = photo.shape[:2]
    origin, across, down = quad[0] + 0.5, quad[3] - quad[0], quad[1] - quad[0]  # pixel edges, as PIL's QUAD
    lo = np.clip(np.floor(quad.min(0)).astype(int) - 1, 0, [w, h])
    hi = np.clip(np.ceil(quad.max(0)).astype(int) + 2, 0, [w, h])
    if np.any(hi <= lo):
        return photo.copy()
    ys, xs = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]]
    p = np.stack([xs + 0.5 - origin[0], ys + 0.5 - origin[1]], -1)  # pixel centres relative to the quad
    u, v = (p @ np.linalg.inv(np.stack([across, down], 1)).T).transpose(2, 0, 1)
    weight = face_mask(u, v)
    inside = weight > 0
    # Bilinear sample of the edited crop at (u, v) * S, pixel centres at i + 0.5, edges clamped.
    cx, cy = np.clip(u[inside] * s - 0.5, 0, s - 1), np.clip(v[inside] * s - 0.5, 0, s - 1)
    x0, y0 = np.minimum(cx.astype(int), s - 2 if s > 1 else 0), np.minimum(cy.astype(int), s - 2 if s > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, s - 1), np.minimum(y0 + 1, s - 1)
    fx, fy = (cx - x0)[:, None], (cy - y0)[:, None]
    e = edited.astype(np.float64)
    sample = (e[y0, x0] * (1 - fx) * (1 - fy) + e[y0, x1] * fx * (1 - fy)
              + e[y1, x0] * (1 - fx) * fy + e[y1, x1] * fx * fy)
    out = photo.copy()
    region = out[lo[1]:hi[1], lo[0]:hi[0]]
    old = region[inside].astype(np.float64)
    a = weight[inside][:, None]
    region[inside] = np.clip(np.rint(old + (sample - old) * a), 0, 255).astype(np.uint8)
    return out


# --- photos in, crops and records out (what `cli.py align` and `--align` run) ----------------------------
@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class Photo:
    """A photo as the aligner sees it: upright RGB pixels and what identifies the file."""

    name: str
    pixels: np.ndarray
    sha256: str | None = None
    exif_orientation: int = 1  # the EXIF orientation that was applied (1: none)


def read_photo(path) -> Photo:
    """A photo file, upright (EXIF orientation applied) and RGB; bad files are ValueErrors naming them."""
    from PIL import Image

    from .photos import read_image

    pixels = read_image(path)  # checks the file (kind, size, bit depth, damage) before decoding
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise AlignError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, too small to hold a face; pass a photo")
    with Image.open(path) as im:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        if getattr(im, "n_frames", 1) > 1:  # an animated GIF/WebP/PNG: read_image decoded its first frame
            warnings.warn(f"{path} has {im.n_frames} frames; aligning the first", ToolWarning, stacklevel=2)
    return Photo(str(path), pixels, sha256_file(path), orientation)


def as_photo(image, name: str = "photo") -> Photo:
    """A path, a Photo, a PIL image or a uint8 RGB array -> Photo."""
    from .photos import as_rgb_list

    if isinstance(image, Photo):
        return image
    if isinstance(image, (str, Path)):
        return read_photo(image)
    pixels, _ = as_rgb_list([image])
    return Photo(name, pixels[0])


@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class PhotoFace:
    """One face of a photo: the detection, its aligned crop and the quad the crop samples."""

    photo: Photo
    index: int  # 0 = best score
    face: Face
    aligned: Aligned
    transform_size: int

    @property
    def crop(self) -> np.ndarray:
        return self.aligned.crop

    def record(self) -> dict:
        """The sidecar of `cli.py align`: enough to find the face again and to paste an edit back."""
        from .files import PRODUCER

        h, w = self.photo.pixels.shape[:2]
        return {"producer": PRODUCER, "kind": "aligned-face", "photo": Path(self.photo.name).name,
                "photo_sha256": self.photo.sha256, "photo_size": [w, h], "exif_orientation": self.photo.exif_orientation,
                "face": self.index, "score": round(self.face.score, 6), "box": list(self.face.box),
                "landmarks": self.face.landmarks.tolist(), "quad": np.round(self.aligned.quad, 4).tolist(),
                "crop_size": int(self.crop.shape[0]), "transform_size": self.transform_size,
                "coordinates": "photo pixels of the upright photo, x right, y down, pixel i's centre at i; quad "
                               "corners: upper left, lower left, lower right, upper right of the crop"}


def align_photo(image, size: int = 256, faces: str = "best", transform_size: int | None = None,
                landmarks=None, name: str = "photo") -> list[PhotoFace]:
    """The aligned crops of a photo's best face (or of every face, best score first)."""
    photo = as_photo(image, name)
    found = find_faces(photo.pixels, photo.name, faces, landmarks)
    return [PhotoFace(photo, k, face, align_face(photo.pixels, face, size, transform_size), transform_size or size)
            for k, face in enumerate(found)]


def overview(photo: Photo, quads, side: int) -> np.ndarray:
    """The whole photo fitted into a white side x side square, each quad outlined (which face was used)."""
    from PIL import Image, ImageDraw

    h, w = photo.pixels.shape[:2]
    scale = side / max(h, w)
    im = Image.fromarray(photo.pixels).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    left, top = (side - im.width) // 2, (side - im.height) // 2
    canvas.paste(im, (left, top))
    draw = ImageDraw.Draw(canvas)
    for quad in quads:
        points = [(left + (x + 0.5) * scale, top + (y + 0.5) * scale) for x, y in np.asarray(quad)]
        draw.polygon(points, outline=(255, 40, 40), width=max(1, side // 128))
    return np.asarray(canvas)
