"""StyleCLIP methods A (latent optimization) and B (mapper training) on small models."""
import math
from pathlib import Path

import pytest
import torch

from precompute.checkpoints import load_generator
from precompute.clip_model import load_clip
from precompute.mapper_training import MapperTrainConfig, train_mapper
from precompute.optimization import OptimizeConfig, lr_at, optimize_latents
from precompute.styleclip_losses import clip_loss, shifted_views, text_target


DEMO = Path(__file__).resolve().parents[1] / "artifacts" / "demo"


@pytest.fixture(scope="module", params=["random", "demo"])
def gen_clip(models, request):
    """Small random models, and the shipped demo world (issue 4: losses fall on the demo models)."""
    if request.param == "demo":
        return load_generator(DEMO / "generator.json"), load_clip(weights=DEMO / "clip.json")
    return load_generator(models["generator"]), load_clip(weights=models["clip"])


def test_lr_schedule_at_known_steps():
    assert lr_at(0, 300) == 0.0  # the first step is a no-op, as in StyleCLIP
    assert lr_at(7, 300) == pytest.approx(0.1 * 7 / 15)  # linear ramp-up over 5 %
    assert lr_at(15, 300) == pytest.approx(0.1) and lr_at(200, 300) == pytest.approx(0.1)
    assert lr_at(270, 300) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))  # cosine ramp-down
    assert lr_at(299, 300) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(math.pi / 75)))


def test_optimization_lowers_the_clip_loss(gen_clip):
    gen, clip = gen_clip
    z = torch.randn(3, gen.config.style_dim, generator=torch.Generator().manual_seed(0))
    w0 = gen.wplus_from_z(z, 0.7).detach()
    w, history = optimize_latents(gen, clip, "a face with purple hair", w0, OptimizeConfig(steps=40), progress=False)
    assert w.shape == w0.shape and not torch.equal(w, w0)
    first, last = history[0], history[-2]
    assert last["clip"] < first["clip"] - 0.01 and first["l2"] == 0 and last["l2"] > 0


def test_batched_optimization_equals_one_at_a_time(models):
    # On the small random models: with the demo models, float differences between batch sizes in the
    # first steps are amplified by Adam's normalized steps, so only the losses are compared there.
    gen, clip = load_generator(models["generator"]), load_clip(weights=models["clip"])
    w0 = gen.wplus_from_z(torch.randn(3, gen.config.style_dim, generator=torch.Generator().manual_seed(0)), 0.7).detach()
    w, _ = optimize_latents(gen, clip, "a face with purple hair", w0, OptimizeConfig(steps=40), progress=False)
    alone, _ = optimize_latents(gen, clip, "a face with purple hair", w0[1:2], OptimizeConfig(steps=40), progress=False)
    torch.testing.assert_close(alone, w[1:2], rtol=1e-4, atol=1e-5)  # batching does not couple latents


def test_optimization_with_views_averages_shifted_copies_per_latent(models):
    gen, clip = load_generator(models["generator"]), load_clip(weights=models["clip"])
    w0 = gen.wplus_from_z(torch.randn(3, gen.config.style_dim, generator=torch.Generator().manual_seed(0)), 0.7).detach()
    cfg = OptimizeConfig(steps=20, clip_views=3)
    w, history = optimize_latents(gen, clip, "a face with purple hair", w0, cfg, progress=False)
    alone, _ = optimize_latents(gen, clip, "a face with purple hair", w0[1:2], cfg, progress=False)
    torch.testing.assert_close(alone, w[1:2], rtol=1e-4, atol=1e-5)  # same shifts for every latent: still decoupled
    one_view, _ = optimize_latents(gen, clip, "a face with purple hair", w0, OptimizeConfig(steps=20), progress=False)
    assert not torch.allclose(w, one_view) and history[-2]["clip"] < history[0]["clip"]


def test_mapper_training_lowers_the_loss_and_resumes(gen_clip, tmp_path):
    gen, clip = gen_clip
    cfg = MapperTrainConfig("a face with purple hair", steps=30, batch=4, checkpoint_every=10, clip_views=2)
    mapper, info = train_mapper(gen, clip, cfg, tmp_path / "full", progress=False)
    losses = [h[1] for h in info["history"]]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert mapper.config.prompt == "a face with purple hair"
    train_mapper(gen, clip, cfg, tmp_path / "resumed", progress=False, stop_at=10)
    resumed, info2 = train_mapper(gen, clip, cfg, tmp_path / "resumed", progress=False)
    assert info2["resumed_from"] == 10 and info2["history"] == info["history"]
    for a, b in zip(resumed.parameters(), mapper.parameters()):
        torch.testing.assert_close(a, b)


def test_mapper_checkpoint_of_other_weights_is_not_resumed(models, tmp_path):
    """Same configs, other weights (e.g. a retrained generator): the finished run must not be reused."""
    gen, clip = load_generator(models["generator"]), load_clip(weights=models["clip"])
    cfg = MapperTrainConfig("a face with purple hair", steps=2, batch=2, checkpoint_every=1)
    train_mapper(gen, clip, cfg, tmp_path, progress=False)
    with torch.no_grad():
        next(gen.parameters()).add_(0.01)
    with pytest.raises(ValueError, match="generator_weights"):
        train_mapper(gen, clip, cfg, tmp_path, progress=False)


def test_shifted_views_are_translations():
    images = torch.randn(2, 3, 32, 32)
    views = shifted_views(images, 5, torch.Generator().manual_seed(0))
    assert views.shape == (10, 3, 32, 32)
    shifts = set()
    for v in range(5):
        view = views[2 * v : 2 * v + 2]
        # find the offset: the view's interior is the original moved by (dy, dx) with |d| <= 32 // 16
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(view[..., 2:-2, 2:-2], images[..., 2 + dy : 30 + dy, 2 + dx : 30 + dx])]
        assert len(match) == 1
        shifts.add(match[0])
    assert len(shifts) > 1  # random offsets, not one


def test_clip_loss_over_views_is_the_mean_of_the_views(models):
    clip = load_clip(weights=models["clip"])
    images, target = torch.rand(3, 3, 32, 32) * 2 - 1, text_target(clip, "a face")
    with torch.no_grad():
        assert torch.equal(clip_loss(clip, images, target, 1), 1 - (clip.encode_image(images) * target).sum(-1))
        views = shifted_views(images, 4, torch.Generator().manual_seed(1))
        want = (1 - (clip.encode_image(views) * target).sum(-1)).view(4, 3).mean(0)
        torch.testing.assert_close(clip_loss(clip, images, target, 4, torch.Generator().manual_seed(1)), want)


def test_mapper_training_respects_disabled_groups(gen_clip, tmp_path):
    gen, clip = gen_clip
    cfg = MapperTrainConfig("a smiling face", steps=3, batch=2, enabled={"coarse": True, "medium": True, "fine": False})
    mapper, _ = train_mapper(gen, clip, cfg, tmp_path, progress=False)
    w = gen.wplus_from_z(torch.randn(2, gen.config.style_dim), 0.7)
    a, b = mapper.config.split
    with torch.no_grad():
        assert torch.count_nonzero(mapper(w)[:, b:]) == 0
    with pytest.raises(ValueError, match="empty"):
        MapperTrainConfig("  ")
