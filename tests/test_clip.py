"""CLIP loading, tokenizer and preprocessing (precompute/clip_model.py) on a tiny random open_clip model."""
import json
import warnings

import open_clip
import pytest
import torch
import torch.nn.functional as F

from precompute.checkpoints import CheckpointError
from precompute.clip_model import (
    Clip, load_clip, normalized_preprocess, read_clip_state, save_clip, styleclip_preprocess,
)

TOL = 1e-6  # same ops on the same weights: only float reassociation noise is allowed
TINY = {
    "embed_dim": 32,
    # 224 px so StyleCLIP's preprocessing applies; patch 32 keeps it to 7x7 tokens (fast).
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TEXTS = ["a face with a beard", "  Émile's   SMILING\tface!! ", "blond hair, 2 eyes & 1 nose"]
LONG = " ".join(["photo of a very happy person"] * 20)  # 121 BPE tokens > 77
EOT = 49407


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = open_clip.CLIP(**dict(TINY, **overrides)).eval()
    with torch.no_grad():  # random init leaves tiny projections; make the outputs distinctive
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def reference(model, images, preprocess):
    """What the raw open_clip model gives for our inputs (tokens from open_clip's own tokenizer)."""
    with torch.no_grad():
        text = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(TEXTS + [LONG]), normalize=True)
        image = model.encode_image(preprocess(images), normalize=True)
    return text, image


def encode(clip, images, preprocess=None):
    with torch.no_grad():
        return clip.encode_text(TEXTS + [LONG]), clip.encode_image(images, preprocess)


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64) * 0.6


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def assert_same(clip, model, images, preprocess="normalized"):
    pre = {"normalized": lambda x: normalized_preprocess(x, 224), "styleclip": styleclip_preprocess}[preprocess]
    want_text, want_image = reference(model, images, pre)
    text, image = encode(clip, images, preprocess)
    assert text.shape == (len(TEXTS) + 1, 32) and image.shape == (2, 32)
    torch.testing.assert_close(text, want_text, atol=TOL, rtol=0)
    torch.testing.assert_close(image, want_image, atol=TOL, rtol=0)
    torch.testing.assert_close(text.norm(dim=1), torch.ones(len(text)), atol=1e-5, rtol=0)
    torch.testing.assert_close(image.norm(dim=1), torch.ones(len(image)), atol=1e-5, rtol=0)


# --- loading ----------------------------------------------------------------------------------------
def test_open_clip_pt_and_our_format_round_trip(tmp_path, model, images):
    pt = tmp_path / "tiny.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, pt)
    clip = load_clip(config=TINY, weights=pt)
    assert clip.preprocess == "normalized"  # custom configs default to the correct preprocessing
    assert (clip.embed_dim, clip.context_length, clip.image_size) == (32, 77, 224)
    assert_same(clip, model, images)

    clip.preprocess = "styleclip"
    weights, config_path = save_clip(clip, tmp_path / "ours" / "clip")
    meta = json.loads(config_path.read_text())
    assert meta["kind"] == "open-clip" and meta["config"]["preprocess"] == "styleclip"
    assert meta["config"]["context_length"] == 77 and meta["config"]["model_cfg"]["embed_dim"] == 32
    for path in (weights, config_path):  # either file of the pair, no other argument
        again = load_clip(weights=path)
        assert again.preprocess == "styleclip"
        assert_same(again, model, images, "styleclip")
    assert_same(load_clip(weights=weights, preprocess="normalized"), model, images)


def test_plain_safetensors_state_dict(tmp_path, model, images):
    from safetensors.torch import save_file

    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert_same(load_clip(config={"model_cfg": TINY}, weights=path), model, images)


def test_registered_name_round_trips(tmp_path, model, images):
    (tmp_path / "tiny-clip-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "tiny-clip-test.json")
    pt = tmp_path / "w.bin"
    torch.save(model.state_dict(), pt)
    clip = load_clip("tiny-clip-test", pt)
    assert clip.name == "tiny-clip-test" and clip.preprocess == "styleclip"  # registered 224 px: StyleCLIP's
    assert_same(clip, model, images, "styleclip")
    saved, _ = save_clip(clip, tmp_path / "saved.safetensors")
    again = load_clip(weights=saved)
    assert again.name == "tiny-clip-test"
    assert_same(again, model, images, "styleclip")
    with pytest.raises(ValueError, match="not 'ViT-B-32'"):
        load_clip("ViT-B-32", saved)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_clip("no-such-clip", pt)


def openai_model():
    """OpenAI's layout: QuickGELU, fp16 weights, extra architecture tensors."""
    model = tiny_model(seed=2, quick_gelu=True)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())  # the reference sees exactly the fp16 values the file holds
    return model


def test_openai_torchscript_archive(tmp_path, images):
    model = openai_model()
    traced = tiny_model(seed=3, quick_gelu=True)
    traced.load_state_dict(model.state_dict())
    for key, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        traced.__dict__.pop(key, None)  # open_clip keeps these as ints; OpenAI's archive as tensors
        traced.register_buffer(key, torch.tensor(value))
    with warnings.catch_warnings():  # tracing is deprecated and chatty; this only writes a test file
        warnings.simplefilter("ignore")
        archive = torch.jit.trace(traced, (torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)),
                                  check_trace=False)
    archive.half().save(str(tmp_path / "ViT-tiny.pt"))

    state, is_openai = read_clip_state(tmp_path / "ViT-tiny.pt")
    assert is_openai and "input_resolution" not in state and state["text_projection"].dtype == torch.float16
    clip = load_clip(config=TINY, weights=tmp_path / "ViT-tiny.pt")
    assert clip.model_cfg["quick_gelu"] is True
    assert_same(clip, model, images)
    # Without QuickGELU the same weights give other embeddings: the detection matters.
    plain = load_clip(config=TINY, weights=tmp_path / "ViT-tiny.pt", quick_gelu=False)
    assert not torch.allclose(encode(plain, images)[1], encode(clip, images)[1], atol=1e-3)


def test_openai_state_dict(tmp_path, images):
    model = openai_model()
    state = {k: v.half() for k, v in model.state_dict().items()}
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    torch.save(state, tmp_path / "openai.pt")
    assert_same(load_clip(config=TINY, weights=tmp_path / "openai.pt"), model, images)


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nope.pt.*nothing is downloaded"):
        load_clip("ViT-B-32", tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="required"):
        load_clip("ViT-B-32")


def test_wrong_keys_are_named(tmp_path, model):
    state = dict(model.state_dict())
    state["visual.proj_renamed"] = state.pop("visual.proj")
    state["text_projection"] = state["text_projection"][:, :16]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_clip(config=TINY, weights=tmp_path / "bad.pt")
    message = str(err.value)
    assert "missing keys: visual.proj" in message and "unexpected keys: visual.proj_renamed" in message
    assert "text_projection (64, 16) (expected (64, 32))" in message
    torch.save(torch.arange(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="no tensors"):
        load_clip(config=TINY, weights=tmp_path / "tensor.pt")


# --- tokenizer --------------------------------------------------------------------------------------
def test_tokenizer_matches_open_clip(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "w.pt")
    clip = load_clip(config=TINY, weights=tmp_path / "w.pt")
    texts = TEXTS + [LONG, ""]
    ids = clip.tokenize(texts)
    assert ids.dtype == torch.long and ids.shape == (len(texts), 77)
    assert torch.equal(ids, open_clip.get_tokenizer("ViT-B-32")(texts))
    assert torch.equal(clip.tokenize("a face with a beard"), open_clip.tokenize(["a face with a beard"]))
    assert ids[-2, -1] == EOT and ids[-2, 0] == 49406  # truncated: end-of-text kept last
    assert ids[-1, :3].tolist() == [49406, EOT, 0]
    assert clip.vocab_path.endswith("bpe_simple_vocab_16e6.txt.gz")
    torch.testing.assert_close(clip.encode_text(ids[:1]), clip.encode_text(TEXTS[:1]), atol=0, rtol=0)


# --- preprocessing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 256])
def test_styleclip_preprocess_matches_brute_force(size):
    torch.manual_seed(size)
    x = torch.rand(2, 3, size, size, dtype=torch.float64) * 2.4 - 1.2  # a little outside [-1, 1]: no clamp
    want = F.avg_pool2d(F.interpolate(x, scale_factor=7, mode="nearest"), kernel_size=size // 32)
    got = styleclip_preprocess(x)
    assert got.shape == (2, 3, 224, 224) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)  # the same linear map, exactly
    # in fp32 both sides round differently; against the exact values ours stays within 1e-6
    torch.testing.assert_close(styleclip_preprocess(x.float()), want.float(), atol=TOL, rtol=0)


def test_styleclip_preprocess_gradients_and_errors():
    x = torch.zeros(1, 3, 64, 64, requires_grad=True)
    styleclip_preprocess(x).sum().backward()
    # every input pixel becomes 49 upsampled pixels, each averaged with weight 1 / k^2 (k = 2)
    torch.testing.assert_close(x.grad, torch.full_like(x, 49 / 4), atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="divisible by 32"):
        styleclip_preprocess(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="expects 336px"):
        styleclip_preprocess(torch.zeros(1, 3, 64, 64), image_size=336)
    with pytest.raises(ValueError, match="square RGB"):
        styleclip_preprocess(torch.zeros(1, 3, 64, 32))


def test_normalized_preprocess():
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 256, 256) * 3 - 1.5
    got = normalized_preprocess(x, 224)
    assert got.shape == (2, 3, 224, 224)
    unit = F.interpolate((x.clamp(-1, 1) + 1) / 2, size=(224, 224), mode="bicubic", antialias=True).clamp(0, 1)
    torch.testing.assert_close(got, (unit - mean) / std, atol=TOL, rtol=0)
    # a flat image keeps its value through any resize: ((v + 1) / 2 - mean) / std exactly, clamped at 1
    for v in (-0.5, 0.3, 2.0):
        flat = normalized_preprocess(torch.full((1, 3, 64, 64), v), 224)
        want = ((min(v, 1.0) + 1) / 2 - mean) / std
        torch.testing.assert_close(flat, want.expand(1, 3, 224, 224), atol=1e-5, rtol=0)


def test_encode_image_is_differentiable(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "w.pt")
    clip = load_clip(config=TINY, weights=tmp_path / "w.pt")
    assert not any(p.requires_grad for p in clip.parameters())  # CLIP stays frozen
    for choice in ("styleclip", "normalized"):
        x = (torch.rand(1, 3, 64, 64) * 1.8 - 0.9).requires_grad_()
        target = clip.encode_text(["a smiling face"])
        (1 - (clip.encode_image(x, choice) * target).sum()).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="preprocess must be one of"):
        clip.encode_image(x, "raw")
