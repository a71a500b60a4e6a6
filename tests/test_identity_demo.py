"""The demo identity network (precompute/demo/train_identity.py): its training pairs, loss and AUC, a tiny run
that resumes and ships a loadable pair, the command, and the shipped network's bar."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from precompute.demo.train_identity import (
    DEMO_IDENTITY, IdentityTrainConfig, evaluate_identity, finalize, identity_faces, info_nce, moved, pair_scores, roc_auc,
    tint, train_identity,
)
from precompute.identity import IdentityConfig, IdentityNetwork, face_crop, load_identity
from tests.test_cli_methods import keep_torch_threads  # noqa: F401  (training sets torch's threads)
from tests.test_demo_models import assert_same_params, params

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "artifacts" / "demo" / "identity.json"
TINY = IdentityConfig(units=(1, 1, 1, 1), widths=(8, 8, 16, 16), embedding=16, input_size=16, se_reduction=4, crop=False)
# dropout on: a resumed run must draw the same dropout masks too
CFG = IdentityTrainConfig(steps=4, batch=4, n_identities=8, views=3, warmup=1, dropout=0.5, checkpoint_every=1)


def test_roc_auc_of_hand_made_similarities():
    # 0.9 beats all three negatives, 0.8 two and ties one, 0.3 one: (3 + 2.5 + 1) / 9
    assert roc_auc([0.9, 0.8, 0.3], [0.1, 0.5, 0.8]) == pytest.approx(6.5 / 9)
    assert roc_auc([2, 3], [0, 1]) == 1 and roc_auc([0, 1], [2, 3]) == 0 and roc_auc([1, 1], [1]) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        roc_auc([], [0.5])


def test_pair_scores_pair_each_row_with_the_next_as_different():
    a = torch.eye(3)
    scores = pair_scores(a, a.clone())  # same: cos 1, different (rows i, i + 1): cos 0
    assert scores == {"auc": 1.0, "same": 1.0, "different": 0.0}
    assert pair_scores(a, a.roll(1, 0))["auc"] == 0  # b[i + 1] = a[i]: the "different" pairs are the identical ones


def test_views_share_the_geometry_and_siblings_differ_in_one_value():
    faces = identity_faces(6, 3, seed=5, near=(0.1, 0.5))
    ids = [faces[i * 3:i * 3 + 3] for i in range(6)]
    for views in ids:
        assert len({f.geometry for f in views}) == 1 and len({f.attrs for f in views}) == 3  # attributes redrawn
    for first, second in zip(ids[0::2], ids[1::2]):
        diff = np.abs(np.subtract(first[0].geometry, second[0].geometry))
        assert (diff > 0).sum() == 1 and 0.1 <= diff.max() <= 0.5
    assert len({ids[0][0].geometry, ids[2][0].geometry, ids[4][0].geometry}) == 3  # pairs are independent draws
    assert identity_faces(6, 3, seed=5, near=(0.1, 0.5)) == faces  # seeded
    assert moved((0.2, 0.9), 1, 0.25) == (0.2, 0.65) and moved((0.2, 0.9), 0, 0.25) == (0.45, 0.9)


def test_info_nce_prefers_the_identity_s_other_view():
    torch.manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    matched = torch.stack([f, f], 1)  # [B, 2, D]: both views equal
    swapped = torch.stack([f, f.roll(1, 0)], 1)  # each second view is another identity's
    assert info_nce(matched, 0.1) < 0.01 < 1 < info_nce(swapped, 0.1)


def test_without_crop_the_whole_image_is_embedded():
    net = IdentityNetwork(TINY).eval()
    for size in (16, 24):  # 16 px: pooling to 256 px and back is exact (skipped); 24 px: through 256 px
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
        whole = F.adaptive_avg_pool2d(F.adaptive_avg_pool2d(x, 256), 16)
        assert torch.allclose(face_crop(x, 16, crop=False), whole, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(net(x), net.embed(whole), atol=1e-6)
        cropped = IdentityNetwork(replace(TINY, crop=True)).eval()
        cropped.load_state_dict(net.state_dict())
        assert not torch.allclose(cropped(x), net(x), atol=1e-3)
    with pytest.raises(ValueError, match="crop must be true or false"):
        IdentityConfig.from_dict(dict(TINY.to_dict(), crop="no"))


def test_tint_blends_about_half_the_images_towards_one_colour_each():
    x = torch.zeros(400, 3, 4, 4)
    y = tint(x, torch.Generator().manual_seed(0), 0.5)
    changed = y.flatten(1).abs().amax(1) > 0
    assert 0.4 < changed.float().mean() < 0.6  # p = 0.5
    assert torch.equal(y, y[:, :, :1, :1].expand_as(y))  # one colour over the whole image
    assert y.abs().max() <= 0.5 and y[changed].abs().amax((1, 2, 3)).mean() > 0.1  # up to half way to it
    assert torch.equal(tint(x, torch.Generator().manual_seed(0), 0.0), x)


def test_tiny_run_resumes_exactly_and_ships_a_loadable_pair(tmp_path, keep_torch_threads):  # noqa: F811
    kw = dict(config=TINY, threads=1, progress=False)
    trained, info = train_identity(tmp_path / "a", CFG, **kw)
    assert info["step"] == 4 and info["resumed_from"] == 0
    train_identity(tmp_path / "b", CFG, stop_at=3, **kw)
    resumed, info2 = train_identity(tmp_path / "b", CFG, **kw)
    assert info2["resumed_from"] == 3 and info2["history"] == info["history"]
    assert_same_params(params(resumed), params(trained))
    with pytest.raises(ValueError, match="other settings"):
        train_identity(tmp_path / "b", IdentityTrainConfig(**dict(vars(CFG), temperature=0.2)), **kw)
    metrics = evaluate_identity(trained, n=4, shift=0.25)
    weights, config = finalize(trained, tmp_path / "id", info["hparams"], metrics)
    meta = json.loads(config.read_text())
    assert meta["config"]["stored_dtype"] == "float16" and meta["config"]["training"]["steps"] == 4
    assert meta["config"]["preprocess"] == {"pool": 256, "crop": None}  # TINY embeds the whole image
    assert meta["config"]["metrics"]["renders"]["auc"] == metrics["renders"]["auc"]
    assert set(meta["config"]["metrics"]["near"]["auc"]) == {"face_width", "face_height", "face_x", "face_y",
                                                             "eye_spacing", "eye_height", "mouth_width"}
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(weights).values() if v.is_floating_point()} == {torch.float16}
    loaded = load_identity(config)
    assert loaded.config == TINY and not loaded.training
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert (loaded(x) - trained(x)).abs().max() < 0.02  # fp16 weights


def test_odd_batch_is_refused(tmp_path, keep_torch_threads):  # noqa: F811
    with pytest.raises(ValueError, match="even batch"):
        train_identity(tmp_path, IdentityTrainConfig(**dict(vars(CFG), batch=3)), config=TINY, progress=False)
    assert not any(tmp_path.iterdir())  # refused before rendering anything


def test_cli_train_identity_resumes_and_reports(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), "train-identity", "--workdir", tmp_path / "w",
                               "--steps", "2", "--batch", "4", "--n-identities", "8", "--n-eval", "6", "--threads", "1",
                               "--encoder", tmp_path / "none.json", "--out", tmp_path / "id", *args],
                              capture_output=True, text=True, cwd=ROOT)
    res = cli("--stop-at", "1")
    assert res.returncode == 0, res.stderr
    assert "stopped at step 1 of 2" in res.stdout and not (tmp_path / "id.json").exists()
    res = cli()
    assert res.returncode == 0, res.stderr
    assert "trained steps 1 -> 2" in res.stdout and "no reconstruction AUC" in res.stdout
    assert "render vs render (other attributes): AUC" in res.stdout and f"wrote {tmp_path / 'id.json'}" in res.stdout
    net = load_identity(tmp_path / "id.json")
    assert net.config == DEMO_IDENTITY
    assert json.loads((tmp_path / "id.json").read_text())["config"]["metrics"]["n"] == 6


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the demo identity network is not trained yet")
def test_shipped_identity_network_meets_the_bar():
    metrics = evaluate_identity(load_identity(SHIPPED), n=200, seed=900_002, shift=None)  # a seed no one trained on
    assert metrics["renders"]["auc"] >= 0.95, metrics
    assert metrics["renders"]["same"] > metrics["renders"]["different"] + 0.5
