"""Procedural 64x64 cartoon faces with known attributes: the demo world's "photographs".

A `Face` is a point of the demo world: one value per categorical attribute (`ATTRIBUTES`), a
continuous geometry vector that plays the role of identity (`GEOMETRY`) and a seed for stochastic
detail (hair strands, the analogue of StyleGAN's noise inputs). `render` draws it with PIL at
`size * supersample` and downsamples with a box filter (anti-aliasing); the result depends only on
the `Face`, so the same face always gives the same bytes. `caption` describes a face in varied
phrasings that never contradict its labels.

Bald faces keep their hair colour label: eyebrows are always drawn thick and in the hair colour, so
the hair colour stays visible (and classifiable) without hair. Captions of bald faces never say
"<colour> hair"; they may say "<colour> eyebrows", which is true of every face.

Drawing coordinates are in pixels of a 64 px image (`u` converts them to canvas pixels).
"""
from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

# --- the attribute tables (single source of truth) -----------------------------------------------

ATTRIBUTES: OrderedDict[str, tuple[str, ...]] = OrderedDict(
    hair_color=("black", "brown", "blonde", "red", "purple", "gray"),
    hair_style=("short", "long", "bald"),
    expression=("neutral", "smiling", "surprised"),
    glasses=("no", "yes"),
    eye_color=("brown", "blue", "green"),
    skin_tone=("light", "tan", "dark"),
    background=("white", "blue", "green", "pink", "yellow"),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)

# Prior over values, per attribute (uniform). Later evaluation compares sample frequencies to it.
PRIOR: dict[str, tuple[float, ...]] = {
    name: tuple(1.0 / len(values) for _ in values) for name, values in ATTRIBUTES.items()
}

# Continuous geometry: (name, low, high) in 64 px image pixels. A Face stores each one normalized to
# [0, 1] (uniform prior); `Face.geometry_px` maps it to [low, high].
GEOMETRY: tuple[tuple[str, float, float], ...] = (
    ("face_width", 28.0, 36.0),    # width of the face ellipse
    ("face_height", 37.0, 45.0),   # height of the face ellipse
    ("face_x", 27.0, 37.0),        # centre of the face, x
    ("face_y", 30.0, 35.0),        # centre of the face, y
    ("eye_spacing", 12.5, 16.5),   # distance between the eye centres
    ("eye_height", 15.5, 19.0),    # eye line below the top of the face
    ("mouth_width", 9.0, 14.0),    # width of the mouth (the surprised "O" scales with it)
)
GEOMETRY_NAMES: tuple[str, ...] = tuple(g[0] for g in GEOMETRY)

# --- colours (RGB) --------------------------------------------------------------------------------

HAIR_RGB = {
    "black": (35, 30, 30), "brown": (100, 58, 28), "blonde": (245, 210, 80),
    "red": (205, 70, 35), "purple": (135, 65, 180), "gray": (170, 170, 175),
}
SKIN_RGB = {"light": (248, 218, 192), "tan": (210, 150, 105), "dark": (140, 94, 64)}
EYE_RGB = {"brown": (140, 70, 20), "blue": (30, 110, 235), "green": (30, 170, 60)}
BACKGROUND_RGB = {
    "white": (242, 240, 232), "blue": (165, 205, 245), "green": (175, 230, 175),
    "pink": (240, 175, 205), "yellow": (252, 246, 170),
}
# The attributes that are colours, each with its table: what `render` draws and `colour_regions` probes.
COLOUR_RGB = {"hair_color": HAIR_RGB, "eye_color": EYE_RGB, "skin_tone": SKIN_RGB, "background": BACKGROUND_RGB}
SHIRT_RGB = (60, 70, 95)
FRAME_RGB = (22, 22, 28)
SCLERA_RGB = (255, 255, 255)
PUPIL_RGB = (15, 10, 10)
MOUTH_RGB = (150, 20, 50)
LIP_RGB = (185, 70, 85)

# --- feature sizes (64 px units) ------------------------------------------------------------------

EYE_RX, EYE_RY = 3.8, 3.0       # sclera half-axes
IRIS_R, PUPIL_R = 2.6, 0.9
LENS_R, FRAME_W = 6.0, 2.0      # glasses: outer lens radius, frame thickness
BROW_W, BROW_H, BROW_UP = 8.0, 3.0, 8.5  # eyebrow box and its centre above the eye line
HAIR_TOP = 5.0                  # hair above the top of the face
N_STRANDS = 14


def _shade(rgb: Sequence[int], f: float) -> tuple[int, int, int]:
    return tuple(int(round(c * f)) for c in rgb)  # type: ignore[return-value]


# --- the face ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Face:
    """One face: `attrs[i]` indexes `ATTRIBUTES[ATTRIBUTE_NAMES[i]]`; `geometry[j]` in [0, 1] is
    `GEOMETRY[j]` normalized; `seed` drives stochastic detail only (hair strands)."""

    attrs: tuple[int, ...]
    geometry: tuple[float, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.attrs) != len(ATTRIBUTES) or len(self.geometry) != len(GEOMETRY):
            raise ValueError(f"a Face needs {len(ATTRIBUTES)} attrs and {len(GEOMETRY)} geometry values")
        for name, i in zip(ATTRIBUTE_NAMES, self.attrs):
            if not 0 <= i < len(ATTRIBUTES[name]):
                raise ValueError(f"{name} index {i} out of range {ATTRIBUTES[name]}")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Face":
        """A draw from the prior: `PRIOR` for the attributes, uniform geometry, a random seed."""
        attrs = tuple(int(rng.choice(len(p), p=p)) for p in PRIOR.values())
        geometry = tuple(float(g) for g in rng.random(len(GEOMETRY)))
        return cls(attrs, geometry, int(rng.integers(2**31)))

    @classmethod
    def from_values(cls, geometry: Sequence[float] | None = None, seed: int = 0, **values: str) -> "Face":
        """A face by value names; unnamed attributes take their first value, geometry the middle."""
        unknown = set(values) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown attributes {sorted(unknown)}; known: {ATTRIBUTE_NAMES}")
        attrs = tuple(ATTRIBUTES[n].index(values.get(n, ATTRIBUTES[n][0])) for n in ATTRIBUTE_NAMES)
        geometry = tuple(geometry) if geometry is not None else (0.5,) * len(GEOMETRY)
        return cls(attrs, tuple(float(g) for g in geometry), seed)

    def value(self, name: str) -> str:
        return ATTRIBUTES[name][self.attrs[ATTRIBUTE_NAMES.index(name)]]

    def values(self) -> dict[str, str]:
        return {n: self.value(n) for n in ATTRIBUTE_NAMES}

    def with_values(self, **values: str) -> "Face":
        attrs = list(self.attrs)
        for n, v in values.items():
            attrs[ATTRIBUTE_NAMES.index(n)] = ATTRIBUTES[n].index(v)
        return replace(self, attrs=tuple(attrs))

    def with_geometry(self, **normalized: float) -> "Face":
        geometry = list(self.geometry)
        for n, g in normalized.items():
            geometry[GEOMETRY_NAMES.index(n)] = float(g)
        return replace(self, geometry=tuple(geometry))

    def geometry_px(self) -> dict[str, float]:
        return {n: lo + g * (hi - lo) for (n, lo, hi), g in zip(GEOMETRY, self.geometry)}


# --- drawing ----------------------------------------------------------------------------------------

class _Canvas:
    """A PIL canvas addressed in 64 px units."""

    def __init__(self, size: int, rgb: Sequence[int]):
        self.u = size / 64.0
        self.image = Image.new("RGB", (size, size), tuple(rgb))
        self.draw = ImageDraw.Draw(self.image)

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [x0 * self.u, y0 * self.u, x1 * self.u, y1 * self.u]

    def box(self, cx: float, cy: float, rx: float, ry: float) -> list[float]:
        return self.rect(cx - rx, cy - ry, cx + rx, cy + ry)

    def w(self, width: float) -> int:
        return max(1, int(round(width * self.u)))


def _hair_texture(c: _Canvas, rgb: Sequence[int], seed: int) -> Image.Image:
    """Solid hair colour with a few darker strands placed by the seed."""
    tex = Image.new("RGB", c.image.size, tuple(rgb))
    d = ImageDraw.Draw(tex)
    r = random.Random(seed)
    dark = _shade(rgb, 0.8) if sum(rgb) > 150 else (55, 50, 50)  # black hair: lighter strands
    for _ in range(N_STRANDS):
        x, y = r.uniform(8, 56), r.uniform(2, 30)
        dx, length = r.uniform(-4, 4), r.uniform(8, 24)
        d.line([(x * c.u, y * c.u), ((x + dx) * c.u, (y + length) * c.u)], fill=dark, width=c.w(0.8))
    return tex


def _face_frame(face: Face) -> dict[str, float]:
    """Derived positions (64 px units) shared by the drawing steps."""
    return _frame(face.geometry_px())


def _frame(g: dict):
    """`_face_frame` from geometry in pixels; arithmetic only, so it also maps arrays of faces."""
    top = g["face_y"] - g["face_height"] / 2
    eye_y = top + g["eye_height"]
    chin = g["face_y"] + g["face_height"] / 2
    return dict(cx=g["face_x"], cy=g["face_y"], rx=g["face_width"] / 2, ry=g["face_height"] / 2,
                top=top, chin=chin, eye_y=eye_y, eye_dx=g["eye_spacing"] / 2,
                mouth_y=eye_y + 0.55 * (chin - eye_y), mouth_w=g["mouth_width"])


def _draw_shoulders(c: _Canvas, f: dict[str, float]) -> None:
    c.draw.ellipse(c.box(f["cx"], f["chin"] + 24, 27, 21), fill=SHIRT_RGB)


def _draw_ears(c: _Canvas, f: dict[str, float], skin: Sequence[int]) -> None:
    for side in (-1, 1):
        c.draw.ellipse(c.box(f["cx"] + side * f["rx"], f["eye_y"] + 2, 2.6, 3.6),
                       fill=skin, outline=_shade(skin, 0.75), width=c.w(0.8))


def _hair_masks(c: _Canvas, f: dict[str, float], style: str) -> tuple[Image.Image, Image.Image]:
    """Masks of the hair behind the face and of the fringe drawn over it."""
    back = Image.new("L", c.image.size, 0)
    fringe = Image.new("L", c.image.size, 0)
    db, df = ImageDraw.Draw(back), ImageDraw.Draw(fringe)
    cx, rx, top = f["cx"], f["rx"], f["top"]
    # Cap over the head, reaching down to the ears.
    cap_bottom = f["eye_y"] + 1
    db.ellipse(c.rect(cx - rx - 2, top - HAIR_TOP, cx + rx + 2, 2 * cap_bottom - top), fill=255)
    if style == "long":  # hair falling beside the face down to the shoulders
        hx = rx + 5.5
        db.rounded_rectangle(c.rect(cx - hx, f["cy"] - 6, cx + hx, f["chin"] + 7), radius=4 * c.u,
                             fill=255)
        db.ellipse(c.rect(cx - hx, top - HAIR_TOP, cx + hx, f["cy"] + 8), fill=255)
    # Fringe: the top of the face, ending just above the eyebrows.
    fringe_bottom = f["eye_y"] - BROW_UP - BROW_H / 2 - 2.5
    df.ellipse(c.rect(cx - rx - 1, top - HAIR_TOP, cx + rx + 1, fringe_bottom), fill=255)
    return back, fringe


def _draw_face(c: _Canvas, f: dict[str, float], skin: Sequence[int]) -> None:
    """Neck (a shade darker) and the face ellipse."""
    neck = 0.38 * f["rx"]
    c.draw.rectangle(c.rect(f["cx"] - neck, f["cy"], f["cx"] + neck, f["chin"] + 6), fill=_shade(skin, 0.88))
    c.draw.ellipse(c.box(f["cx"], f["cy"], f["rx"], f["ry"]), fill=skin,
                   outline=_shade(skin, 0.75), width=c.w(0.8))


def _draw_brows(c: _Canvas, f: dict[str, float], hair: Sequence[int], expression: str) -> None:
    up = BROW_UP + (1.0 if expression == "surprised" else 0.0)
    for side in (-1, 1):
        x, y = f["cx"] + side * f["eye_dx"], f["eye_y"] - up
        c.draw.rounded_rectangle(c.box(x, y, BROW_W / 2, BROW_H / 2), radius=1.2 * c.u, fill=hair)


def _draw_eyes(c: _Canvas, f: dict[str, float], iris: Sequence[int]) -> None:
    for side in (-1, 1):
        x, y = f["cx"] + side * f["eye_dx"], f["eye_y"]
        c.draw.ellipse(c.box(x, y, EYE_RX, EYE_RY), fill=SCLERA_RGB, outline=PUPIL_RGB, width=c.w(0.5))
        c.draw.ellipse(c.box(x, y, IRIS_R, IRIS_R), fill=iris)
        c.draw.ellipse(c.box(x, y, PUPIL_R, PUPIL_R), fill=PUPIL_RGB)


def _draw_glasses(c: _Canvas, f: dict[str, float]) -> None:
    w = c.w(FRAME_W)
    cx, y, dx = f["cx"], f["eye_y"], f["eye_dx"]
    for side in (-1, 1):
        c.draw.ellipse(c.box(cx + side * dx, y, LENS_R, LENS_R), outline=FRAME_RGB, width=w)
        # Temple: from the lens to the side of the head.
        x0, x1 = cx + side * (dx + LENS_R - 0.5), cx + side * (f["rx"] + 0.5)
        c.draw.line([(x0 * c.u, (y - 1) * c.u), (x1 * c.u, (y - 1) * c.u)], fill=FRAME_RGB, width=w)
    bridge = max(0.0, dx - LENS_R + 1)  # overlaps the lenses when they nearly touch
    c.draw.line([((cx - bridge) * c.u, (y - 1) * c.u), ((cx + bridge) * c.u, (y - 1) * c.u)],
                fill=FRAME_RGB, width=w)


def _draw_nose(c: _Canvas, f: dict[str, float], skin: Sequence[int]) -> None:
    y = f["eye_y"] + 0.45 * (f["mouth_y"] - f["eye_y"])
    c.draw.arc(c.box(f["cx"], y, 1.8, 1.8), 20, 160, fill=_shade(skin, 0.7), width=c.w(0.9))


def _draw_mouth(c: _Canvas, f: dict[str, float], expression: str) -> None:
    x, y, mw = f["cx"], f["mouth_y"], f["mouth_w"]
    if expression == "neutral":  # a straight line
        c.draw.rounded_rectangle(c.box(x, y, mw / 2, 1.0), radius=c.u, fill=MOUTH_RGB)
    elif expression == "smiling":  # an open smile: lower half of an ellipse
        h, top = 0.55 * mw + 0.5, y - 2.0
        c.draw.chord(c.box(x, top, mw / 2 + 1.0, h), 0, 180, fill=MOUTH_RGB,
                     outline=LIP_RGB, width=c.w(0.7))
    else:  # surprised: an "O"
        c.draw.ellipse(c.box(x, y + 1.0, 0.22 * mw + 0.8, 0.25 * mw + 1.3), fill=MOUTH_RGB,
                       outline=LIP_RGB, width=c.w(0.7))


def feature_regions(geometry: np.ndarray, size: int = 64) -> np.ndarray:
    """Masks (float32 [N, size, size], 1 inside) of the small features of faces with normalized
    `geometry` [N, len(GEOMETRY)]: each eye with its brow and glasses lens, the glasses' bridge and
    temples, and the mouth in every expression. They cover ~17% of the image but carry four
    attributes (hair colour of bald faces is only in the brows), so a training loss can weight them
    (`train_generator.distill_loss`)."""
    geometry = np.asarray(geometry, np.float64)
    f = _frame({n: lo + geometry[:, j] * (hi - lo) for j, (n, lo, hi) in enumerate(GEOMETRY)})
    y, x = (np.mgrid[0:size, 0:size] + 0.5) * (64.0 / size)  # pixel centres in 64 px units
    x, y = x[None], y[None]
    col = lambda a: a[:, None, None]  # noqa: E731
    eye_top, eye_bottom = col(f["eye_y"] - BROW_UP - 1.0 - BROW_H / 2 - 0.5), col(f["eye_y"] + LENS_R + 0.5)
    mask = np.zeros((len(geometry), size, size), bool)
    for side in (-1, 1):
        ex = col(f["cx"] + side * f["eye_dx"])
        mask |= (abs(x - ex) <= LENS_R + 0.5) & (y >= eye_top) & (y <= eye_bottom)
    cx, mw, my = col(f["cx"]), col(f["mouth_w"]), col(f["mouth_y"])
    mask |= (abs(x - cx) <= col(f["rx"]) + 1) & (abs(y - col(f["eye_y"]) + 1) <= FRAME_W / 2 + 1)  # bridge, temples
    mask |= (abs(x - cx) <= mw / 2 + 2) & (y >= my - 0.25 * mw - 1.5) & (y <= my + 0.55 * mw + 1)  # smile, "O"
    return mask.astype(np.float32)


def render(face: Face, size: int = 64, supersample: int = 4, colours: dict | None = None) -> np.ndarray:
    """The face as uint8 [size, size, 3]: drawn at size * supersample, then box-downsampled. `colours` replaces
    the RGB of colour attributes (`COLOUR_RGB`'s keys), e.g. a hair colour the renderer's palette lacks."""
    v = face.values()
    return _draw(face, {**{name: table[v[name]] for name, table in COLOUR_RGB.items()}, **(colours or {})},
                 size, supersample)


def _draw(face: Face, colours: dict[str, Sequence[int]], size: int, supersample: int) -> np.ndarray:
    """`render` with the colour attributes' RGB given (`COLOUR_RGB`'s keys), so `colour_regions` can probe them."""
    v = face.values()
    skin, hair = colours["skin_tone"], colours["hair_color"]
    f = _face_frame(face)
    c = _Canvas(size * supersample, colours["background"])
    _draw_shoulders(c, f)
    _draw_ears(c, f, skin)
    bald = v["hair_style"] == "bald"
    if not bald:
        texture = _hair_texture(c, hair, face.seed)
        back, fringe = _hair_masks(c, f, v["hair_style"])
        c.image.paste(texture, (0, 0), back)
    _draw_face(c, f, skin)
    if not bald:
        c.image.paste(texture, (0, 0), fringe)
    _draw_brows(c, f, hair, v["expression"])
    _draw_eyes(c, f, colours["eye_color"])
    if v["glasses"] == "yes":
        _draw_glasses(c, f)
    _draw_nose(c, f, skin)
    _draw_mouth(c, f, v["expression"])
    image = c.image.reduce(supersample) if supersample > 1 else c.image
    return np.asarray(image, dtype=np.uint8)


# Probe colours: the face drawn with every colour attribute in _PROBE_BASE, then with one of them in _PROBE_ON.
# The base's channel sum stays above 150 so that hair strands are its shade, as for every hair colour but black.
_PROBE_BASE, _PROBE_ON = (64, 64, 64), (255, 255, 255)


def colour_regions(face: Face, size: int = 64, supersample: int = 4) -> dict[str, np.ndarray]:
    """Where each colour attribute (`COLOUR_RGB`) shows in the face's render: per attribute, float32 [size, size],
    the share of each pixel drawn in that attribute's colour (1 solid; ~0.8 on hair strands and 0.7-0.9 on the
    shaded outlines, nose and neck; fractions at anti-aliased edges; 0 elsewhere). Measured by drawing the face
    with that one colour changed, so it is the drawing code's own geometry, occlusions (fringe, brows, glasses,
    pupils, mouth) included. The hair colour's region holds the eyebrows, which are drawn in it (all of it on
    bald faces)."""
    base = {name: _PROBE_BASE for name in COLOUR_RGB}
    reference = _draw(face, base, size, supersample).astype(np.float32)
    span = float(np.mean(_PROBE_ON) - np.mean(_PROBE_BASE))
    return {name: np.clip((_draw(face, {**base, name: _PROBE_ON}, size, supersample) - reference).mean(-1) / span,
                          0, 1) for name in COLOUR_RGB}


def render_batch(faces: Iterable[Face], size: int = 64, supersample: int = 4) -> np.ndarray:
    """Renders as uint8 [N, size, size, 3]."""
    faces = list(faces)
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, face in enumerate(faces):
        out[i] = render(face, size, supersample)
    return out


def sample_faces(n: int, seed: int) -> list[Face]:
    """n faces from the prior, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.stack([rng.choice(len(p), size=n, p=p) for p in PRIOR.values()], axis=1)
    geometry = rng.random((n, len(GEOMETRY)))
    seeds = rng.integers(2**31, size=n)
    return [Face(tuple(int(a) for a in labels[i]), tuple(float(g) for g in geometry[i]), int(seeds[i]))
            for i in range(n)]


def sample_dataset(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 [n, size, size, 3], labels int64 [n, len(ATTRIBUTES)] (value indices),
    geometry float32 [n, len(GEOMETRY)] (normalized to [0, 1])) for n faces from the prior."""
    faces = sample_faces(n, seed)
    labels = np.array([f.attrs for f in faces], np.int64).reshape(n, len(ATTRIBUTES))
    geometry = np.array([f.geometry for f in faces], np.float32).reshape(n, len(GEOMETRY))
    return render_batch(faces, size), labels, geometry


# --- captions ----------------------------------------------------------------------------------------

NOUNS = ("face", "face", "face", "person", "portrait", "cartoon face", "character", "head")
PREFIXES = ("", "", "", "a picture of ", "a drawing of ", "a portrait of ", "a cartoon of ")
EXPRESSION_ADJ = {"neutral": ("neutral", "serious"), "smiling": ("smiling", "happy"),
                  "surprised": ("surprised", "astonished")}
EXPRESSION_WITH = {"neutral": ("a neutral expression", "a straight mouth"),
                   "smiling": ("a smile", "a big smile"),
                   "surprised": ("a surprised expression", "a surprised look")}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _hair_phrase(v: dict[str, str], say_color: bool, say_style: bool) -> str:
    """A 'with ...' phrase for the hair (not called for bald faces)."""
    style = v["hair_style"] if say_style else ""
    color = v["hair_color"] if say_color else ""
    return " ".join(w for w in (style, color, "hair") if w)


def _canonical(v: dict[str, str], name: str, r: random.Random) -> str:
    """The one-attribute phrasings that text edits use."""
    hair, style = v["hair_color"], v["hair_style"]
    if name == "hair_color":
        return f"a face with {v['hair_color']} eyebrows" if style == "bald" else f"a face with {hair} hair"
    if name == "hair_style":
        if style == "bald":
            return r.choice(("a bald face", "a face with no hair"))
        return f"a face with {style} hair"
    if name == "expression":
        return f"{_article(v['expression'])} {v['expression']} face"
    if name == "glasses":
        return "a face with glasses" if v["glasses"] == "yes" else "a face without glasses"
    if name == "eye_color":
        return f"a face with {v['eye_color']} eyes"
    if name == "skin_tone":
        return f"a face with {v['skin_tone']} skin"
    return f"a face on a {v['background']} background"


def caption(face: Face, rng: np.random.Generator | random.Random | int, names: dict[str, str] | None = None) -> str:
    """A description naming all or a random subset of the face's attributes, never wrongly. `names` replaces
    the words of some values (a face drawn with `render(..., colours=)` in a colour its palette lacks); the
    same seed draws the same wording."""
    r = rng if isinstance(rng, random.Random) else random.Random(
        int(rng.integers(2**31)) if isinstance(rng, np.random.Generator) else int(rng))
    v = {**face.values(), **(names or {})}
    mode = r.random()
    if mode < 0.3:  # one attribute, canonical phrasing
        return _canonical(v, r.choice(ATTRIBUTE_NAMES), r)
    named = list(ATTRIBUTE_NAMES) if mode < 0.45 else [n for n in ATTRIBUTE_NAMES if r.random() < 0.45]
    if not named:
        named = [r.choice(ATTRIBUTE_NAMES)]
    return _compose(v, set(named), r)


def _compose(v: dict[str, str], named: set[str], r: random.Random) -> str:
    adjectives: list[str] = []
    withs: list[str] = []
    bald = v["hair_style"] == "bald"
    if "expression" in named:
        if r.random() < 0.6:
            adjectives.append(r.choice(EXPRESSION_ADJ[v["expression"]]))
        else:
            withs.append(r.choice(EXPRESSION_WITH[v["expression"]]))
    if bald:
        if "hair_style" in named:
            if r.random() < 0.6:
                adjectives.append("bald")
            else:
                withs.append("no hair")
        if "hair_color" in named:
            withs.append(f"{v['hair_color']} eyebrows")
    elif "hair_color" in named or "hair_style" in named:
        if "hair_color" in named and "hair_style" not in named and r.random() < 0.3:
            adjectives.append(f"{v['hair_color']}-haired")
        else:
            withs.append(_hair_phrase(v, "hair_color" in named, "hair_style" in named))
    if "glasses" in named:
        withs.append(r.choice(("glasses", "thick glasses")) if v["glasses"] == "yes" else "no glasses")
    if "eye_color" in named:
        if r.random() < 0.25:
            adjectives.append(f"{v['eye_color']}-eyed")
        else:
            withs.append(f"{v['eye_color']} eyes")
    if "skin_tone" in named:
        if r.random() < 0.3:
            adjectives.append(f"{v['skin_tone']}-skinned")
        else:
            withs.append(f"{v['skin_tone']} skin")
    r.shuffle(withs)
    noun = r.choice(NOUNS)
    head = " ".join(adjectives + [noun])
    prefix = "" if noun == "portrait" else r.choice(PREFIXES)
    text = prefix + f"{_article(head)} {head}"
    if withs:
        text += " with " + _join(withs)
    if "background" in named:
        text += r.choice((" on a {} background", " against a {} background", ", {} background")).format(
            v["background"])
    return text
