"""The demo world's classifier and CLIP: training code paths (a few steps), resuming, and the shipped weights."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from precompute.clip_model import load_clip, text_embedding
from precompute.demo import classifier as C
from precompute.demo import train_clip as T
from precompute.demo.render import (
    ATTRIBUTE_NAMES, ATTRIBUTES, GEOMETRY_NAMES, HAIR_RGB, Face, caption, colour_regions, render, render_batch,
    sample_dataset, sample_faces,
)
from precompute.demo.report import CLASSIFIER_ACCURACY_BAR, CLIP_ZERO_SHOT_BAR, GEOMETRY_R2_BAR, failures, format_report
from precompute.demo.training import HELDOUT_SEED, augment, cosine_lr, step_generator
from runtime.tokenizer import trim_padding

DEMO = Path(__file__).resolve().parents[1] / "artifacts" / "demo"
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_CLASSIFIER = C.ClassifierConfig(convs=((8, 2), (16, 2), (16, 2), (16, 2)), hidden=32)
FAST = dict(n_train=48, batch=16, warmup=2, progress=False, threads=2)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


# --- training code paths ----------------------------------------------------------------------------
def test_classifier_trains_resumes_and_saves(tmp_path):
    init = params(C.build(TINY_CLASSIFIER, seed=0))
    model, info = C.train_classifier(tmp_path / "a", steps=6, seed=0, lr=3e-3, config=TINY_CLASSIFIER,
                                     out=tmp_path / "clf", n_eval=32, **FAST)
    losses = [h[1] for h in info["history"]]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    trained = params(model)
    assert any(not torch.equal(init[k], trained[k]) for k in init if k.endswith("weight"))
    # Interrupted after 3 steps, then rerun: continues at step 3 and ends exactly where the straight run did.
    _, first = C.train_classifier(tmp_path / "b", steps=6, seed=0, lr=3e-3, config=TINY_CLASSIFIER, stop_at=3, **FAST)
    assert first["step"] == 3 and not (tmp_path / "b" / "clf.json").exists()
    resumed, second = C.train_classifier(tmp_path / "b", steps=6, seed=0, lr=3e-3, config=TINY_CLASSIFIER, **FAST)
    assert second["resumed_from"] == 3 and second["step"] == 6
    assert_same_params(params(resumed), trained)
    assert [h[1] for h in second["history"]] == losses
    # Other settings in the same work dir are refused rather than mixed.
    with pytest.raises(ValueError, match="lr differ"):
        C.train_classifier(tmp_path / "b", steps=6, seed=0, lr=1e-3, config=TINY_CLASSIFIER, **FAST)
    # Saved pair: loads strictly, same outputs, metrics recorded.
    loaded = C.load_classifier(tmp_path / "clf.safetensors")
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        (la, ga), (lb, gb) = model(x), loaded(x)
    torch.testing.assert_close(ga, gb)
    meta = json.loads((tmp_path / "clf.json").read_text())
    assert meta["kind"] == "demo-classifier" and set(meta["config"]["metrics"]["accuracy"]) == set(ATTRIBUTE_NAMES)


def test_clip_trains_and_resumes(tmp_path):
    kw = dict(FAST, config=TINY_CLIP, lr=1e-3)
    clip, info = T.train_clip(tmp_path / "a", steps=4, seed=0, **kw)
    losses = [h[1] for h in info["history"]]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    init = params(T.build_clip(TINY_CLIP, seed=0).model)
    trained = params(clip.model)
    assert sum(not torch.equal(init[k], trained[k]) for k in init) > len(init) // 2
    assert not any(p.requires_grad for p in clip.model.parameters()) and not clip.model.training
    T.train_clip(tmp_path / "b", steps=4, seed=0, stop_at=2, **kw)
    resumed, info2 = T.train_clip(tmp_path / "b", steps=4, seed=0, out=tmp_path / "clip", n_eval=16, **kw)
    assert info2["resumed_from"] == 2 and [h[1] for h in info2["history"]] == losses
    # Saved in fp16 and reloaded: the returned model is the shipped one.
    meta = json.loads((tmp_path / "clip.json").read_text())["config"]
    assert meta["weights_dtype"] == "float16" and meta["model_cfg"] == TINY_CLIP and "mean" in meta["metrics"]
    assert_same_params(params(resumed.model), {k: v.half().float() for k, v in trained.items()})
    loaded = load_clip(weights=tmp_path / "clip.json")
    assert loaded.preprocess == "normalized" and loaded.image_size == 64 and loaded.context_length == 77


def test_trimmed_text_encoder_equals_open_clip():
    """Token ids cut after the batch's last non-pad column give open_clip's full-context embeddings."""
    clip = T.build_clip(TINY_CLIP, seed=3)
    with torch.no_grad():
        for p in clip.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        tokens = clip.tokenize(["a face", "a smiling cartoon face with glasses and long red hair on a pink background"])
        trimmed = trim_padding(tokens)
        assert clip.trims_tokens and 2 < trimmed.shape[1] < 77 and (tokens[:, trimmed.shape[1]:] == 0).all()
        full = clip.model.encode_text(tokens, normalize=True)
        torch.testing.assert_close(text_embedding(clip.model, trimmed), full, atol=1e-6, rtol=0)
        torch.testing.assert_close(clip.encode_text(tokens), full, atol=1e-6, rtol=0)
        # Cut inside a prompt, the embedding changes: the comparison above can fail.
        assert (text_embedding(clip.model, tokens[:, :trimmed.shape[1] - 1]) - full).abs().max() > 1e-3


def test_counterfactual_pairs_and_positives():
    faces = sample_faces(24, 7)
    twins, texts, positives, colours = T.counterfactual_batch(np.random.default_rng(5), faces)
    assert colours == [None] * 24  # off_palette 0: the renderer's own colours (the same draws as before it existed)
    seeds = np.random.default_rng(5).integers(2**31, size=24)  # counterfactual_batch's first draw
    assert len(twins) == 24 and len(texts) == 48 and positives.shape == (48, 48)
    for face, twin, text in zip(faces, twins, texts):
        assert sum(a != b for a, b in zip(face.attrs, twin.attrs)) == 1
        assert (twin.geometry, twin.seed) == (face.geometry, face.seed)
    # Brute force: text m is true of a face iff that face's caption with text m's seed is text m.
    brute = np.array([[caption(f, int(seeds[m % 24])) == texts[m] for m in range(48)] for f in faces + twins])
    assert np.array_equal(positives, brute)
    assert positives.diagonal().all()
    assert not positives[np.arange(24), 24 + np.arange(24)].any()  # a twin's caption is false of the original
    assert not positives[24 + np.arange(24), np.arange(24)].any()
    assert positives.sum() > 48  # short captions are true of other faces too
    _, plain, pos, _ = T.counterfactual_batch(np.random.default_rng(5), faces, pairs=False)
    assert plain == texts[:24] and pos.shape == (24, 24)


def test_off_palette_twins_are_told_apart_by_their_hair_colour_word():
    """An off-palette twin is its original with the hair (and brows) drawn in a colour of another name, captioned
    with that name: each caption naming a hair colour is true only of images showing that colour's name."""
    faces = sample_faces(64, 7)
    twins, texts, positives, colours = T.counterfactual_batch(np.random.default_rng(5), faces, off_palette=0.5)
    off = [i for i, c in enumerate(colours) if c is not None]
    assert 10 <= len(off) <= 40
    palette = dict(HAIR_RGB)
    shown = [f.value("hair_color") for f in faces] + [None] * 64
    for i in range(64):
        shown[64 + i] = twins[i].value("hair_color")
    for i in off:
        face, twin, rgb = faces[i], twins[i], colours[i]["hair_color"]
        word = next(n for n, ex in T.OFF_PALETTE_HAIR if max(abs(a - b) for a, b in zip(rgb, ex)) <= 20)
        assert word != face.value("hair_color") and word != "pink" and rgb != palette.get(word)
        assert texts[64 + i] == caption(twin, int(np.random.default_rng(5).integers(2**31, size=64)[i]),
                                        {"hair_color": word}) and word in texts[64 + i]
        shown[64 + i] = word
        image = render(twin, colours=colours[i])
        region = colour_regions(twin)["hair_color"] > 0.9
        assert np.abs(image[region].astype(int) - rgb).max() <= 60  # drawn in that colour (strands are darker)
        assert not positives[i, 64 + i] and not positives[64 + i, i] and positives[64 + i, 64 + i]
    # The rule, from the words: a caption that gives a hair colour is false of every image showing another.
    colour_words = {*ATTRIBUTES["hair_color"], *(n for n, _ in T.OFF_PALETTE_HAIR)}
    said = [next((w for w in re.findall(r"(\w+)(?: hair| eyebrows|-haired)", t) if w in colour_words), None) for t in texts]
    assert sum(w is not None for w in said) > 30
    for i, m in zip(*np.nonzero(positives)):
        assert said[m] is None or said[m] == shown[i], (shown[i], texts[m])


def test_contrastive_loss_counts_every_true_caption():
    e = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    scale = torch.tensor(math.log(100.0))
    distinct, _ = T.contrastive_loss(e, e, scale, torch.eye(4, dtype=torch.bool))
    shared = torch.eye(4, dtype=torch.bool)
    shared[0, 1] = shared[1, 0] = True
    merged, _ = T.contrastive_loss(e, e, scale, shared)
    assert distinct.item() < 0.1 and merged.item() > distinct.item()


def test_helpers():
    x = torch.zeros(2, 3, 8, 8)
    a, b = augment(x, step_generator(0, 5)), augment(x, step_generator(0, 5))
    assert torch.equal(a, b) and a.abs().max() <= 1 and not torch.equal(a, x)
    assert cosine_lr(0, 100, 1.0, 10) == pytest.approx(0.1) and cosine_lr(100, 100, 1.0, 10) == pytest.approx(0.05)
    table = T.zero_shot_prompts()
    assert list(table) == list(ATTRIBUTES) and all(len(table[k]) == len(v) for k, v in ATTRIBUTES.items())
    assert table["hair_color"][ATTRIBUTES["hair_color"].index("blonde")] == "a face with blonde hair"
    report = {"n": 2, "seed": 1, "classifier": {"accuracy": dict.fromkeys(ATTRIBUTE_NAMES, 1.0),
                                                 "r2": dict.fromkeys(GEOMETRY_NAMES, 0.5), "r2_mean": 0.5},
              "clip": {"accuracy": dict.fromkeys(ATTRIBUTE_NAMES, 0.95), "mean": 0.95}}
    assert len(failures(report)) == len(GEOMETRY_NAMES) and "MISSED" in format_report(report)


# --- the shipped weights ------------------------------------------------------------------------------
# Reference values, computed once from the shipped files (they change only when the models are retrained).
FIXED_FACES = [
    Face.from_values(hair_color="blonde", hair_style="long", expression="smiling", glasses="yes", eye_color="blue",
                     skin_tone="light", background="pink", geometry=(0.2, 0.8, 0.5, 0.3, 0.6, 0.4, 0.7), seed=1),
    Face.from_values(hair_color="purple", hair_style="bald", expression="surprised", eye_color="green",
                     skin_tone="dark", background="yellow", seed=2),
    Face.from_values(hair_color="red", hair_style="short", expression="neutral", glasses="yes", eye_color="brown",
                     skin_tone="tan", background="blue", geometry=(0.9, 0.1, 0.2, 0.9, 0.1, 0.9, 0.2), seed=3),
    Face.from_values(hair_color="gray", hair_style="long", expression="smiling", eye_color="blue",
                     skin_tone="dark", background="green", geometry=(0.4, 0.4, 0.8, 0.6, 0.8, 0.2, 0.5), seed=4),
]
CLASSIFIER_LOGIT_SUM = -135.413757  # all logits and geometry outputs for FIXED_FACES
CLIP_PROMPT = "a smiling face with blonde hair"
CLIP_PROMPT_FIRST = [0.116371, 0.145159, -0.003276, 0.046537, 0.065428, 0.030616]  # its embedding
CLIP_IMAGE_FIRST = [0.069278, -0.008455, 0.092345, 0.046603, 0.200685, 0.042175]  # FIXED_FACES[0]'s


@pytest.fixture(scope="module")
def shipped_classifier():
    return C.load_classifier(DEMO / "classifier.json")


@pytest.fixture(scope="module")
def shipped_clip():
    return T.load_demo_clip(DEMO / "clip.json")


@pytest.fixture(scope="module")
def heldout():
    return sample_dataset(200, HELDOUT_SEED + 1)


def test_shipped_classifier(shipped_classifier, heldout):
    meta = json.loads((DEMO / "classifier.json").read_text())
    assert meta["kind"] == "demo-classifier"
    assert meta["config"]["model"] == C.ClassifierConfig().to_dict()
    images = render_batch(FIXED_FACES)
    probs, geometry = C.predict(shipped_classifier, images)
    for i, face in enumerate(FIXED_FACES):
        assert {n: ATTRIBUTES[n][int(probs[n][i].argmax())] for n in ATTRIBUTE_NAMES} == face.values()
    torch.testing.assert_close(geometry, torch.tensor([f.geometry for f in FIXED_FACES]), atol=0.25, rtol=0)
    with torch.no_grad():
        logits, geo = shipped_classifier(C.as_input(images))
    total = sum(v.sum() for v in logits.values()) + geo.sum()
    assert total.item() == pytest.approx(CLASSIFIER_LOGIT_SUM, abs=1e-4)
    result = C.evaluate_classifier(shipped_classifier, data=heldout)
    assert min(result["accuracy"].values()) >= CLASSIFIER_ACCURACY_BAR - 0.01
    assert min(result["r2"].values()) >= GEOMETRY_R2_BAR - 0.03


def test_shipped_clip(shipped_clip, heldout):
    meta = json.loads((DEMO / "clip.json").read_text())["config"]
    assert meta["model_cfg"] == T.DEMO_CLIP_CONFIG and meta["weights_dtype"] == "float16"
    assert meta["preprocess"] == "normalized" and meta["context_length"] == 77 and meta["image_size"] == 64
    assert shipped_clip.model.token_embedding.num_embeddings == 49408  # the real BPE vocabulary
    total = sum(p.stat().st_size for p in DEMO.glob("c*.safetensors") if p.stem in ("clip", "classifier"))
    assert total <= 15_000_000
    with torch.no_grad():
        text = shipped_clip.encode_text(CLIP_PROMPT)[0]
        image = T.encode_images(shipped_clip, render_batch(FIXED_FACES[:1]))[0]
    torch.testing.assert_close(text[:6], torch.tensor(CLIP_PROMPT_FIRST), atol=1e-5, rtol=0)
    torch.testing.assert_close(image[:6], torch.tensor(CLIP_IMAGE_FIRST), atol=1e-5, rtol=0)
    result = T.zero_shot_eval(shipped_clip, heldout[0], heldout[1])
    assert result["mean"] >= CLIP_ZERO_SHOT_BAR - 0.03


# --- the shipped generator --------------------------------------------------------------------------
GENERATOR_PIXEL_SUM = 8218379  # uint8 pixel sum of sample_images(gen, 4, seed=0) from the shipped file


@pytest.fixture(scope="module")
def shipped_generator():
    from precompute.checkpoints import load_generator

    return load_generator(DEMO / "generator.json")


def test_shipped_generator(shipped_generator, shipped_classifier):
    from precompute.demo.report import evaluate_generator
    from precompute.demo.train_generator import DEMO_CONFIG, sample_images

    assert shipped_generator.config == DEMO_CONFIG
    images, _ = sample_images(shipped_generator, 4, seed=0)
    assert int(images.astype(np.int64).sum()) == pytest.approx(GENERATOR_PIXEL_SUM, abs=4 * 64 * 64 * 3 * 0.5)
    result = evaluate_generator(shipped_generator, shipped_classifier, n=100)
    # A regression guard on what this generator learned (1000 samples: 0.907-1.0, eye colour 0.814; it
    # still misses the confidence bar and eye colour's, `cli.py evaluate-demo`).
    for name in ("hair_color", "hair_style", "expression", "glasses", "skin_tone", "background"):
        assert result["intended"][name] >= 0.88, (name, result["intended"])
    assert result["intended"]["eye_color"] >= 0.75, result["intended"]
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total <= 40_000_000  # issue 3: everything shipped for the demo world
