"""Demo generator training: the structured code, feature regions, a few real steps of every stage, resuming after a stop."""
import numpy as np
import pytest
import torch

from precompute.demo.render import ATTRIBUTES, GEOMETRY, feature_regions, render, sample_faces
from precompute.demo.train_generator import (
    DemoTraining, RefineConfig, TrainConfig, face_code, face_to_z, fit_mapping, image_loss, margin_loss, near_ties, refine,
    sharpen_mapping, train, widen_margins, z_to_face,
)
from precompute.demo.train_generator import ATTR_DIMS, attribute_blocks
from precompute.stylegan2 import GeneratorConfig

TINY = GeneratorConfig(64, 32, 2, {4: 16, 8: 16, 16: 16, 32: 8, 64: 8})


def test_structured_code_round_trip():
    rng = np.random.default_rng(0)
    attrs = np.stack([rng.integers(0, len(v), 50) for v in ATTRIBUTES.values()], 1)
    geometry = rng.random((50, len(GEOMETRY))).astype(np.float32)
    z = face_to_z(attrs, geometry, rng, 128)
    back_attrs, back_geometry = z_to_face(z)
    assert np.array_equal(back_attrs, attrs)
    np.testing.assert_allclose(back_geometry, np.clip(geometry, 1e-4, 1 - 1e-4), atol=1e-5)


def test_prior_codes_give_the_renderers_prior():
    z = np.random.default_rng(1).standard_normal((30000, 128)).astype(np.float32)
    attrs, geometry = z_to_face(z)
    for k, values in enumerate(ATTRIBUTES.values()):
        freq = np.bincount(attrs[:, k], minlength=len(values)) / len(z)
        np.testing.assert_allclose(freq, 1 / len(values), atol=0.015)  # uniform, as PRIOR
    assert np.all(np.abs(np.quantile(geometry, [0.25, 0.5, 0.75], axis=0).T - [0.25, 0.5, 0.75]) < 0.02)


def block_margins(z):
    """[N, n_attrs]: each attribute block's top entry minus its second."""
    return np.stack([np.diff(np.sort(block, 1)[:, -2:], axis=1)[:, 0] for block in attribute_blocks(z)], 1)


def test_widen_margins_and_near_ties_keep_the_intended_face():
    z = np.random.default_rng(2).standard_normal((400, 128)).astype(np.float32)
    wide, tied = widen_margins(z, 2.0), near_ties(z, np.random.default_rng(3), share=0.5)
    for other in (wide, tied):
        assert np.array_equal(z_to_face(other)[0], z_to_face(z)[0])
        assert np.array_equal(other[:, ATTR_DIMS:], z[:, ATTR_DIMS:])  # geometry and noise dims untouched
    m, mw, mt = block_margins(z), block_margins(wide), block_margins(tied)
    assert np.all(mw >= 2.0 - 1e-5)
    np.testing.assert_array_equal(mw[m >= 2.0], m[m >= 2.0])  # already clear: unchanged
    changed = mt != m
    assert 0.4 < changed.mean() < 0.6 and np.all(mt[changed] <= 0.05 + 1e-6) and np.all(mt > 0)


def test_sharpening_makes_the_mapping_margin_invariant():
    import copy

    from tests.conftest import make_generator

    gen = make_generator(TINY)
    teacher = copy.deepcopy(gen.style)
    synthesis = {k: v.clone() for k, v in gen.state_dict().items() if not k.startswith("style.")}
    rng = np.random.default_rng(4)
    assert margin_loss(gen, teacher, rng, 64, 0.0).item() == pytest.approx(0.0, abs=1e-10)  # nothing widened
    assert margin_loss(gen, teacher, rng, 64, 2.0).item() > 1e-3
    before, after = sharpen_mapping(gen, steps=200, batch=64, progress=False)
    assert after < 0.75 * before, (before, after)
    for k, v in gen.state_dict().items():  # the mapping only
        if k in synthesis:
            torch.testing.assert_close(v, synthesis[k])


def test_face_code_is_one_hot_plus_geometry():
    attrs = torch.tensor([[0] * len(ATTRIBUTES), [len(v) - 1 for v in ATTRIBUTES.values()]])
    code = face_code(attrs, torch.tensor([[0.0] * len(GEOMETRY), [1.0] * len(GEOMETRY)]))
    n_onehot = sum(len(v) for v in ATTRIBUTES.values())
    assert code.shape == (2, n_onehot + len(GEOMETRY))
    assert code[:, :n_onehot].sum(1).tolist() == [len(ATTRIBUTES)] * 2
    assert code[0, n_onehot:].tolist() == [-1.0] * len(GEOMETRY) and code[1, n_onehot:].tolist() == [1.0] * len(GEOMETRY)


def test_mapping_fit_learns_the_conditional_codes():
    torch.manual_seed(0)
    model = DemoTraining(GeneratorConfig(64, 64, 4, {4: 8, 8: 8, 16: 8, 32: 8, 64: 8}))
    with torch.no_grad():  # a spread like a trained decoder's
        for p in model.cond[-1].parameters():
            p.mul_(10)
    before = fit_mapping(model, TrainConfig(map_fit_steps=1), progress=False)
    after = fit_mapping(model, TrainConfig(map_fit_steps=400), progress=False)
    assert before < 0.2 and after > before + 0.3, (before, after)


def small(steps):
    return TrainConfig(steps=steps, fit_at=2, batch=4, n_train=16, checkpoint_every=1, map_fit_steps=3)


def test_training_stages_and_resume(tmp_path):
    model, info = train(tmp_path / "full", small(4), TINY, progress=False)
    assert info["step"] == 4 and [h[2] for h in info["history"]] == [1.0, 1.0, 3.0, 3.0]  # stage per step
    assert np.isfinite(info["mapping_r2"])

    _, first = train(tmp_path / "resumed", small(4), TINY, stop_at=3, progress=False)  # stops after the fit
    assert first["step"] == 3
    resumed, info2 = train(tmp_path / "resumed", small(4), TINY, progress=False)  # as a new process would
    assert info2["resumed_from"] == 3 and info2["history"] == info["history"]
    for a, b in zip(resumed.parameters(), model.parameters()):
        torch.testing.assert_close(a, b)

    with pytest.raises(ValueError, match="other settings"):
        train(tmp_path / "resumed", small(5), TINY, progress=False)


def test_feature_regions_hold_every_pixel_the_small_features_change():
    """Changing expression, eye colour, glasses or hair colour of a bald face only moves pixels inside
    `feature_regions` (hair colour of a haired face and the other attributes are large areas)."""
    faces = sample_faces(24, 11)
    masks = feature_regions(np.array([f.geometry for f in faces], np.float32))
    assert 0.08 < masks.mean() < 0.25
    for face, mask in zip(faces, masks):
        face = face.with_values(hair_style="bald")
        base = render(face).astype(int)
        variants = [face.with_values(**{name: value}) for name in ("expression", "eye_color", "glasses", "hair_color")
                    for value in ATTRIBUTES[name]]
        changed = np.zeros(mask.shape, bool)
        for other in variants:
            changed |= np.abs(render(other).astype(int) - base).max(-1) > 0
        assert changed.any() and not (changed & (mask == 0)).any()


def test_weighted_image_loss():
    fake, real = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    fake[:, :, 2, 2] = 1.0  # one wrong pixel per image
    weight = torch.ones(2, 8, 8)
    assert image_loss(fake, real, weight).item() == pytest.approx(image_loss(fake, real).item())
    weight[:, 2, 2] = 9.0  # the wrong pixel weighs more: the weighted mean error grows
    assert image_loss(fake, real, weight).item() > 2 * image_loss(fake, real).item()


def test_refine_resumes_and_is_tied_to_its_init(tmp_path):
    from precompute.checkpoints import save_generator
    from tests.conftest import make_generator

    save_generator(make_generator(TINY), tmp_path / "g")
    cfg = RefineConfig(steps=3, batch=4, n_train=16, checkpoint_every=1, sharpen_steps=0)
    gen, info = refine(tmp_path / "full", tmp_path / "g.json", cfg, progress=False)
    assert info["step"] == 3 and all(np.isfinite(h[1]) for h in info["history"])
    refine(tmp_path / "resumed", tmp_path / "g.json", cfg, stop_at=2, progress=False)
    resumed, info2 = refine(tmp_path / "resumed", tmp_path / "g.json", cfg, progress=False)
    assert info2["resumed_from"] == 2 and info2["history"] == info["history"]
    for a, b in zip(resumed.parameters(), gen.parameters()):
        torch.testing.assert_close(a, b)
    save_generator(make_generator(TINY, seed=1), tmp_path / "g")  # another init: the checkpoint is not its run
    with pytest.raises(ValueError, match="init_sha256"):
        refine(tmp_path / "resumed", tmp_path / "g.json", cfg, progress=False)


def test_refine_sharpens_after_its_image_steps_and_redoes_only_that(tmp_path):
    import dataclasses

    from precompute.checkpoints import save_generator
    from tests.conftest import make_generator

    save_generator(make_generator(TINY), tmp_path / "g")
    cfg = RefineConfig(steps=2, batch=4, n_train=16, checkpoint_every=1, sharpen_steps=20)
    _, stopped = refine(tmp_path / "w", tmp_path / "g.json", cfg, stop_at=1, progress=False)
    assert "sharpen_loss" not in stopped  # only a finished refinement is sharpened
    _, info = refine(tmp_path / "w", tmp_path / "g.json", cfg, progress=False)
    assert info["step"] == 2 and np.all(np.isfinite(info["sharpen_loss"]))
    # other sharpening settings reuse the finished image steps instead of refusing the checkpoint
    _, again = refine(tmp_path / "w", tmp_path / "g.json", dataclasses.replace(cfg, sharpen_steps=40, margin=3.0),
                      progress=False)
    assert again["resumed_from"] == 2 and again["sharpen_loss"] != info["sharpen_loss"]


def test_contact_sheet_pairs_samples_with_their_intended_renders(tmp_path):
    from click.testing import CliRunner

    from cli import main
    from precompute.checkpoints import save_generator
    from precompute.demo.train_generator import contact_sheet
    from tests.conftest import make_generator

    gen = make_generator(TINY)
    sheet = contact_sheet(gen, n=6, seed=0, columns=3)
    assert sheet.size == (3 * (128 + 4) + 4, 4 * (128 + 4) + 4)  # 2 sample rows + 2 render rows, scale 2
    save_generator(gen, tmp_path / "g")
    runner = CliRunner()
    res = runner.invoke(main, ["sample-demo", "--generator", str(tmp_path / "g.json"), "-n", "4", "--out", str(tmp_path / "s.png")])
    assert res.exit_code == 0 and (tmp_path / "s.png").is_file(), res.output
    res = runner.invoke(main, ["sample-demo", "--generator", str(tmp_path / "none.json"), "--out", str(tmp_path / "t.png")])
    assert res.exit_code == 2 and "train-generator" in res.output and not (tmp_path / "t.png").exists()


def test_refine_generator_cli_without_its_init_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from cli import main

    res = CliRunner().invoke(main, ["refine-generator", "--init", str(tmp_path / "none.json"),
                                    "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "train-generator" in res.output and not (tmp_path / "out").exists()
