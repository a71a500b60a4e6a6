"""The demo-world renderer: determinism, labels visible where they should be, geometry, captions."""
from __future__ import annotations

import random
import re

import numpy as np
import pytest

from precompute.demo.render import (
    ATTRIBUTES, BACKGROUND_RGB, EYE_RGB, GEOMETRY, GEOMETRY_NAMES, HAIR_RGB, MOUTH_RGB, PRIOR,
    SKIN_RGB, Face, caption, render, render_batch, sample_dataset, sample_faces,
)

FACES = sample_faces(60, seed=1234)


def dist(a, b) -> np.ndarray:
    return np.linalg.norm(np.asarray(a, float) - np.asarray(b, float), axis=-1)


def nearest(rgb, table: dict) -> str:
    return min(table, key=lambda k: float(dist(rgb, table[k])))


def patch(img: np.ndarray, x: float, y: float, r: int = 1) -> np.ndarray:
    """Median colour of the (2r+1)^2 pixels around the point (x, y) in 64 px units."""
    i, j = int(y), int(x)
    return np.median(img[i - r:i + r + 1, j - r:j + r + 1].reshape(-1, 3), axis=0)


def frame(face: Face) -> dict:
    g = face.geometry_px()
    top = g["face_y"] - g["face_height"] / 2
    return dict(cx=g["face_x"], top=top, chin=g["face_y"] + g["face_height"] / 2,
                rx=g["face_width"] / 2, eye_y=top + g["eye_height"], eye_dx=g["eye_spacing"] / 2)


def mask(img: np.ndarray, rgb, tol: float = 25.0) -> np.ndarray:
    return dist(img, rgb) < tol


# --- determinism -------------------------------------------------------------------------------------

def test_same_face_same_bytes():
    for face in FACES[:10]:
        again = Face(tuple(face.attrs), tuple(face.geometry), face.seed)
        assert render(face).tobytes() == render(again).tobytes()
    assert render_batch(FACES[:5]).tobytes() == render_batch(FACES[:5]).tobytes()


def test_seed_changes_hair_texture_only():
    face = Face.from_values(hair_style="long", hair_color="blonde", seed=1)
    a, b = render(face), render(Face(face.attrs, face.geometry, 2))
    assert not np.array_equal(a, b)
    changed = np.any(a != b, axis=-1)
    hair = np.any(a != render(face.with_values(hair_color="purple")), axis=-1)
    assert changed.sum() > 20 and not np.any(changed & ~hair)  # only hair pixels change


@pytest.mark.parametrize("name", list(ATTRIBUTES))
def test_every_attribute_value_changes_the_image(name):
    base = FACES[0].with_values(hair_style="short")
    images = [render(base.with_values(**{name: v})).tobytes() for v in ATTRIBUTES[name]]
    assert len(set(images)) == len(images)


def test_every_geometry_parameter_changes_the_image():
    base = FACES[1]
    for name in GEOMETRY_NAMES:
        assert not np.array_equal(render(base.with_geometry(**{name: 0.0})),
                                  render(base.with_geometry(**{name: 1.0}))), name


def test_output_format():
    img = render(FACES[0])
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert render(FACES[0], size=32, supersample=2).shape == (32, 32, 3)
    assert render_batch(FACES[:3]).shape == (3, 64, 64, 3)


# --- labels are visible --------------------------------------------------------------------------------

def test_palettes_are_distinct():
    for table in (HAIR_RGB, BACKGROUND_RGB, EYE_RGB, SKIN_RGB):
        colours = list(table.values())
        for i in range(len(colours)):
            for j in range(i):
                assert dist(colours[i], colours[j]) >= 60, table
    hair_bg = list(HAIR_RGB.values()) + list(BACKGROUND_RGB.values())
    for i in range(len(hair_bg)):
        for j in range(i):
            assert dist(hair_bg[i], hair_bg[j]) >= 40


def test_background_corners():
    for face in FACES:
        img = render(face)
        for y, x in ((0, 0), (0, 63), (2, 2)):
            assert dist(img[y, x], BACKGROUND_RGB[face.value("background")]) < 3


def test_hair_above_the_face():
    for face in FACES:
        img, f = render(face), frame(face)
        colour = patch(img, f["cx"], f["top"] - 2)
        if face.value("hair_style") == "bald":
            assert dist(colour, BACKGROUND_RGB[face.value("background")]) < 5
        else:
            assert nearest(colour, HAIR_RGB) == face.value("hair_color")
            assert dist(colour, HAIR_RGB[face.value("hair_color")]) < 30


def test_long_hair_falls_beside_the_face():
    for face in FACES:
        img, f = render(face), frame(face)
        for side in (-1, 1):
            colour = patch(img, f["cx"] + side * (f["rx"] + 3), f["chin"] - 4, r=0)
            if face.value("hair_style") == "long":
                assert dist(colour, HAIR_RGB[face.value("hair_color")]) < 30
            else:
                assert dist(colour, BACKGROUND_RGB[face.value("background")]) < 5


def test_eyebrows_show_hair_colour_even_when_bald():
    for face in FACES:
        face = face.with_values(hair_style="bald")
        img, f = render(face), frame(face)
        raised = 1.0 if face.value("expression") == "surprised" else 0.0
        candidates = HAIR_RGB | {"skin": SKIN_RGB[face.value("skin_tone")]}
        for side in (-1, 1):
            colour = patch(img, f["cx"] + side * f["eye_dx"], f["eye_y"] - 8.5 - raised, r=0)
            assert nearest(colour, candidates) == face.value("hair_color")


def test_skin_is_the_commonest_face_colour():
    for face in FACES:
        img, f = render(face), frame(face)
        x0, x1 = int(f["cx"] - f["rx"] / 2), int(f["cx"] + f["rx"] / 2)
        region = img[int(f["eye_y"]):int(f["chin"]) - 2, x0:x1]
        colours, counts = np.unique(region.reshape(-1, 3), axis=0, return_counts=True)
        assert dist(colours[counts.argmax()], SKIN_RGB[face.value("skin_tone")]) < 3


@pytest.mark.parametrize("glasses", ["no", "yes"])
def test_eye_colour_visible(glasses):
    for face in FACES:
        face = face.with_values(glasses=glasses)
        img, f = render(face), frame(face)
        for side in (-1, 1):
            x, y = int(f["cx"] + side * f["eye_dx"]), int(f["eye_y"])
            region = img[y - 3:y + 4, x - 3:x + 4]
            counts = {name: int(mask(region, rgb, 30).sum()) for name, rgb in EYE_RGB.items()}
            label = counts.pop(face.value("eye_color"))
            assert label >= 4 and label > 2 * max(counts.values()), (face, label, counts)


def test_glasses_darken_the_frame():
    for face in FACES:
        f = frame(face)
        plain = render(face.with_values(glasses="no")).astype(float).mean(-1)
        specs = render(face.with_values(glasses="yes")).astype(float).mean(-1)
        points = [(f["cx"] + s * f["eye_dx"], f["eye_y"] + dy) for s in (-1, 1) for dy in (-5.2, 5.2)]
        points.append((f["cx"], f["eye_y"] - 1))  # bridge
        for x, y in points:  # the darkest pixel near each point
            i, j = int(y), int(x)
            k = np.unravel_index(specs[i - 1:i + 2, j - 1:j + 2].argmin(), (3, 3))
            dark, before = specs[i - 1 + k[0], j - 1 + k[1]], plain[i - 1 + k[0], j - 1 + k[1]]
            assert dark < 60 and before - dark > 50, (face, x, y, dark, before)


def mouth_box(img: np.ndarray, face: Face) -> tuple[int, int]:
    """(rows, columns) spanned by mouth-coloured pixels below the eyes."""
    f = frame(face)
    x0, x1 = int(f["cx"] - f["rx"] + 3), int(f["cx"] + f["rx"] - 2)
    m = mask(img[int(f["eye_y"]) + 4:int(f["chin"]) + 1, x0:x1], MOUTH_RGB, 40)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    return (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) if len(rows) else (0, 0)


def test_mouth_shapes_match_expression():
    for face in FACES:
        h, w = mouth_box(render(face), face)
        expression = face.value("expression")
        if expression == "neutral":
            assert h <= 3 and w >= 7, (h, w)
        elif expression == "smiling":
            assert 4 <= h < w, (h, w)
        else:
            assert h > w >= 3, (h, w)


# --- geometry -------------------------------------------------------------------------------------------

def skin_stats(face: Face) -> tuple[float, float, int, int]:
    """(centroid x, centroid y, width, height) of the face-coloured pixels."""
    ys, xs = np.nonzero(mask(render(face), SKIN_RGB[face.value("skin_tone")], 12))
    return xs.mean(), ys.mean(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def eye_centres(face: Face) -> np.ndarray:
    """[[x, y] left, [x, y] right] centroids of the iris-coloured pixels."""
    ys, xs = np.nonzero(mask(render(face), EYE_RGB[face.value("eye_color")], 30))
    left = xs < xs.mean()
    return np.array([[xs[left].mean(), ys[left].mean()], [xs[~left].mean(), ys[~left].mean()]])


def span(name: str) -> float:
    return next(hi - lo for n, lo, hi in GEOMETRY if n == name)


def test_geometry_moves_and_resizes_the_face():
    base = Face.from_values(hair_style="bald", glasses="no", expression="neutral", skin_tone="tan")

    def delta(name, measure):
        low, high = base.with_geometry(**{name: 0.0}), base.with_geometry(**{name: 1.0})
        return np.asarray(measure(high), float) - np.asarray(measure(low), float)

    assert delta("face_x", skin_stats)[0] == pytest.approx(span("face_x"), abs=1.0)
    assert delta("face_x", skin_stats)[1] == pytest.approx(0, abs=0.5)
    assert delta("face_y", skin_stats)[1] == pytest.approx(span("face_y"), abs=1.5)
    assert delta("face_width", skin_stats)[2] == pytest.approx(span("face_width"), abs=2)
    assert delta("face_height", skin_stats)[3] == pytest.approx(span("face_height"), abs=2)
    assert delta("eye_spacing", lambda face: np.diff(eye_centres(face)[:, 0])[0]) \
        == pytest.approx(span("eye_spacing"), abs=1.0)
    assert delta("eye_height", lambda face: eye_centres(face)[:, 1].mean()) \
        == pytest.approx(span("eye_height"), abs=1.0)
    assert delta("mouth_width", lambda face: mouth_box(render(face), face)[1]) \
        == pytest.approx(span("mouth_width"), abs=1.5)


# --- captions ---------------------------------------------------------------------------------------

RULES = {
    "hair_color": lambda v: rf"\b{v}(?:-haired| hair| eyebrows)\b",
    "hair_style": lambda v: {"short": r"\bshort\b", "long": r"\blong\b",
                             "bald": r"\bbald\b|\bno hair\b"}[v],
    "expression": lambda v: {"neutral": r"\bneutral\b|\bserious\b|\bstraight mouth\b",
                             "smiling": r"\bsmil|\bhappy\b",
                             "surprised": r"\bsurprised\b|\bastonished\b"}[v],
    "glasses": lambda v: {"no": r"\b(?:no|without) glasses\b",
                          "yes": r"(?<!no )(?<!without )\b(?:thick )?glasses\b"}[v],
    "eye_color": lambda v: rf"\b{v}(?: eyes|-eyed)\b",
    "skin_tone": lambda v: rf"\b{v}(?: skin|-skinned)\b",
    "background": lambda v: rf"\b{v} background\b",
}
VALUE_WORDS = {w for values in ATTRIBUTES.values() for w in values if w not in ("no", "yes")}


def mentions(text: str) -> dict[str, set[str]]:
    """Values each attribute is said to have, read from the caption with our own patterns. A value
    word that no pattern explains (an attribute described in an unexpected way) fails."""
    found = {name: set() for name in ATTRIBUTES}
    leftover = text
    for name, values in ATTRIBUTES.items():
        for v in values:
            if re.search(RULES[name](v), text):
                found[name].add(v)
            leftover = re.sub(RULES[name](v), " ", leftover)
    stray = [w for w in re.findall(r"[a-z]+", leftover) if w in VALUE_WORDS]
    assert not stray, (text, stray)
    return found


def test_mention_parser_catches_contradictions():
    assert mentions("a face with long red hair")["hair_color"] == {"red"}
    assert mentions("a face with long red hair")["hair_style"] == {"long"}
    assert mentions("a face without glasses")["glasses"] == {"no"}
    assert mentions("a face with thick glasses and blue eyes")["glasses"] == {"yes"}
    assert mentions("a bald face on a pink background")["background"] == {"pink"}
    with pytest.raises(AssertionError):
        mentions("a purple face")


def test_captions_never_contradict_labels_and_cover_all_values():
    r, rng = random.Random(0), np.random.default_rng(0)
    seen = {name: set() for name in ATTRIBUTES}
    n_named, texts = set(), []
    for _ in range(3000):
        face = Face.sample(rng)
        text = caption(face, r)
        texts.append(text)
        found = mentions(text)
        for name, values in found.items():
            assert values <= {face.value(name)}, (text, face.values())
            seen[name] |= values
        if face.value("hair_style") == "bald":  # never a hair colour or length
            assert not re.search(r"\w+[- ]hair", text.replace("no hair", "")), text
        n_named.add(sum(bool(v) for v in found.values()))
    assert seen == {name: set(values) for name, values in ATTRIBUTES.items()}
    assert {1, len(ATTRIBUTES)} <= n_named
    assert len(set(texts)) > 1500  # varied
    for phrase in ["a face with purple hair", "a smiling face", "a face with glasses",
                   "a face with blue eyes", "a bald face", "a face with no hair",
                   "a face on a pink background", "a surprised face", "a face with long hair"]:
        assert phrase in texts, phrase


def test_caption_is_deterministic_for_a_seed():
    assert caption(FACES[0], 5) == caption(FACES[0], 5)
    assert caption(FACES[0], np.random.default_rng(3)) == caption(FACES[0], np.random.default_rng(3))


# --- datasets -----------------------------------------------------------------------------------------

def test_sample_dataset_shapes_and_prior():
    images, labels, geometry = sample_dataset(3000, seed=7)
    assert images.shape == (3000, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (3000, len(ATTRIBUTES)) and np.issubdtype(labels.dtype, np.integer)
    assert geometry.shape == (3000, len(GEOMETRY)) and geometry.dtype == np.float32
    assert geometry.min() >= 0 and geometry.max() <= 1
    assert np.allclose(geometry.mean(0), 0.5, atol=0.03)
    for k, (name, p) in enumerate(PRIOR.items()):
        freq = np.bincount(labels[:, k], minlength=len(p)) / len(labels)
        assert np.allclose(freq, p, atol=0.035), (name, freq)
    faces = sample_faces(3000, seed=7)[:20]  # the images are the renders of the labelled faces
    assert np.array_equal(labels[:20], [f.attrs for f in faces])
    assert np.array_equal(images[:20], render_batch(faces))
    assert not np.array_equal(sample_dataset(4, seed=8)[0], images[:4])
