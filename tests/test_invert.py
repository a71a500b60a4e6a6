"""Inversion end to end: an official-format e4e checkpoint gives the same W+ through load_encoder, the bundle's
encoder graph and `cli.py invert`; the runtime's picture handling; every bad input through the CLI."""
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from precompute.encoder import load_encoder
from runtime.editor import Editor
from tests import e4e_reference as ref

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4  # issue 16's bar for the official format, every path


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def editor(bundle):
    return Editor(bundle)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Smooth random 64 px RGB pictures (the test encoder's size) saved as PNG."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((64, 64), Image.BICUBIC)
        paths.append(folder / f"p{i}.png")
        image.save(paths[-1])
    return paths


def reference_wplus(models, paths) -> np.ndarray:
    """From the checkpoint file itself: e4e's tensors through the from-the-spec forward pass."""
    ckpt = torch.load(models["encoder"], map_location="cpu", weights_only=True)
    state = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).astype(np.float32)
    x = torch.from_numpy(x.transpose(0, 3, 1, 2) / 127.5 - 1)  # ToTensor + Normalize(0.5, 0.5)
    with torch.no_grad():
        return ref.e4e_ref(state, x, 8, ckpt["latent_avg"]).numpy()


def test_same_wplus_through_every_path(models, bundle, editor, pictures, tmp_path):
    expected = reference_wplus(models, pictures)
    assert np.abs(expected).max() > 0.5  # a meaningful scale for the 1e-4 tolerance
    x = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in pictures]).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    with torch.no_grad():
        torch_w = load_encoder(models["encoder"])(x).numpy()
    runtime_w = editor.invert(pictures)
    res = run_cli("invert", *pictures, "--bundle", bundle, "--out", tmp_path / "w.npy", "--recon", tmp_path / "r.png")
    assert res.returncode == 0, res.stderr
    cli_w = np.load(tmp_path / "w.npy")
    for name, w in (("load_encoder", torch_w), ("runtime", runtime_w), ("cli invert", cli_w)):
        assert w.shape == (3, 8, 64) and w.dtype == np.float32, name
        assert np.abs(w - expected).max() <= TOL, (name, np.abs(w - expected).max())
    grid = Image.open(tmp_path / "r.png")
    assert grid.size[0] > 2 * 128 and grid.size[1] > 3 * 128  # 3 rows: input | reconstruction at 128 px
    np.testing.assert_array_equal(editor.render(cli_w), editor.render(runtime_w))


def test_runtime_inverts_with_torch_blocked(bundle, pictures):
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "open_clip"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from runtime.editor import Editor, GlobalEdit, MapperEdit
e = Editor({str(bundle)!r})
w = e.invert([{str(pictures[0])!r}, {str(pictures[1])!r}])
images = e.edit(w, [GlobalEdit("a face with purple hair"), MapperEdit("purple_hair")])
assert w.shape == (2, 8, 64) and images.shape == (2, 32, 32, 3)
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_input_forms_give_the_same_wplus(editor, pictures):
    rgb = np.asarray(Image.open(pictures[0]))
    base = editor.invert(pictures[0])
    batch = np.stack([rgb, rgb])
    for form in (str(pictures[0]), Image.open(pictures[0]), rgb, batch, [rgb, Image.open(pictures[0])]):
        w = editor.invert(form)
        np.testing.assert_array_equal(w, np.repeat(base, len(w), 0))
    grey = np.asarray(Image.open(pictures[0]).convert("L"))
    np.testing.assert_array_equal(editor.invert(grey), editor.invert(np.repeat(grey[:, :, None], 3, 2)))
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], 2)
    np.testing.assert_array_equal(editor.invert(rgba), base)  # opaque alpha changes nothing
    clear = rgba.copy()
    clear[:, :, 3] = 0  # fully transparent: composited over white
    np.testing.assert_array_equal(editor.invert(clear), editor.invert(np.full_like(rgb, 255)))


def test_resize_and_centre_crop(editor, pictures):
    small = Image.open(pictures[1])
    big = small.resize((160, 160), Image.LANCZOS)
    expected = editor.invert(np.asarray(big.resize((64, 64), Image.BILINEAR)))  # the documented filter
    np.testing.assert_array_equal(editor.invert(big), expected)
    wide = np.concatenate([np.zeros((64, 20, 3), np.uint8), np.asarray(small), np.zeros((64, 21, 3), np.uint8)], 1)
    with pytest.raises(ValueError, match=r"image 0 is 105x64, not square; .*crop='center'"):
        editor.invert(wide)
    np.testing.assert_array_equal(editor.invert(wide, crop="center"), editor.invert(small))


def _png(path, width, height, depth=8, color=2):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    channels = {0: 1, 2: 3}[color]
    raw = b"".join(b"\x00" + bytes(width * channels * depth // 8) for _ in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _bad_pictures(tmp: Path, good: Path) -> dict:
    (tmp / "text.png").write_text("not a picture")
    data = good.read_bytes()
    (tmp / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp / "one.png")
    Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)).save(tmp / "grey16.png")
    (tmp / "folder").mkdir()
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(tmp / "wide.png")
    return {
        "not an image": (tmp / "text.png", "text.png is not an image PIL can read"),
        "truncated": (tmp / "truncated.png", "truncated.png is damaged or truncated"),
        "0x0": (_png(tmp / "zero.png", 0, 0), "zero.png is not an image PIL can read"),
        "1x1": (tmp / "one.png", r"one.png is 1x1 pixels; the encoder needs .* at least 16x16"),
        "16-bit grey": (tmp / "grey16.png", "grey16.png is a 16-bit"),
        "16-bit RGB": (_png(tmp / "rgb16.png", 64, 64, 16, 2), "rgb16.png is a 16-bit"),
        "directory": (tmp / "folder", "folder is a directory, not an image"),
        "non-square": (tmp / "wide.png", r"wide.png is 96x64, not square; .*--crop center"),
        "missing": (tmp / "absent.png", "image not found: .*absent.png"),
    }


def test_cli_rejects_bad_pictures(bundle, pictures, tmp_path):
    cases = _bad_pictures(tmp_path, pictures[0])
    (tmp_path / "out").mkdir()
    for case, (path, message) in cases.items():
        out, recon = tmp_path / "out" / f"{case}.npy", tmp_path / "out" / f"{case}.png"
        for args in (("invert", pictures[0], path, "--out", out, "--recon", recon),
                     ("edit", "a smiling face", "--image", pictures[0], "--image", path, "--out", recon)):
            res = run_cli(*args, "--bundle", bundle)
            assert res.returncode == 2, (case, res.stdout, res.stderr)
            assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, (case, res.stderr)
            assert re.search(message, res.stderr), (case, res.stderr)
            assert not list((tmp_path / "out").iterdir()), case  # nothing written, not even a temporary file
    res = run_cli("invert", cases["non-square"][0], "--crop", "center", "--out", tmp_path / "ok.npy", "--bundle", bundle)
    assert res.returncode == 0 and np.load(tmp_path / "ok.npy").shape == (1, 8, 64), res.stderr


def test_cli_edit_image_grid(bundle, pictures, tmp_path):
    res = run_cli("edit", "a face with purple hair", "--image", pictures[0], "--image", pictures[1], "--sweep", "2,4",
                  "--bundle", bundle, "--out", tmp_path / "g.png")
    assert res.returncode == 0, res.stderr
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert grid.shape[:2] == (14 + 2 * 132 + 4, 4 * 132 + 4)  # 2 rows; input, reconstruction, 2 edits; 128 px tiles
    res = run_cli("edit", "purple hair", "--method", "mapper", "--image", pictures[2], "--bundle", bundle, "--out", tmp_path / "m.png")
    assert res.returncode == 0 and "mapper 'purple_hair'" in res.stdout, res.stderr
    res = run_cli("edit", "a smiling face", "--image", pictures[0], "--seed", "3", "--bundle", bundle, "--out", tmp_path / "x.png")
    assert res.returncode == 2 and "--image replaces --seed" in res.stderr and not (tmp_path / "x.png").exists()


def test_cli_import_encoder(models, tmp_path):
    res = run_cli("import-encoder", models["encoder"], tmp_path / "enc")
    assert res.returncode == 0, res.stderr
    assert "W+ [8, 64]" in res.stdout and (tmp_path / "enc.safetensors").is_file()
    imported, official = load_encoder(tmp_path / "enc.json"), load_encoder(models["encoder"])
    ours, theirs = imported.state_dict(), official.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)  # the same weights
    with torch.no_grad():  # and the same function (two loads may run different CPU kernels: float rounding only)
        x = torch.rand(2, 3, 64, 64) * 2 - 1
        torch.testing.assert_close(imported(x), official(x), rtol=0, atol=1e-6)


def _with_opts(models, tmp_path, name, **opts):
    ckpt = torch.load(models["encoder"], weights_only=True)
    ckpt["opts"].update(opts)
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


def test_cli_rejects_wrong_encoder_files(models, tmp_path):
    psp = _with_opts(models, tmp_path, "psp.pt", encoder_type="GradualStyleEncoder")
    restyle = _with_opts(models, tmp_path, "restyle.pt", encoder_type="BackboneEncoder", input_nc=6)
    cases = [(psp, "'GradualStyleEncoder' encoder (pSp)"), (restyle, "'BackboneEncoder' encoder (ReStyle)"),
             (models["mapper"], "describes a 'latent-mapper', not a 'e4e-encoder'"),
             (models["generator"], "describes a 'stylegan2-generator', not a 'e4e-encoder'")]
    for path, message in cases:
        res = run_cli("import-encoder", path, tmp_path / "o")
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
        res = run_cli("export", "--generator", models["generator"], "--clip", models["clip"], "--encoder", path,
                      "--out", tmp_path / "b")
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not list(tmp_path.glob("o.*")) and not (tmp_path / "b").exists()


def test_export_rejects_an_encoder_for_another_generator(models, tmp_path):
    from precompute.encoder import Encoder4Editing, EncoderConfig, save_encoder

    for n_latent, style_dim in ((10, 64), (8, 32)):
        save_encoder(Encoder4Editing(EncoderConfig(32, (1, 1, 1, 1), (16, 16, 16, 16), n_latent, style_dim)), tmp_path / "e")
        res = run_cli("export", "--generator", models["generator"], "--clip", models["clip"], "--encoder",
                      tmp_path / "e.json", "--out", tmp_path / "b")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert f"gives W+ [{n_latent}, {style_dim}], the generator's is [8, 64]" in res.stderr
        assert not (tmp_path / "b").exists()


def test_bundle_without_encoder_says_so(bundle, tmp_path, pictures):
    import shutil

    work = tmp_path / "noenc"
    shutil.copytree(bundle, work)
    m = json.loads((work / "manifest.json").read_text())
    m["encoder"] = None
    (work / "manifest.json").write_text(json.dumps(m))
    res = run_cli("invert", pictures[0], "--bundle", work, "--out", tmp_path / "w.npy")
    assert res.returncode == 2 and "this bundle has no encoder" in res.stderr and not (tmp_path / "w.npy").exists()
