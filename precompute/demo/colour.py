"""Colour-aware success for the demo world's colour attributes (DESIGN §8): what colour a person sees.

The classifier knows only the renderer's values, so it reads blue hair as purple, the nearest it knows. Here an
attribute's colour is read where the renderer draws that attribute (`render.colour_regions` of the face the
image shows) as the median CIELAB colour of the region's pixels, and named by the nearest (CIEDE2000) exemplar:
the renderer's own values and colours it never draws there (`OFF_PALETTE`),
which an edit can produce. Spill: how much of the picture outside the region the edit changed visibly.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from skimage.color import deltaE_ciede2000, rgb2lab

from .render import ATTRIBUTES, COLOUR_RGB, Face, colour_regions

# More exemplars than the renderer's colours, as (name, RGB) in the renderer's style (its saturation; pastel
# lightness for backgrounds): mostly colours the renderer never draws for the attribute, named as a person would,
# which an edit can produce. Left out where a name is another word for a renderer value: yellow hair is its
# "blonde" (a saturated yellow), white hair its "gray". Eyes have no gray or black: the generator draws every
# iris dull and dark at 64 px (its green eyes: median L* 30, chroma 18; the renderer's: 61, 74), which a gray
# or black would claim.
OFF_PALETTE: dict[str, tuple[tuple[str, tuple[int, int, int]], ...]] = {
    # What a hair-colour edit goes wrong to: the hues next to each renderer colour (blue and pink beside purple,
    # orange beside red and blonde, cyan and green). Blue and purple, the pair the purple-hair edits confuse, at
    # three lightnesses each (the renderer's purple is the middle one): CIELAB bends dark blues toward purple
    # (navy reads purple without a dark blue, indigo then blue without a dark purple), and the generator's light,
    # desaturated blues and lavenders read gray, or each other, without their own. No magenta: CIELAB gives
    # magenta and purple one hue; a person calls a dark or mid fuchsia purple and a light one pink.
    "hair_color": (("blue", (40, 90, 210)), ("blue", (25, 35, 110)), ("blue", (100, 140, 200)),
                   ("purple", (70, 20, 110)), ("purple", (160, 130, 220)), ("cyan", (20, 170, 190)),
                   ("green", (50, 150, 60)), ("pink", (240, 140, 185)), ("orange", (245, 140, 20))),
    # The hues next to the renderer's and real eyes' amber.
    "eye_color": (("purple", (130, 60, 180)), ("cyan", (20, 175, 190)), ("amber", (215, 150, 30)),
                  ("red", (190, 30, 40))),
    # Tints an edit spills onto the face (a purple-hair mapper turns it magenta) and unnatural skin. No orange or
    # pale pink: the renderer's tan is orange-brown and its light skin pink-beige.
    "skin_tone": (("magenta", (215, 110, 190)), ("purple", (150, 110, 200)), ("blue", (120, 150, 220)),
                  ("green", (140, 190, 120)), ("gray", (160, 160, 160)), ("yellow", (235, 215, 110))),
    # The pastel backgrounds the renderer could have had. No saturated magenta: hot pink is pink to a person.
    "background": (("purple", (200, 175, 240)), ("orange", (250, 200, 150)), ("cyan", (165, 235, 235)),
                   ("gray", (190, 190, 190))),
}
# The pixels a colour is read from: those drawn (nearly) solid in the attribute's colour. Not the anti-aliased
# edges, which blend with a neighbour (half of a brow's pixels at 64 px: a bald face's black brows read brown at
# 0.5), nor hair strands and shaded outlines, which are darker shades of it.
REGION_COVERAGE = 0.9
# Spill leaves out a margin this many pixels wide around everything the attribute touches (blur of the
# generator's 64 px images, a pixel or two of error in the classifier's geometry).
SPILL_MARGIN = 2
# A pixel "changed" for spill when its CIEDE2000 difference before/after the edit exceeds this: below the smallest
# difference between two colours the renderer tells apart (16, its yellow and green backgrounds), so any change of
# colour name counts; above most of the generator's redrawing of what an edit leaves alone (method C's smiling and
# glasses edits, which change small features only, move 16-30% of the pixels outside the hair by more than 3, 5%
# by more than 10; N 100, seed 0).
SPILL_DELTA_E = 10.0
COLOUR_ATTRIBUTES = tuple(COLOUR_RGB)
# Attributes drawn twice, once each side of the face, read per side: one blue and one green eye are not blue eyes
# (method C's blue-eyes edit often colours one iris only), and their median is neither colour. "mixed" when the
# sides differ.
BY_SIDE = ("eye_color",)
MIXED = "mixed"


def region_median(lab: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Median CIELAB [N, 3] (per channel) over each image's region; lab [N, H, W, 3], region bool [N, H, W].
    The median ignores hair strands, highlights and misregistered edge pixels where a mean would not. Regions are
    never empty: every face shows brows, irises, skin and background."""
    return np.stack([np.median(l[r], 0) for l, r in zip(lab, region)])


def _palette(attribute: str) -> tuple[tuple[str, ...], np.ndarray]:
    names_rgb = [(v, COLOUR_RGB[attribute][v]) for v in ATTRIBUTES[attribute]] + list(OFF_PALETTE[attribute])
    return tuple(n for n, _ in names_rgb), rgb2lab(np.array([rgb for _, rgb in names_rgb], np.uint8)[None])[0]


# Per colour attribute, its named exemplars: names and CIELAB [k, 3], the renderer's values first (ATTRIBUTES
# order), then OFF_PALETTE's; fixed at import. The renderer's are its RGB constants, not calibrated on renders:
# the region holds only pixels drawn solid, so the median read on a render is its RGB exactly (CIEDE2000 0.0 on
# 24 prior faces per value; tests/test_colour_success.py checks it). With edges and strands in the region (0.5
# coverage) renders would have needed calibrating: the irises' median moved by up to 1.5.
PALETTES = {attribute: _palette(attribute) for attribute in COLOUR_RGB}


def name_colours(lab: np.ndarray, attribute: str) -> np.ndarray:
    """The name of the nearest exemplar (CIEDE2000) in `PALETTES[attribute]` of each CIELAB colour [N, 3]."""
    names, exemplars = PALETTES[attribute]
    return np.array(names)[deltaE_ciede2000(lab[:, None, :], exemplars[None, :, :]).argmin(1)]


def _dilate(masks: np.ndarray, r: int) -> np.ndarray:
    """bool [N, H, W] grown by r pixels (a square)."""
    padded = np.pad(masks, ((0, 0), (r, r), (r, r)))
    return sliding_window_view(padded, (2 * r + 1, 2 * r + 1), axis=(1, 2)).any((-2, -1))


class ColourJudge:
    """Reads the colour attributes of images of `faces` (the faces the originals show) and scores colour edits.

    Regions come from the faces, not from each edited image: an edit should not move the face, and an edit that
    does should not redraw the region to fit its own result."""

    def __init__(self, faces: list[Face], originals: np.ndarray):
        size = originals.shape[1]
        regions = [colour_regions(f, size) for f in faces]
        self.inside = {a: np.stack([r[a] >= REGION_COVERAGE for r in regions]) for a in COLOUR_ATTRIBUTES}
        self.outside = {a: ~_dilate(np.stack([r[a] > 0 for r in regions]), SPILL_MARGIN) for a in COLOUR_ATTRIBUTES}
        x = (np.arange(size) + 0.5) * 64 / size  # pixel centres in the renderer's 64 px units
        left = x[None, None, :] < np.array([f.geometry_px()["face_x"] for f in faces])[:, None, None]
        self.parts = {a: [self.inside[a] & left, self.inside[a] & ~left] if a in BY_SIDE else [self.inside[a]]
                      for a in COLOUR_ATTRIBUTES}
        self.lab = rgb2lab(originals)
        self.before = {a: self.read(self.lab, a) for a in COLOUR_ATTRIBUTES}

    def read(self, lab: np.ndarray, attribute: str) -> np.ndarray:
        """Colour names [N] of the attribute in images given as CIELAB [N, H, W, 3] (MIXED where its parts differ)."""
        first, *others = [name_colours(region_median(lab, part), attribute) for part in self.parts[attribute]]
        for names in others:
            first = np.where(first == names, first, MIXED)
        return first

    def score(self, edited: np.ndarray, attribute: str, value: str) -> dict:
        """success: share of the images whose colour was not `value` that show it after the edit; read as: the
        colour most often read after the edit among those, and its share; spill: mean share of the pixels outside
        the attribute's region (and its margin) whose colour changed by more than SPILL_DELTA_E (CIEDE2000).
        Spill is a share, not a mean difference, so a strong tint of the face and a faint change of everything
        are told apart, and it reads as "this much of the rest of the picture visibly changed"."""
        lab = rgb2lab(edited)
        after = self.read(lab, attribute)
        eligible = self.before[attribute] != value
        names, counts = np.unique(after[eligible], return_counts=True)
        changed = (deltaE_ciede2000(self.lab, lab) > SPILL_DELTA_E) & self.outside[attribute]
        spill = changed.sum((1, 2)) / np.maximum(self.outside[attribute].sum((1, 2)), 1)
        return {"eligible": int(eligible.sum()),
                "success": float((after[eligible] == value).mean()) if eligible.any() else float("nan"),
                "read_as": (str(names[counts.argmax()]), float(counts.max() / eligible.sum())) if eligible.any()
                else ("-", float("nan")),
                "spill": float(spill.mean())}
