"""Colour-aware success (precompute/demo/colour.py): the colour read where the renderer draws an attribute is the
colour a person names, on renders of every renderer colour, on renders recoloured to colours it never draws, and
on the known case (the demo bundle's purple-hair edit turns hair blue)."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage.color import deltaE_ciede2000, rgb2lab

from precompute.demo import colour
from precompute.demo.render import (
    ATTRIBUTES, COLOUR_RGB, colour_regions, feature_regions, render, render_batch, sample_faces,
)

FACES = sample_faces(24, seed=7)  # the renderer's colours are calibrated on other faces (seed 0)
DEMO = Path(__file__).resolve().parents[1] / "artifacts" / "demo"


@pytest.fixture(scope="module")
def judge():
    return colour.ColourJudge(FACES, render_batch(FACES))


def reads(judge, faces, attribute) -> list[str]:
    return list(judge.read(rgb2lab(render_batch(faces)), attribute))


def test_regions_are_where_the_colour_is_drawn():
    for face in FACES[:6] + [FACES[0].with_values(hair_style="bald")]:
        regions = colour_regions(face)
        base = render(face).astype(int)
        for attribute, table in COLOUR_RGB.items():
            changed = np.zeros(base.shape[:2], bool)
            for value in table:
                changed |= np.abs(render(face.with_values(**{attribute: value})).astype(int) - base).max(-1) > 0
            # Every pixel the colour reaches is in the region, and every pixel mostly of it changes with it.
            assert not (changed & (regions[attribute] == 0)).any(), attribute
            assert changed[regions[attribute] >= colour.REGION_COVERAGE].all(), attribute
    # A bald face's hair colour is its brows, inside the small features the generator's loss weighs up.
    bald = colour_regions(FACES[0].with_values(hair_style="bald"))["hair_color"]
    features = feature_regions(np.array([FACES[0].geometry]))[0]
    assert bald.sum() > 20 and not ((bald > 0) & (features == 0)).any()


@pytest.mark.parametrize("attribute", colour.COLOUR_ATTRIBUTES)
def test_every_renderer_colour_reads_as_itself(judge, attribute):
    names, exemplars = colour.PALETTES[attribute]
    for value in ATTRIBUTES[attribute]:
        faces = [f.with_values(**{attribute: value}) for f in FACES]
        # The median on renders is the renderer's RGB, so its exemplars need no calibrating on renders ...
        medians = colour.region_median(rgb2lab(render_batch(faces)), judge.inside[attribute])
        assert deltaE_ciede2000(medians, exemplars[names.index(value)][None]).max() < 0.5
        # ... and it is named as itself.
        assert reads(judge, faces, attribute) == [value] * len(FACES)


@pytest.mark.parametrize("attribute, value, rgb, name", [
    # The renderer's purple hair drawn in blues, from navy to sky: blue, not the purple the classifier reads.
    ("hair_color", "purple", (0, 0, 255), "blue"), ("hair_color", "purple", (65, 105, 225), "blue"),
    ("hair_color", "purple", (0, 0, 128), "blue"), ("hair_color", "purple", (70, 130, 180), "blue"),
    ("hair_color", "purple", (30, 144, 255), "blue"),
    # ... and in other purples, which stay purple.
    ("hair_color", "purple", (148, 0, 211), "purple"), ("hair_color", "purple", (75, 0, 130), "purple"),
    ("hair_color", "purple", (147, 112, 219), "purple"),
    ("hair_color", "brown", (255, 105, 180), "pink"), ("hair_color", "brown", (0, 100, 0), "green"),
    ("hair_color", "brown", (0, 128, 128), "cyan"), ("hair_color", "brown", (255, 140, 0), "orange"),
    ("eye_color", "blue", (150, 80, 220), "purple"), ("eye_color", "blue", (0, 150, 150), "cyan"),
    ("eye_color", "blue", (255, 191, 0), "amber"),
    ("skin_tone", "light", (230, 120, 220), "magenta"), ("skin_tone", "light", (150, 180, 240), "blue"),
    ("skin_tone", "light", (170, 170, 170), "gray"),
    ("background", "pink", (221, 160, 221), "purple"), ("background", "pink", (255, 218, 185), "orange"),
    ("background", "pink", (175, 238, 238), "cyan"), ("background", "pink", (255, 105, 180), "pink"),
])
def test_recoloured_renders_read_as_their_new_colour(judge, monkeypatch, attribute, value, rgb, name):
    monkeypatch.setitem(COLOUR_RGB[attribute], value, rgb)
    assert reads(judge, [f.with_values(**{attribute: value}) for f in FACES], attribute) == [name] * len(FACES)


def test_eyes_are_read_one_side_at_a_time(judge):
    """One blue and one green iris are not blue eyes (method C's blue-eyes edit often colours one only)."""
    blue = render_batch([f.with_values(eye_color="blue") for f in FACES])
    green = render_batch([f.with_values(eye_color="green") for f in FACES])
    x = np.arange(64) + 0.5
    left = np.stack([x < f.geometry_px()["face_x"] for f in FACES])[:, None, :, None]  # [N, 1, W, 1]
    odd = np.where(left, green, blue)
    assert list(judge.read(rgb2lab(odd), "eye_color")) == [colour.MIXED] * len(FACES)
    assert judge.score(odd, "eye_color", "blue")["success"] == 0.0
    assert judge.score(blue, "eye_color", "blue")["success"] == 1.0


def test_score_counts_success_and_spill(judge):
    originals = render_batch(FACES)
    purple = render_batch([f.with_values(hair_color="purple") for f in FACES])
    row = judge.score(purple, "hair_color", "purple")
    eligible = sum(f.value("hair_color") != "purple" for f in FACES)
    assert row == {"eligible": eligible, "success": 1.0, "read_as": ("purple", 1.0), "spill": 0.0}
    assert judge.score(originals, "hair_color", "purple")["success"] == 0.0
    # The face tinted as well: spill counts its solid skin, at most all the skin outside the hair's margin.
    tinted = render_batch([f.with_values(hair_color="purple", skin_tone="dark" if f.value("skin_tone") == "light"
                                         else "light") for f in FACES])
    spill = judge.score(tinted, "hair_color", "purple")["spill"]
    regions = [colour_regions(f)["skin_tone"] for f in FACES]
    outside = judge.outside["hair_color"]
    share = lambda masks: np.mean([(m & o).sum() / o.sum() for m, o in zip(masks, outside)])  # noqa: E731
    assert share([r == 1 for r in regions]) <= spill <= share([r > 0 for r in regions])
    assert spill > 0.1
    # Blurred like the generator's images, a recoloured edge stays within the margin around the region.
    def blur(images):
        return np.stack([np.asarray(Image.fromarray(image).filter(ImageFilter.BoxBlur(1))) for image in images])

    assert colour.ColourJudge(FACES, blur(originals)).score(blur(purple), "hair_color", "purple")["spill"] == 0.0
    # Recolouring the whole background spills onto nothing else.
    green = render_batch([f.with_values(background="green") for f in FACES])
    assert judge.score(green, "background", "green")["spill"] == 0.0


@pytest.mark.skipif(not (DEMO / "generator.json").is_file(), reason="needs the demo models (artifacts/demo)")
def test_the_known_case_blue_hair_the_classifier_calls_purple():
    """Issue 25's known case: an edit that draws blue hair, which the classifier (it knows no blue hair) calls
    purple; the colour read says blue. When the issue was filed the demo's purple-hair direction drew it (at the
    setting below); since the demo CLIP has seen blue hair (off-palette twins), the direction for "a face with
    blue hair" does, and the purple one at the same setting draws purple."""
    from precompute import edit_eval as ev

    world = ev.DemoWorld.load(DEMO)
    purple = replace(ev.find_edits(["purple hair"])[0], neutral="a face", alpha=5.0, beta=0.35)
    blue = replace(purple, target="a face with blue hair")
    wplus = ev.sample_wplus(world.gen, 50, seed=0, psi=0.7)
    rows, _ = ev.evaluate_edits(world.gen, world.classifier, [blue, purple], world.methods("C", None, None),
                                wplus=wplus, examples=0, progress=False)
    blue_row, purple_row = rows
    assert blue_row["success (classifier)"] > 0.8 and blue_row["success"] < 0.1
    assert blue_row["read_as"][0] == "blue" and blue_row["read_as"][1] > 0.6
    assert purple_row["read_as"][0] == "purple" and purple_row["success"] > 0.5
