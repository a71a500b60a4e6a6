"""Global-direction tables: S statistics, fs3 (sharded, resumable), official imports, CLI."""
import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from precompute import global_directions as gd
from precompute.checkpoints import load_generator
from precompute.clip_model import load_clip

N = 3  # latents per channel: small, the math is the same


@pytest.fixture(scope="module")
def setup(models):
    torch.set_num_threads(1)
    gen, clip = load_generator(models["generator"]), load_clip(weights=models["clip"])
    mean, std = gd.style_statistics(gen, 512, batch=200)
    full = gd.compute_fs3(gen, clip, mean, std, n_images=N, progress=False)
    return gen, clip, mean, std, full


def fs3(setup, **kw):
    gen, clip, mean, std, _ = setup
    return gd.compute_fs3(gen, clip, mean, std, n_images=kw.pop("n_images", N), progress=False, **kw)


def test_statistics_match_direct_computation(small_gen):
    mean, std = gd.style_statistics(small_gen, 300, psi=0.7, seed=3, batch=64)  # uneven last batch
    z = gd.sample_z(300, small_gen.config.style_dim, seed=3)
    with torch.no_grad():
        s = torch.cat(small_gen.styles(small_gen.wplus_from_z(z, 0.7)), 1).double().numpy()
    assert mean.dtype == np.float32 and mean.shape == (small_gen.layout.total,)
    np.testing.assert_allclose(mean, s.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, s.std(0), atol=1e-6)  # ddof 0


def test_save_statistics_reads_without_pickle(tmp_path, small_gen):
    mean, std = gd.style_statistics(small_gen, 64)
    path = gd.save_style_statistics(tmp_path / "s.npz", mean, std, {"n": 64})
    with np.load(path, allow_pickle=False) as f:
        assert np.array_equal(f["mean"], mean) and np.array_equal(f["std"], std)
        assert json.loads(str(f["meta"])) == {"n": 64}
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temp files left


def test_rows_are_unit_and_follow_conv_index(setup):
    gen, clip, mean, std, full = setup
    layout = gen.layout
    assert full.shape == (layout.conv_channels, clip.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)
    # Row 33 is channel 1 of convs.0: its flat S position skips conv1 and the ToRGB layer to_rgb1.
    row = layout.layers[0].channels + 1
    c = layout.conv_index()[row]
    assert c == layout.layers[2].offset + 1
    with torch.no_grad():
        s = torch.cat(gen.styles(gen.wplus_from_z(gd.sample_z(N, gen.config.style_dim, 0), 0.7)), 1)
        f = []
        for sign in (1, -1):
            edited = s.clone()
            edited[:, c] = float(mean[c]) + sign * 5.0 * float(std[c])
            f.append(clip.encode_image(gen.synthesis_flat(edited)).numpy())
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    expected = unit(unit(unit(f[0]) - unit(f[1])).mean(0))
    np.testing.assert_allclose(full[row], expected, atol=1e-5)


def test_shard_merge_equals_unsharded_run(setup, tmp_path):
    gen, _, _, _, full = setup
    for i in range(3):
        fs3(setup, shard=(i, 3), workdir=tmp_path)  # shard boundaries split the unsharded run's channel groups
    merged = gd.merge_fs3(tmp_path, 3, gen.layout, out=tmp_path / "fs3.npy")
    assert np.abs(merged - full).max() <= 1e-6
    assert np.array_equal(np.load(tmp_path / "fs3.npy", allow_pickle=False), merged)
    info = json.loads((tmp_path / "fs3.json").read_text())
    assert info["rows"] == gen.layout.conv_channels and info["shards"] == 3
    assert "to_rgb1" in info["uncovered_layers"] and info["covered_layers"][0] == "conv1"
    with pytest.raises(FileNotFoundError, match="shard 0/2 missing"):
        gd.merge_fs3(tmp_path, 2, gen.layout)


def test_killed_shard_resumes(setup, tmp_path):
    gen = setup[0]
    start, end = gd.shard_range(gen.layout.conv_channels, (0, 2))

    def kill(done):
        if done >= 5:
            raise KeyboardInterrupt  # stands in for a kill right after a checkpoint

    with pytest.raises(KeyboardInterrupt):
        fs3(setup, shard=(0, 2), workdir=tmp_path, batch=2 * N, save_every_s=0, on_progress=kill)
    assert gd.shard_status(tmp_path, 2) == [(5, end - start), None]
    with pytest.raises(ValueError, match="incomplete"):
        gd.merge_fs3(tmp_path, 2)
    seen = []
    rows = fs3(setup, shard=(0, 2), workdir=tmp_path, batch=2 * N, on_progress=seen.append)
    assert seen[0] == 6  # resumed after the 5 saved channels
    # Compared with an uninterrupted run of the same batch: generator calls of < 16 images take other
    # conv kernels (~1e-6 image differences, which d = unit(f+ - f-) amplifies to ~1e-5).
    assert np.abs(rows - fs3(setup, shard=(0, 2), batch=2 * N)).max() <= 1e-6
    seen.clear()
    assert np.array_equal(fs3(setup, shard=(0, 2), workdir=tmp_path, on_progress=seen.append), rows)
    assert not seen  # a complete shard is final: nothing recomputed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard_0_of_2.npz"]


def test_killed_inside_a_channel_resumes_there(setup, tmp_path, monkeypatch):
    """A channel is 2N renders (30 min at 1024 px on 2 cores): the images already embedded are saved and a
    rerun continues from them; progress counts images, so its ETA shows before the first channel ends."""
    gen, clip = setup[:2]
    calls, real, die = [], clip.encode_image, [True]

    def encode(x, *a, **kw):
        calls.append(len(x))
        if len(calls) == 5 and die and die.pop():  # channel 0 took 3 batches of 2 images; die inside channel 1
            raise KeyboardInterrupt
        return real(x, *a, **kw)

    monkeypatch.setattr(clip, "encode_image", encode)
    with pytest.raises(KeyboardInterrupt):
        fs3(setup, shard=(0, 4), workdir=tmp_path, batch=2, save_every_s=0)
    saved = gd._read_shard(gd.shard_path(tmp_path, (0, 4)))
    assert saved["done"] == 1 and saved["partial"][0] == (1, 2) and len(saved["partial"][1]) == 2
    calls.clear()
    rows = fs3(setup, shard=(0, 4), workdir=tmp_path, batch=2)
    start, end = gd.shard_range(gen.layout.conv_channels, (0, 4))
    assert sum(calls) == (end - start) * 2 * N - 2 * N - 2  # neither channel 0 nor channel 1's first batch again
    monkeypatch.setattr(clip, "encode_image", real)
    assert np.abs(rows - fs3(setup, shard=(0, 4), batch=2)).max() <= 1e-6


def test_resume_with_other_settings_is_refused(setup, tmp_path):
    fs3(setup, shard=(0, 4), workdir=tmp_path)
    for change, key in (({"n_images": N + 1}, "n_images"), ({"alpha": 4.0}, "alpha"), ({"seed": 1}, "seed")):
        with pytest.raises(ValueError, match=key):
            fs3(setup, shard=(0, 4), workdir=tmp_path, **change)


def test_max_resolution_stops_at_a_layer_boundary(setup, tmp_path):
    gen, _, _, _, full = setup
    layout = gen.layout
    rows = gd.fs3_rows(layout, 8)  # conv1 (4 px) + convs.0, convs.1 (8 px)
    assert rows == sum(l.channels for l in layout.conv_layers[:3]) and rows in gd.layer_boundaries(layout)
    assert gd.fs3_rows(layout, 20) == gd.fs3_rows(layout, 16)
    for i in range(2):
        fs3(setup, shard=(i, 2), workdir=tmp_path, max_resolution=8)
    merged = gd.merge_fs3(tmp_path, 2, layout, out=tmp_path / "fs3.npy")
    assert np.abs(merged - full[:rows]).max() <= 1e-6
    info = json.loads((tmp_path / "fs3.json").read_text())
    assert info["covered_layers"] == ["conv1", "convs.0", "convs.1"] and "convs.2" in info["uncovered_layers"]
    with pytest.raises(ValueError, match="shard"):
        gd.shard_range(rows, (2, 2))


def test_import_official_fs3(small_gen, tmp_path):
    layout = small_gen.layout
    rows = gd.fs3_rows(layout, 16)  # like FFHQ's 5376: stops before the last resolution
    table = np.random.default_rng(0).standard_normal((rows, 32))
    table = (table / np.linalg.norm(table, axis=1, keepdims=True)).astype(np.float16)
    np.save(tmp_path / "fs3.npy", table)
    out = gd.import_official_fs3(tmp_path / "fs3.npy", layout)
    assert out.dtype == np.float32 and out.shape == (rows, 32)
    np.save(tmp_path / "bad.npy", table[:-1])
    with pytest.raises(ValueError, match="boundary"):
        gd.import_official_fs3(tmp_path / "bad.npy", layout)
    np.save(tmp_path / "bad.npy", table * 2)
    with pytest.raises(ValueError, match="unit"):
        gd.import_official_fs3(tmp_path / "bad.npy", layout)


def test_import_official_s_mean_std(small_gen, tmp_path):
    layout = small_gen.layout
    rng = np.random.default_rng(0)
    means = [rng.standard_normal(l.channels).astype(np.float32) for l in layout.layers]
    stds = [rng.random((1, l.channels)).astype(np.float32) for l in layout.layers]  # [1, C] tolerated
    path = tmp_path / "S_mean_std"
    path.write_bytes(pickle.dumps([means, stds]))
    with pytest.raises(ValueError, match="can run arbitrary code"):
        gd.import_official_s_mean_std(path, layout)
    mean, std = gd.import_official_s_mean_std(path, layout, trust_pickle=True)
    assert np.array_equal(mean, np.concatenate(means)) and np.array_equal(std, np.concatenate(stds, 1)[0])
    path.write_bytes(pickle.dumps([means[:-1], stds]))
    with pytest.raises(ValueError, match=f"{len(layout)} arrays"):
        gd.import_official_s_mean_std(path, layout, trust_pickle=True)


def test_cli(models, tmp_path):
    run = lambda *args: CliRunner().invoke(main, [str(a) for a in args])
    gen, clip = models["generator"], models["clip"]
    for bad in ("2/2", "a/b", "1"):
        res = run("fs3", "--generator", gen, "--clip", clip, "--shard", bad, "--workdir", tmp_path / "w")
        assert res.exit_code == 2 and "--shard" in res.output
    res = run("fs3", "--generator", gen, "--clip", clip, "--shard", "0/999", "--workdir", tmp_path / "w")
    assert res.exit_code == 2 and "at most one shard per channel" in res.output
    assert not (tmp_path / "w").exists()  # nothing written

    assert run("s-stats", "--generator", gen, "-n", 256, "--out", tmp_path / "s.npz").exit_code == 0
    for i in range(2):
        res = run("fs3", "--generator", gen, "--clip", clip, "--s-stats", tmp_path / "s.npz", "--images", 2,
                  "--shard", f"{i}/2", "--workdir", tmp_path / "w", "--max-resolution", 8)
        assert res.exit_code == 0, res.output
    res = run("fs3-merge", "--workdir", tmp_path / "w", "--shards", 2, "--out", tmp_path / "fs3.npy")
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "fs3.npy").shape == (gd.fs3_rows(load_generator(gen).layout, 8), 32)

    stats = np.load(tmp_path / "s.npz")
    layout = load_generator(gen).layout
    (tmp_path / "S_mean_std").write_bytes(pickle.dumps([layout.split(stats["mean"]), layout.split(stats["std"])]))
    args = ("import-styleclip", "--fs3", tmp_path / "fs3.npy", "--s-mean-std", tmp_path / "S_mean_std",
            "--generator", gen, "--out", tmp_path / "imported")
    res = run(*args)
    assert res.exit_code == 2 and "--trust-pickle" in res.output and not (tmp_path / "imported").exists()
    assert run(*args, "--trust-pickle").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "imported").iterdir()) == ["fs3.json", "fs3.npy", "s_stats.npz"]
