"""Latent mapper: reference key names, the PixelNorm-over-rows quirk, groups, official import."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from precompute.checkpoints import CheckpointError
from precompute.mapper import (GROUPS, LatentMapper, MapperConfig, default_split, import_official_mapper,
                               load_mapper, save_mapper)


def make_mapper(enabled=None, n_latent=18, dim=512, seed=0):
    torch.manual_seed(seed)
    cfg = MapperConfig(n_latent, dim, enabled=enabled or dict.fromkeys(GROUPS, True), prompt="purple hair")
    mapper = LatentMapper(cfg)
    with torch.no_grad():  # non-zero biases so they are exercised
        for name, p in mapper.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 10.0)
    return mapper.eval()


def test_state_dict_names_match_reference():
    sd = make_mapper().state_dict()
    expected = {f"{m}.mapping.{i}.{p}" for m in ("course_mapping", "medium_mapping", "fine_mapping")
                for i in range(1, 5) for p in ("weight", "bias")}
    assert set(sd) == expected
    assert sd["course_mapping.mapping.1.weight"].shape == (512, 512)
    assert sd["fine_mapping.mapping.4.bias"].shape == (512,)
    assert sum(v.numel() for v in sd.values()) == 3 * 4 * (512 * 512 + 512)  # 3.15 M


def test_group_output_matches_hand_computation():
    mapper = make_mapper(n_latent=10, dim=16)
    w = torch.randn(3, 10, 16)
    sd = mapper.state_dict()
    a, b = mapper.config.split
    x = w[:, a:b]
    x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # over the group's W+ rows
    for i in range(1, 5):
        wt, bias = sd[f"medium_mapping.mapping.{i}.weight"], sd[f"medium_mapping.mapping.{i}.bias"]
        x = F.leaky_relu(F.linear(x, wt * 0.01 / math.sqrt(16)) + bias * 0.01, 0.2) * math.sqrt(2)
    with torch.no_grad():
        torch.testing.assert_close(mapper(w)[:, a:b], x, rtol=1e-5, atol=1e-6)


def test_pixelnorm_runs_over_wplus_rows_not_features():
    mapper = make_mapper()
    w = torch.randn(2, 18, 512)
    per_feature = torch.rand(512) + 0.5  # same factor on every row: normalized away over rows
    per_row = torch.rand(18)[None, :, None] + 0.5  # differs per row: survives normalization over rows
    with torch.no_grad():
        base = mapper(w)
        torch.testing.assert_close(mapper(w * per_feature), base, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(mapper(w * per_row), base, rtol=1e-3, atol=1e-3)


def test_disabled_groups_give_zero_delta_and_no_weights():
    mapper = make_mapper(enabled={"coarse": True, "medium": True, "fine": False})
    assert not any(k.startswith("fine_mapping") for k in mapper.state_dict())
    w = torch.randn(2, 18, 512)
    with torch.no_grad():
        delta = mapper(w)
        edited = mapper.edit(w, strength=1.0)
    assert torch.count_nonzero(delta[:, 8:]) == 0 and torch.count_nonzero(delta[:, :8]) > 0
    torch.testing.assert_close(edited, w + 0.1 * delta)
    torch.testing.assert_close(edited[:, 8:], w[:, 8:])


def test_default_split():
    assert default_split(18) == (4, 8)
    for n in (4, 6, 10, 14, 16):
        a, b = default_split(n)
        assert 0 < a < b < n
    with pytest.raises(ValueError, match="split"):
        MapperConfig(10, 16, split=(5, 3))
    with pytest.raises(ValueError, match="at least one"):
        MapperConfig(10, 16, enabled=dict.fromkeys(GROUPS, False))


def test_own_format_round_trip(tmp_path):
    mapper = make_mapper(enabled={"coarse": False, "medium": True, "fine": True}, n_latent=10, dim=32)
    save_mapper(mapper, tmp_path / "purple")
    loaded = load_mapper(tmp_path / "purple.json")
    assert loaded.config.to_dict() == mapper.config.to_dict()
    w = torch.randn(2, 10, 32)
    with torch.no_grad():
        assert torch.equal(loaded(w), mapper(w))


def test_import_official_checkpoint_drops_decoder(tmp_path):
    mapper = make_mapper(enabled={"coarse": True, "medium": True, "fine": False})
    state = {f"mapper.{k}": v for k, v in mapper.state_dict().items()}
    state["decoder.style.1.weight"] = torch.zeros(512, 512)
    state["decoder.input.input"] = torch.zeros(1, 512, 4, 4)
    opts = {"description": "mohawk hairstyle", "stylegan_size": 1024, "no_fine_mapper": True, "batch_size": 2}
    torch.save({"state_dict": state, "opts": opts}, tmp_path / "mohawk.pt")
    imported = import_official_mapper(tmp_path / "mohawk.pt")
    assert imported.config.enabled == {"coarse": True, "medium": True, "fine": False}
    assert imported.config.prompt == "mohawk hairstyle" and imported.config.n_latent == 18
    w = torch.randn(2, 18, 512)
    with torch.no_grad():
        assert torch.equal(imported(w), mapper(w))


def test_imported_prompt_and_finding_the_mapper_by_it(tmp_path, bundle):
    """StyleCLIP records a short description ("purple hair"); --prompt names the sentence users will type, and
    `edit --method mapper` finds a mapper by its prompt (case and spaces ignored) or its short name."""
    import json
    import subprocess
    import sys

    from runtime.editor import Editor

    state = {f"mapper.{k}": v for k, v in make_mapper(n_latent=18, dim=16).state_dict().items()}
    torch.save({"state_dict": state, "opts": {"description": "purple hair", "stylegan_size": 1024}}, tmp_path / "ph.pt")
    torch.save({"state_dict": state, "opts": {"stylegan_size": 1024}}, tmp_path / "bare.pt")
    assert import_official_mapper(tmp_path / "ph.pt").config.prompt == "purple hair"
    with pytest.raises(CheckpointError, match="records no description .*--prompt"):
        import_official_mapper(tmp_path / "bare.pt")
    cli = Path(__file__).resolve().parents[1] / "cli.py"
    res = subprocess.run([sys.executable, str(cli), "import-mapper", str(tmp_path / "bare.pt"), str(tmp_path / "long"),
                          "--prompt", "a face with purple hair"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "long.json").read_text())["config"]["prompt"] == "a face with purple hair"
    editor = Editor(bundle)  # its mapper: file purple_hair.json, prompt "purple hair"
    for asked in ("purple hair", " Purple  HAIR ", "purple_hair"):
        assert editor.mapper_for(asked) == "purple_hair", asked
    with pytest.raises(ValueError, match="no mapper is named or was trained for"):
        editor.mapper_for("a face with blue hair")


def test_import_rejects_non_mapper_files(tmp_path):
    torch.save({"state_dict": {"decoder.x": torch.zeros(1)}}, tmp_path / "dec.pt")
    with pytest.raises(CheckpointError, match="no 'mapper.\\*' weights"):
        import_official_mapper(tmp_path / "dec.pt")
    torch.save({"g_ema": {}}, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="not a StyleCLIP mapper checkpoint"):
        import_official_mapper(tmp_path / "g.pt")
    state = {f"mapper.{k}": v for k, v in make_mapper().state_dict().items()}
    state["mapper.course_mapping.mapping.1.bias"] = torch.zeros(3)
    torch.save({"state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="wrong shapes: course_mapping.mapping.1.bias"):
        import_official_mapper(tmp_path / "bad.pt")


def _reference_levels_mapper(state: dict, w: torch.Tensor, enabled: dict) -> torch.Tensor:
    """StyleCLIP's LevelsMapper forward written from its definition: rows [:4], [4:8], [8:] at every size;
    each group PixelNorm over its rows (dim 1), then 4 x (linear with weight*0.01/sqrt(in), bias*0.01 on the
    last dim, leaky ReLU 0.2, x sqrt(2)); a disabled group gives zeros."""
    parts = []
    for name, rows in (("course_mapping", slice(0, 4)), ("medium_mapping", slice(4, 8)), ("fine_mapping", slice(8, None))):
        x = w[:, rows]
        if not enabled[name]:
            parts.append(torch.zeros_like(x))
            continue
        x = x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)
        for i in range(1, 5):
            weight, bias = state[f"mapper.{name}.mapping.{i}.weight"], state[f"mapper.{name}.mapping.{i}.bias"]
            x = F.leaky_relu(x @ (weight * 0.01 / math.sqrt(weight.shape[1])).t() + bias * 0.01, 0.2) * math.sqrt(2)
        parts.append(x)
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("size,dim", [(64, 128), (256, 512), (1024, 512)])
def test_import_official_mapper_matches_styleclip_forward(tmp_path, size, dim):
    n_latent = 2 * int(math.log2(size)) - 2
    torch.manual_seed(size)
    enabled = {"course_mapping": True, "medium_mapping": size != 256, "fine_mapping": True}
    state = {}
    for name, on in enabled.items():
        for i in range(1, 5):
            if on:
                state[f"mapper.{name}.mapping.{i}.weight"] = torch.randn(dim, dim) / 0.01
                state[f"mapper.{name}.mapping.{i}.bias"] = torch.randn(dim) * 10
    state["decoder.style.1.weight"] = torch.zeros(dim, dim)
    torch.save({"state_dict": state, "opts": {"stylegan_size": size, "description": "purple hair"}}, tmp_path / "m.pt")
    imported = import_official_mapper(tmp_path / "m.pt")
    assert imported.config.n_latent == n_latent and imported.config.split == (4, 8)
    w = torch.randn(3, n_latent, dim)
    with torch.no_grad():
        ours, ref = imported(w), _reference_levels_mapper(state, w, enabled)
    assert (ours - ref).abs().max() <= 1e-5  # outputs reach ~7 in magnitude


def test_import_official_mapper_refuses_too_small_generators_and_single_mappers(tmp_path):
    state = {f"mapper.{k}": v for k, v in make_mapper(n_latent=18, dim=16).state_dict().items()}
    torch.save({"state_dict": state, "opts": {"stylegan_size": 32}}, tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match="more than 8 W\\+ rows"):
        import_official_mapper(tmp_path / "small.pt")
    torch.save({"state_dict": {"mapper.mapping.mapping.1.weight": torch.zeros(16, 16)}}, tmp_path / "single.pt")
    with pytest.raises(CheckpointError, match="SingleMapper"):
        import_official_mapper(tmp_path / "single.pt")
