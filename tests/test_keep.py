"""The keep term (precompute/demo/keep.py, styleclip_losses.keep_loss) of methods B and A on the demo world."""
from pathlib import Path

import numpy as np
import pytest
import torch

from precompute.checkpoints import load_generator
from precompute.clip_model import load_clip
from precompute.demo.keep import IRIS_WEIGHT, KeepMasks, check_attribute, keep_mask, region
from precompute.demo.render import Face, render, sample_faces
from precompute.demo.train_generator import z_to_face
from precompute.mapper_training import MapperTrainConfig, train_mapper
from precompute.styleclip_losses import keep_loss

DEMO = Path(__file__).resolve().parents[1] / "artifacts" / "demo"


def _face(**values) -> Face:
    face = next(f for f in sample_faces(50, 7) if f.value("hair_style") != "bald" and f.value("glasses") == "no")
    return face.with_values(**values)


@pytest.mark.parametrize("attribute,start,value", [("hair_color", "black", "purple"), ("hair_color", "purple", "black"),
                                                   ("expression", "neutral", "smiling"), ("glasses", "no", "yes"),
                                                   ("glasses", "yes", "no")])
def test_mask_frees_every_pixel_the_edit_draws_and_keeps_the_rest(attribute, start, value):
    """Whichever value the face has: the region is the attribute's, not the change to one value."""
    face = _face(**{attribute: start})
    mask = keep_mask(face, attribute)
    drawn = np.abs(render(face.with_values(**{attribute: value})).astype(int) - render(face)).sum(-1) > 0
    assert drawn.sum() > 20 and (mask[drawn] == 0).mean() > 0.97  # all but anti-aliasing noise at its edge
    assert mask[0, 0] == 1 and mask[0, -1] == 1  # the background's corners are kept
    assert 0.02 < (mask == 0).mean() < 0.6  # the attribute's region and its margin, not the picture
    np.testing.assert_array_equal(mask == 0, keep_mask(face.with_values(**{attribute: value}), attribute) == 0)


def test_irises_weigh_more_outside_the_region():
    face = _face(hair_color="purple")
    mask = keep_mask(face, "hair_color")
    iris = region(face, "eye_color")
    assert iris.sum() > 20 and (mask[iris] == IRIS_WEIGHT).all() and (mask[~iris & (mask > 0)] == 1).all()
    assert (keep_mask(face, "eye_color")[iris] == 0).all()  # an eye-colour edit may change them


def test_masks_come_from_the_face_each_code_names():
    z = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    masks = KeepMasks("hair_color")(z)
    assert masks.shape == (3, 1, 64, 64) and masks.dtype == torch.float32
    attrs, geometry = z_to_face(z.numpy())
    for m, a, g in zip(masks, attrs, geometry):
        face = Face(tuple(int(v) for v in a), tuple(float(x) for x in g))
        np.testing.assert_array_equal(m[0].numpy(), keep_mask(face, "hair_color"))


@pytest.mark.parametrize("attribute", ["hair", "hair_color=purple", "", "geometry"])
def test_unknown_attributes_name_the_choices(attribute):
    with pytest.raises(ValueError, match="attribute of the demo world .*hair_color, hair_style"):
        check_attribute(attribute)
    assert check_attribute("glasses") == "glasses"


def test_keep_loss_is_the_weighted_mean_squared_change():
    source = torch.zeros(2, 3, 4, 4)
    edited = torch.zeros(2, 3, 4, 4)
    edited[0, :, 0, 0] = 2.0  # a free pixel: no cost
    edited[0, :, 1, 1] = 1.0  # a kept pixel of weight 3
    edited[1] = 0.5
    weights = torch.ones(2, 1, 4, 4)
    weights[0, 0, 0, 0] = 0.0
    weights[0, 0, 1, 1] = 3.0
    expected = torch.tensor([3 * 3 * 1.0 / (3 * (15 - 1 + 3)), 0.25])
    torch.testing.assert_close(keep_loss(edited, source, weights), expected)


def test_config_needs_a_positive_weight_and_masks():
    for weight in (0.0, -1.0):
        with pytest.raises(ValueError, match="keep term needs a positive weight"):
            MapperTrainConfig("a face with glasses", keep_weight=weight, keep="glasses")
    MapperTrainConfig("a face with glasses", keep_weight=0.0)  # no keep term: its weight is unused
    with pytest.raises(ValueError, match="needs keep_masks"):
        train_mapper(*(None,) * 2, MapperTrainConfig("p", keep="glasses"), "unused")


def test_keep_term_holds_the_pixels_outside_the_region(tmp_path):
    """The same mapper run with and without the term (demo world, purple hair): the kept pixels change less."""
    gen, clip = load_generator(DEMO / "generator.json"), load_clip(weights=DEMO / "clip.json")
    KeepMasks.check_generator(gen)
    masks = KeepMasks("hair_color")
    changes = {}
    for weight in (0.0, 2000.0):
        cfg = MapperTrainConfig("a face with purple hair", steps=40, batch=4, l2_weight=0.0, clip_views=2,
                                keep_weight=weight, keep="hair_color" if weight else "")
        mapper, info = train_mapper(gen, clip, cfg, tmp_path / str(weight), progress=False,
                                    keep_masks=masks if weight else None)
        assert len(info["history"][-1]) == 4 + bool(weight)  # step, loss, clip, l2 [, keep]
        assert info["terms"] == ["loss", "clip", "l2"] + ["keep"] * bool(weight)
        z = torch.randn(16, 128, generator=torch.Generator().manual_seed(123))
        with torch.no_grad():
            w = gen.wplus_from_z(z, 0.7)
            changes[weight] = keep_loss(gen(mapper.edit(w)), gen(w), masks(z)).mean().item()
    assert changes[2000.0] < 0.5 * changes[0.0], changes


def test_method_a_keep_term_holds_the_pixels_outside_the_region():
    """Method A with and without the term, the same start (demo world, glasses): the kept pixels change less."""
    from precompute.demo.keep import faces_of_codes, keep_weights
    from precompute.optimization import OptimizeConfig, optimize_latents

    gen, clip = load_generator(DEMO / "generator.json"), load_clip(weights=DEMO / "clip.json")
    z = torch.randn(3, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        w0 = gen.wplus_from_z(z, 0.7)
        source = gen(w0)
    keep = keep_weights(faces_of_codes(z), "glasses")
    changes = {}
    for weight in (0.0, 2000.0):
        w, history = optimize_latents(gen, clip, "a face with glasses", w0, OptimizeConfig(steps=20, l2=0.0,
                                      keep_weight=weight), progress=False, keep=keep)
        assert ("keep" in history[0]) == bool(weight)
        with torch.no_grad():
            changes[weight] = keep_loss(gen(w), source, keep).mean().item()
    assert changes[2000.0] < 0.5 * changes[0.0], changes
    with pytest.raises(ValueError, match="one weight map per latent"):
        optimize_latents(gen, clip, "a face with glasses", w0, OptimizeConfig(steps=1, keep_weight=1.0), progress=False)


def test_evaluation_gives_method_a_the_faces_its_latents_show(models):
    """Sampled demo latents: the faces their codes name; another generator's: none, and the keep term says so."""
    from precompute import edit_eval as ev
    from precompute.demo.classifier import load_classifier
    from precompute.optimization import OptimizeConfig

    seen = []

    class Spy(ev.Optimization):
        def __call__(self, wplus, spec, faces=None):
            seen.append(faces)
            return super().__call__(wplus, spec, faces)

    gen, clip = load_generator(DEMO / "generator.json"), load_clip(weights=DEMO / "clip.json")
    classifier = load_classifier(DEMO / "classifier.json")
    spy = Spy(gen, clip, OptimizeConfig(steps=1, keep_weight=1.0))
    ev.evaluate_edits(gen, classifier, ev.find_edits(["glasses", "smiling"]), [spy], n=3, seed=4, examples=2,
                      progress=False)
    assert seen[0] == seen[1] == ev.faces_of_codes(ev.sample_codes(gen, 3, 4))  # every edit's
    other = load_generator(models["generator"])
    with pytest.raises(ValueError, match="keep term needs the faces"):
        ev.Optimization(other, clip, OptimizeConfig(steps=1, keep_weight=1.0))(
            ev.sample_wplus(other, 2, 0, 0.7), ev.find_edits(["glasses"])[0])
