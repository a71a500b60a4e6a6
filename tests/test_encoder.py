"""The e4e encoder: e4e's names and shapes, parity with a from-the-spec forward pass, strict official import."""
import argparse

import pytest
import torch

from precompute.checkpoints import CheckpointError
from precompute.encoder import Encoder4Editing, EncoderConfig, import_e4e, load_encoder, save_encoder
from tests import e4e_reference as ref
from tests.conftest import make_generator
from tests.models import GEN_CONFIG

SMALL_CONFIG = EncoderConfig(64, (3, 4, 14, 3), (16, 24, 32, 48), n_latent=8, style_dim=64, se_reduction=8)


@pytest.fixture(scope="module")
def decoder_state():
    return make_generator(GEN_CONFIG).state_dict()


def images(n=2, size=64, seed=3):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_names_and_shapes_are_e4es():
    ours = {k: tuple(v.shape) for k, v in Encoder4Editing(EncoderConfig.official()).state_dict().items()}
    assert ours.pop("latent_avg") == (18, 512)
    assert ours == ref.parameter_shapes()  # IR-SE-50, 18 style blocks, two lateral convs: exactly e4e's tensors
    small = {k: tuple(v.shape) for k, v in Encoder4Editing(SMALL_CONFIG).state_dict().items() if k != "latent_avg"}
    assert small == ref.parameter_shapes(**ref.SMALL)


def test_forward_matches_reference_blocks_and_whole():
    torch.manual_seed(0)
    enc = Encoder4Editing(SMALL_CONFIG)
    state = ref.random_state(ref.parameter_shapes(**ref.SMALL), seed=1)
    avg = torch.randn(8, 64)
    enc.load_state_dict(dict(state, latent_avg=avg))
    enc.eval()
    x = torch.randn(3, 16, 32, 32)
    with torch.no_grad():
        # one IR-SE unit with a conv shortcut (stride 2) and one with the subsampling shortcut
        torch.testing.assert_close(enc.body[3](x), ref.irse_ref(state, "body.3", x, 16, 24, 2), atol=1e-5, rtol=1e-5)
        y = torch.randn(3, 24, 16, 16)
        torch.testing.assert_close(enc.body[4](y), ref.irse_ref(state, "body.4", y, 24, 24, 1), atol=1e-5, rtol=1e-5)
        f = torch.randn(3, 48, 16, 16)
        torch.testing.assert_close(enc.styles[7](f), ref.style_ref(state, 7, f), atol=1e-5, rtol=1e-5)
        img = images(3)
        out = enc(img)
        expected = ref.e4e_ref(state, img, 8, avg)
    assert out.shape == (3, 8, 64)
    assert (out - expected).abs().max() <= 1e-5
    assert out.std() > 0.1 and (out[:, 1:] - out[:, :1]).abs().max() > 0.01  # every row has its own delta


def test_rows_are_w0_plus_deltas(decoder_state):
    enc = Encoder4Editing(SMALL_CONFIG).eval()
    with torch.no_grad():
        codes = enc.codes(images())
        f_fine, f_med, f_coarse = enc.features(images())
        w0 = enc.styles[0](f_coarse)
    torch.testing.assert_close(codes[:, 0], w0)
    with torch.no_grad():
        torch.testing.assert_close(codes[:, 1] - w0, enc.styles[1](f_coarse), atol=1e-6, rtol=1e-5)


def test_official_checkpoint_loads_strictly_and_matches(tmp_path, decoder_state):
    path = tmp_path / "e4e_small.pt"
    state, avg = ref.official_checkpoint(path, decoder_state, training_state=True)
    enc = load_encoder(path)  # weights_only: the coach's dict of tensors, numbers, strings and lists
    assert enc.config == SMALL_CONFIG
    img = images(2)
    with torch.no_grad():
        assert (enc(img) - ref.e4e_ref(state, img, 8, avg)).abs().max() <= 1e-5
    torch.testing.assert_close(enc.latent_avg, avg.repeat(8, 1))
    # our format round trip
    save_encoder(enc, tmp_path / "ours")
    again = load_encoder(tmp_path / "ours.json")
    with torch.no_grad():
        assert torch.equal(again(img), enc(img))


def test_generator_latent_avg_and_no_latent_avg(tmp_path, decoder_state):
    path = tmp_path / "flat.pt"
    state, avg = ref.official_checkpoint(path, decoder_state, latent_avg_rows=False)  # a generator's [512]
    torch.testing.assert_close(load_encoder(path).latent_avg, avg.repeat(8, 1))
    path2 = tmp_path / "raw.pt"
    ref.official_checkpoint(path2, decoder_state, opts_extra={"start_from_latent_avg": False})
    assert torch.count_nonzero(import_e4e(path2).latent_avg) == 0  # e4e then adds nothing
    ckpt = torch.load(path, weights_only=True)
    del ckpt["latent_avg"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="carries no 'latent_avg'"):
        import_e4e(path)


def _edited(tmp_path, decoder_state, change, name="bad.pt"):
    path = tmp_path / name
    ref.official_checkpoint(path, decoder_state)
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("change,message", [
    (lambda c: c["state_dict"].pop("encoder.styles.5.linear.bias"), r"missing keys: styles\.5\.linear\.bias"),
    (lambda c: c["state_dict"].update({"encoder.styles.2.extra": torch.zeros(1)}), r"unexpected keys: styles\.2\.extra"),
    (lambda c: c["state_dict"].update({"encoder.latlayer1.weight": torch.zeros(48, 31, 1, 1)}),
     r"wrong shapes: latlayer1\.weight \(48, 31, 1, 1\) \(expected \(48, 32, 1, 1\)\)"),
    (lambda c: c["state_dict"].pop("encoder.body.21.res_layer.1.weight"), r"missing keys: body\.21\.res_layer\.1\.weight"),
    (lambda c: c.update(latent_avg=torch.zeros(5, 64)), r"latent_avg has shape \(5, 64\), expected \[8, 64\] or \[64\]"),
    (lambda c: c["opts"].update(stylegan_size=1024), r"stylegan_size'\] 1024 means 18 W\+ rows, but the encoder has 8"),
    (lambda c: c["opts"].update(encoder_type="GradualStyleEncoder"), r"'GradualStyleEncoder' encoder \(pSp\), not e4e"),
    (lambda c: c["opts"].update(encoder_type="ProgressiveBackboneEncoder"), r"\(ReStyle\), not e4e's 'Encoder4Editing'"),
    (lambda c: c["state_dict"].update({"encoder.input_layer.0.weight": torch.zeros(16, 6, 3, 3)}),
     r"takes 6 input channels \(ReStyle"),
])
def test_bad_checkpoints_name_the_problem(tmp_path, decoder_state, change, message):
    with pytest.raises(CheckpointError, match=message):
        import_e4e(_edited(tmp_path, decoder_state, change))


def test_other_files_passed_as_encoder(tmp_path, decoder_state, models):
    torch.save({"g_ema": decoder_state, "latent_avg": torch.zeros(64)}, tmp_path / "gen.pt")
    with pytest.raises(CheckpointError, match="is a StyleGAN2 generator checkpoint"):
        load_encoder(tmp_path / "gen.pt")
    torch.save({"state_dict": {"mapper.course_mapping.mapping.1.weight": torch.zeros(4, 4)}, "opts": {}}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="looks like a StyleCLIP mapper"):
        load_encoder(tmp_path / "m.pt")
    for kind, path in (("latent-mapper", models["mapper"]), ("stylegan2-generator", models["generator"])):
        with pytest.raises(CheckpointError, match=f"describes a '{kind}', not a 'e4e-encoder'"):
            load_encoder(path)


def test_pickled_opts_need_trust(tmp_path, decoder_state):
    path = _edited(tmp_path, decoder_state, lambda c: c.update(opts=argparse.Namespace(**c["opts"])))
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_encoder(path)
    assert load_encoder(path, trust_pickle=True).config == SMALL_CONFIG


@pytest.mark.slow
def test_ffhq_size_encoder_matches_reference(tmp_path):
    """e4e_ffhq_encode.pt's architecture (IR-SE-50, 256 px, 18 x 512) with random weights, saved as e4e does."""
    state = ref.random_state(ref.parameter_shapes(), seed=5)
    avg = torch.randn(512) * 0.3
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in state.items()},
                "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True},
                "latent_avg": avg.repeat(18, 1)}, tmp_path / "e4e_ffhq.pt")
    enc = load_encoder(tmp_path / "e4e_ffhq.pt")
    assert enc.config == EncoderConfig.official()
    x = images(1, 256)
    with torch.no_grad():
        assert (enc(x) - ref.e4e_ref(state, x, 18, avg)).abs().max() <= 1e-4
