"""Checkpoint loading: rosinality files round-trip exactly; every bad file gets a clear error."""
import argparse
import json

import pytest
import torch

from precompute.checkpoints import (RECOMPUTED, CheckpointError, latent_avg_source, load_generator, load_rosinality,
                                    save_generator, save_rosinality)
from runtime.checks import ToolWarning
from runtime.files import sha256_file
from tests.conftest import SMALL, make_generator


def _same_outputs(a, b, wplus):
    with torch.no_grad():
        return torch.equal(a(wplus), b(wplus))


def test_rosinality_round_trip_is_exact(tmp_path, small_gen, wplus):
    path = tmp_path / "g.pt"
    save_rosinality(small_gen, path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"g_ema", "latent_avg"}
    loaded = load_rosinality(path, sha256=sha256_file(path))
    assert loaded.config.to_dict() == SMALL.to_dict()  # size, style_dim, n_mlp, channels inferred
    assert torch.equal(loaded.latent_avg, small_gen.latent_avg)
    assert _same_outputs(small_gen, loaded, wplus)


@pytest.mark.slow
def test_ffhq_size_round_trip(tmp_path):
    from precompute.stylegan2 import Generator, GeneratorConfig
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.rosinality(1024)).eval()
    gen.mean_latent(64)
    save_rosinality(gen, tmp_path / "ffhq.pt")
    loaded = load_generator(tmp_path / "ffhq.pt")
    assert loaded.config.channel_multiplier == 2 and loaded.config.n_mlp == 8
    w = gen.wplus_from_z(torch.randn(1, 512), 0.7)
    assert _same_outputs(gen, loaded, w)


def test_bare_state_dict_loads(tmp_path, small_gen, wplus):
    torch.save(small_gen.state_dict(), tmp_path / "bare.pt")
    with pytest.warns(ToolWarning, match="has no latent_avg; using the mean of 4096 mapped samples"):
        assert _same_outputs(small_gen, load_rosinality(tmp_path / "bare.pt"), wplus)


def test_a_recomputed_latent_avg_is_said_and_recorded(tmp_path, small_gen):
    """A rosinality file without latent_avg: convert warns (one `warning:` line) and records it in the JSON,
    a checkpoint with one is recorded as such; truncated images depend on which."""
    from tests.test_cli import run_cli

    torch.save({"g_ema": small_gen.state_dict()}, tmp_path / "g.pt")
    res = run_cli("convert", tmp_path / "g.pt", tmp_path / "out")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert [l for l in res.stderr.splitlines() if l.startswith("warning: ")][0].endswith("as latent_avg_source")
    meta = json.loads((tmp_path / "out.json").read_text())
    assert meta["config"]["latent_avg_source"] == RECOMPUTED
    assert latent_avg_source(load_generator(tmp_path / "out.json")) == RECOMPUTED
    save_rosinality(small_gen, tmp_path / "with.pt")
    res = run_cli("convert", tmp_path / "with.pt", tmp_path / "with")
    assert res.returncode == 0 and "warning" not in res.stderr
    assert json.loads((tmp_path / "with.json").read_text())["config"]["latent_avg_source"] == "checkpoint"


def test_own_format_round_trip_and_tamper_detection(tmp_path, small_gen, wplus):
    weights, config = save_generator(small_gen, tmp_path / "gen")
    assert json.loads(config.read_text())["config"]["channels"] == {"4": 32, "8": 32, "16": 16, "32": 8}
    loaded = load_generator(config)
    assert torch.equal(loaded.latent_avg, small_gen.latent_avg) and _same_outputs(small_gen, loaded, wplus)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_generator(weights)


@pytest.mark.parametrize("version", ["1", 1.0, True, None, 2])
def test_format_version_must_be_the_integer(tmp_path, small_gen, version):
    _, config = save_generator(small_gen, tmp_path / "gen")
    meta = json.loads(config.read_text())
    meta["format_version"] = version
    config.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=rf"has format version {json.dumps(version)}, this toolkit reads the integer 1"):
        load_generator(config)


def _save(tmp_path, obj, name="bad.pt"):
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def test_missing_keys_are_named(tmp_path, small_gen):
    sd = small_gen.state_dict()
    del sd["convs.1.noise.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: convs\.1\.noise\.weight"):
        load_rosinality(_save(tmp_path, {"g_ema": sd}))


def test_unexpected_keys_are_named(tmp_path, small_gen):
    sd = dict(small_gen.state_dict(), **{"extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: extra\.weight"):
        load_rosinality(_save(tmp_path, {"g_ema": sd}))


def test_wrong_shapes_are_named(tmp_path, small_gen):
    sd = small_gen.state_dict()
    sd["conv1.activate.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"wrong shapes: conv1\.activate\.bias \(7,\) \(expected \(32,\)\)"):
        load_rosinality(_save(tmp_path, {"g_ema": sd}))


def test_wrong_latent_avg(tmp_path, small_gen):
    with pytest.raises(CheckpointError, match="latent_avg has 3 values"):
        load_rosinality(_save(tmp_path, {"g_ema": small_gen.state_dict(), "latent_avg": torch.zeros(3)}))


def test_discriminator_only_checkpoint(tmp_path):
    d = {"convs.0.0.weight": torch.zeros(8, 3, 1, 1), "final_linear.0.weight": torch.zeros(4, 4)}
    with pytest.raises(CheckpointError, match="discriminator-only"):
        load_rosinality(_save(tmp_path, {"d": d}))
    with pytest.raises(CheckpointError, match="looks like a discriminator"):
        load_rosinality(_save(tmp_path, {"g_ema": d}))


def test_training_checkpoint_needs_explicit_trust(tmp_path, small_gen, wplus):
    args = argparse.Namespace(size=32, batch=16)
    path = _save(tmp_path, {"g": small_gen.state_dict(), "g_ema": small_gen.state_dict(), "args": args})
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_rosinality(path)
    with pytest.warns(ToolWarning, match="has no latent_avg"):  # a training checkpoint keeps it beside g_ema
        assert _same_outputs(small_gen, load_rosinality(path, trust_pickle=True), wplus)


def test_not_a_checkpoint_and_missing_file(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_rosinality(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_rosinality(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="no generator weights"):
        load_rosinality(_save(tmp_path, {"something": torch.zeros(1)}))


def test_sha256_is_verified_before_loading(tmp_path, small_gen):
    path = tmp_path / "g.pt"
    save_rosinality(small_gen, path)
    with pytest.raises(CheckpointError, match="sha256"):
        load_rosinality(path, sha256="0" * 64)


def test_config_inference_for_other_layouts(tmp_path):
    from precompute.stylegan2 import GeneratorConfig
    cfg = GeneratorConfig.rosinality(256, 64, 2, channel_multiplier=1)
    gen = make_generator(cfg)
    save_rosinality(gen, tmp_path / "g256.pt")
    loaded = load_rosinality(tmp_path / "g256.pt")
    assert loaded.config.to_dict() == cfg.to_dict() and loaded.config.channel_multiplier == 1
