"""The demo encoder's training: a few real steps of both stages, resuming after a stop, the shipped weights."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from precompute.checkpoints import save_generator
from precompute.clip_model import Clip, save_clip
from precompute.demo.render import sample_dataset
from precompute.demo.train_encoder import (
    EncoderTrainConfig, delta_norms, evaluate_inversion, intended_latents, train_encoder,
)
from precompute.encoder import EncoderConfig, load_encoder
from tests.conftest import make_generator
from tests.test_clip import TINY as TINY_CLIP_BASE, tiny_model
from tests.test_demo_models import assert_same_params, params
from tests.test_train_generator import TINY

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "artifacts" / "demo"
TINY_ENCODER = EncoderConfig(64, (1, 1, 1, 1), (16, 16, 16, 32), n_latent=10, style_dim=32, se_reduction=8)
CFG = EncoderTrainConfig(steps=4, latent_steps=2, batch=4, n_train=24, warmup=1, checkpoint_every=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    save_generator(make_generator(TINY), folder / "gen")
    clip_config = dict(TINY_CLIP_BASE, vision_cfg=dict(TINY_CLIP_BASE["vision_cfg"], image_size=64, patch_size=16))
    save_clip(Clip(tiny_model(vision_cfg=clip_config["vision_cfg"]), clip_config), folder / "clip")
    return folder / "gen.json", folder / "clip.json"


def test_both_stages_run_and_resume_exactly(files, tmp_path):
    gen, clip = files
    kw = dict(config=TINY_ENCODER, threads=1, progress=False)
    trained, info = train_encoder(tmp_path / "a", gen, clip, CFG, **kw)
    assert info["step"] == 4 and info["resumed_from"] == 0
    stage1, stage2 = info["history"][1], info["history"][3]
    assert len(stage1) == 3 and len(stage2) == 6  # step, loss, latent | step, loss, latent, pixel, clip, delta
    train_encoder(tmp_path / "b", gen, clip, CFG, stop_at=3, **kw)
    resumed, info2 = train_encoder(tmp_path / "b", gen, clip, CFG, **kw)
    assert info2["resumed_from"] == 3 and info2["history"] == info["history"]
    assert_same_params(params(resumed), params(trained))
    with pytest.raises(ValueError, match="other settings"):
        train_encoder(tmp_path / "b", gen, clip, EncoderTrainConfig(**dict(vars(CFG), clip_weight=1.0)), **kw)


def test_config_must_fit_the_generator(files, tmp_path):
    gen, clip = files
    wrong = EncoderConfig(64, (1, 1, 1, 1), (16, 16, 16, 32), n_latent=10, style_dim=64, se_reduction=8)
    with pytest.raises(ValueError, match=r"W\+ \[10, 64\], the generator's is \[10, 32\]"):
        train_encoder(tmp_path, gen, clip, CFG, config=wrong, progress=False)


def test_targets_and_delta_regularization(files):
    from precompute.checkpoints import load_generator

    gen = load_generator(files[0])
    _, labels, geometry = sample_dataset(6, 3)
    a = intended_latents(gen, labels, geometry, 0)
    assert torch.equal(a, intended_latents(gen, labels, geometry, 0))  # seeded: every run regresses the same targets
    assert a.shape == (6, 32) and not torch.allclose(a[0], a[1])
    one = intended_latents(gen, labels, geometry, 0, draws=1)
    assert not torch.allclose(one, a)  # the mean over draws of the free dims, not one draw
    codes = a[:, None].repeat(1, 10, 1)
    assert delta_norms(codes) == 0
    codes[:, 3] += torch.tensor([3.0, 4.0] + [0.0] * 30)
    assert torch.isclose(delta_norms(codes), torch.tensor(5.0))


def test_cli_train_encoder_writes_a_loadable_encoder(tmp_path):
    out = tmp_path / "enc"
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train-encoder", "--workdir", tmp_path / "w", "--steps", "2",
                          "--latent-steps", "1", "--n-train", "8", "--n-eval", "0", "--threads", "1", "--out", out],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    enc = load_encoder(out.with_suffix(".json"))
    assert (enc.n_latent, enc.config.style_dim, enc.config.input_size) == (10, 128, 64)
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train-encoder", "--steps", "2", "--latent-steps", "3",
                          "--workdir", tmp_path / "x"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "must be <= --steps (2)" in res.stderr and not (tmp_path / "x").exists()


@pytest.mark.skipif(not (DEMO / "encoder.json").is_file(), reason="the demo encoder is not trained yet")
def test_shipped_demo_encoder_inverts_held_out_renders():
    from precompute.checkpoints import load_generator
    from precompute.demo.classifier import load_classifier

    metrics = evaluate_inversion(load_encoder(DEMO / "encoder.json"), load_generator(DEMO / "generator.json"),
                                 load_classifier(DEMO / "classifier.json"), n=100)
    # A regression guard on what it learned (docs/inversion.md: 1,000 renders 0.95-1.0 per attribute, 25.3 dB;
    # geometry R2 0.71-0.99 but mouth width, which the generator does not draw from any known latent).
    assert min(metrics["agreement"].values()) >= 0.9, metrics["agreement"]
    assert metrics["psnr"] > 24 and np.isfinite(metrics["psnr_p10"])
    assert min(metrics["r2"][k] for k in ("face_width", "face_height", "face_x", "face_y")) > 0.8, metrics["r2"]
    assert metrics["agreement_all"] >= metrics["generator_agreement_all"] - 0.05  # as good as G draws them
