"""Real photos (issue 24): `cli.py align` crops equal the from-the-spec e4e crop (tests/align_reference.py) on
the real portraits that ship in scikit-image and matplotlib, tilted, upscaled (the shrink path) and stored
rotated with an EXIF tag; the best face is the face; paste-back keeps every pixel outside the face mask;
`invert --align`, `edit --align --paste`; every bad photo is one `error:` line, exit 2, nothing written."""
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageOps

from runtime import align
from tests.align_reference import e4e_crop

ROOT = Path(__file__).resolve().parents[1]
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
MAX_LEVELS, MAX_MEAN = 2, 0.5  # issue 24's parity bar (uint8 levels)


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_error(result, *names):
    """One `error:` line naming each of `names`, exit 2, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def upright(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """name -> path: the two portraits and copies tilted 20 degrees, upscaled 5x and stored EXIF-rotated."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(data.astronaut())
    hopper = Image.open(GRACE_HOPPER).convert("RGB")
    out = {"astronaut": folder / "astronaut.png", "grace_hopper": folder / "grace_hopper.jpg"}
    astronaut.save(out["astronaut"])
    out["grace_hopper"].write_bytes(GRACE_HOPPER.read_bytes())
    for name, im, angle in (("astronaut_tilted", astronaut, 20), ("grace_hopper_tilted", hopper, -20)):
        out[name] = folder / f"{name}.png"
        im.rotate(angle, Image.BICUBIC, expand=True, fillcolor=(120, 120, 120)).save(out[name])
    out["grace_hopper_5x"] = folder / "grace_hopper_5x.png"  # its face square is ~1600 px: shrink 3 at 256
    hopper.resize((hopper.width * 5, hopper.height * 5), Image.BICUBIC).save(out["grace_hopper_5x"])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": stored turned the other way
    out["astronaut_exif"] = folder / "astronaut_exif.jpg"
    astronaut.transpose(Image.Transpose.ROTATE_90).save(out["astronaut_exif"], quality=95, exif=exif)
    return out


@pytest.fixture(scope="module")
def aligned(photos, tmp_path_factory):
    """`cli.py align` of every photo at e4e's 256 px, and of some at 64 px and FFHQ's 4096 -> 1024."""
    runs = {}
    for key, names, extra in (("256", list(photos), []), ("64", ["astronaut", "grace_hopper_5x"], ["--size", 64]),
                              ("1024", ["grace_hopper"], ["--size", 1024, "--transform-size", 4096])):
        out = tmp_path_factory.mktemp(f"aligned{key}")
        result = run_cli("align", *[photos[n] for n in names], "--out", out, *extra)
        assert result.returncode == 0, result.stderr
        runs[key] = out
    return runs


CASES = [("256", n) for n in ("astronaut", "grace_hopper", "astronaut_tilted", "grace_hopper_tilted",
                               "grace_hopper_5x", "astronaut_exif")]
CASES += [("64", "astronaut"), ("64", "grace_hopper_5x"), ("1024", "grace_hopper")]


@pytest.mark.parametrize("size, name", CASES)
def test_crop_equals_the_reference(photos, aligned, size, name):
    crop = np.asarray(Image.open(aligned[size] / f"{name}.png"))
    record = json.loads((aligned[size] / f"{name}.json").read_text())
    photo = upright(photos[name])
    expected = e4e_crop(photo, np.array(record["landmarks"]), int(size), record["transform_size"])
    assert crop.shape == expected.shape == (int(size), int(size), 3)
    diff = np.abs(crop.astype(int) - expected.astype(int))
    assert diff.max() <= MAX_LEVELS and diff.mean() <= MAX_MEAN, (diff.max(), diff.mean())
    assert record["photo_size"] == [photo.shape[1], photo.shape[0]]
    assert record["crop_size"] == int(size) and len(record["landmarks"]) == 68 and len(record["quad"]) == 4
    assert record["photo_sha256"] == align.sha256_file(photos[name])


def test_shrink_path_and_transform_size_are_exercised(photos, aligned):
    """The cases above cover e4e's shrink (a face square over 4x the output) and FFHQ's 4096 -> 1024."""
    record = json.loads((aligned["256"] / "grace_hopper_5x.json").read_text())
    assert align.face_quad(record["landmarks"])[1] / 256 * 0.5 >= 2
    assert json.loads((aligned["1024"] / "grace_hopper.json").read_text())["transform_size"] == 4096


def test_exif_orientation_applied_before_detection(aligned):
    record = json.loads((aligned["256"] / "astronaut_exif.json").read_text())
    plain = json.loads((aligned["256"] / "astronaut.json").read_text())
    assert record["exif_orientation"] == 6 and plain["exif_orientation"] == 1
    assert record["photo_size"] == [512, 512]
    # the same face, upright: landmarks within JPEG noise of the PNG's
    assert np.abs(np.array(record["landmarks"]) - np.array(plain["landmarks"])).mean() < 2


def test_best_face_is_her_face_not_the_patch(photos, tmp_path):
    """dlib finds the face and the suit's mission patch; the reference kept the last one (the patch)."""
    result = run_cli("align", photos["astronaut"], "--out", tmp_path, "--faces", "all")
    assert result.returncode == 0, result.stderr
    face, patch = (json.loads((tmp_path / f"astronaut_{k}.json").read_text()) for k in (0, 1))
    assert face["score"] > 1.0 > 0.5 > patch["score"]
    assert face["box"][3] < 200 < patch["box"][1]  # the face is in the upper part, the patch on the chest
    result = run_cli("align", photos["astronaut"], "--out", tmp_path / "best")
    assert json.loads((tmp_path / "best" / "astronaut.json").read_text())["box"] == face["box"]


# --- paste-back -------------------------------------------------------------------------------------------
def mask_weights(photo_shape, quad) -> np.ndarray:
    """The paste mask over the photo, computed from the quad (the same map as paste_back, written out)."""
    h, w = photo_shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    quad = np.asarray(quad, dtype=np.float64)
    m = np.stack([quad[3] - quad[0], quad[1] - quad[0]], 1)
    p = np.stack([xs + 0.5, ys + 0.5], -1) - (quad[0] + 0.5)
    u, v = np.moveaxis(p @ np.linalg.inv(m).T, -1, 0)
    return align.face_mask(u, v)


def test_paste_back_of_the_crop_restores_the_photo(photos):
    """The unedited crop pasted back lands where it came from: inside the mask the photo comes back up to
    resampling blur (a flipped, shifted or mis-scaled warp would be off by tens of levels)."""
    photo = upright(photos["astronaut_tilted"])
    face = align.align_photo(photo, 256)[0]
    out = align.paste_back(photo, face.crop, face.aligned.quad)
    weight = mask_weights(photo.shape, face.aligned.quad)
    full = weight >= 1.0
    assert full.sum() > 5000
    err = np.abs(out.astype(int) - photo.astype(int))[full].mean()
    assert err < 4.0, err
    shifted = align.paste_back(photo, np.roll(face.crop, 8, axis=1), face.aligned.quad)
    assert np.abs(shifted.astype(int) - photo.astype(int))[full].mean() > 2 * err
    assert np.array_equal(out[weight == 0], photo[weight == 0])


def test_edit_paste_writes_the_whole_photo(photos, bundle, tmp_path):
    out = tmp_path / "edited.png"
    result = run_cli("edit", "a face with purple hair", "--image", photos["astronaut_exif"], "--align", "--paste",
                     "--alpha", 8, "--out", out, "--bundle", bundle)
    assert result.returncode == 0, result.stderr
    photo = upright(photos["astronaut_exif"])
    edited = np.asarray(Image.open(out).convert("RGB"))
    assert edited.shape == photo.shape  # the photo's own size, upright
    record = align.align_photo(photos["astronaut_exif"], encoder_size(bundle))[0]
    weight = mask_weights(photo.shape, record.aligned.quad)
    assert np.array_equal(edited[weight == 0], photo[weight == 0])  # byte-identical outside the mask
    assert np.abs(edited.astype(int) - photo.astype(int))[weight >= 1].mean() > 10  # the face region changed


def encoder_size(bundle) -> int:
    from runtime.editor import Editor

    return Editor(bundle).encoder_size()


def test_every_face_and_every_strength(photos, bundle, tmp_path):
    """--faces all pastes both detections into one photo; a sweep writes one photo per strength."""
    out = tmp_path / "sweep.png"
    result = run_cli("edit", "a smiling face", "--image", photos["astronaut"], "--align", "--faces", "all", "--paste",
                     "--sweep", "0,6", "--out", out, "--bundle", bundle)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["sweep_alpha0.png", "sweep_alpha6.png"], written
    photo = upright(photos["astronaut"])
    faces = align.align_photo(photos["astronaut"], encoder_size(bundle), "all")
    a, b = (np.asarray(Image.open(tmp_path / n).convert("RGB")).astype(int) for n in written)
    for f in faces:  # each face's region was replaced (by a reconstruction at alpha 0)
        inside = mask_weights(photo.shape, f.aligned.quad) >= 1
        assert np.abs(a - photo)[inside].mean() > 10
    assert np.abs(a - b).max() > 0  # the strengths differ


def test_invert_align_recon(photos, bundle, tmp_path):
    recon = tmp_path / "recon.png"
    result = run_cli("invert", photos["grace_hopper"], photos["astronaut"], "--align", "--out", tmp_path / "w.npy",
                     "--recon", recon, "--bundle", bundle)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "w.npy").shape[0] == 2
    grid = Image.open(recon)
    size = 32  # the test generator's size, drawn at 4x (128 px tiles)
    assert grid.width == 3 * (size * 4 + 4) + 4  # photo | crop | reconstruction


def test_align_matches_python_api(photos, aligned):
    crop = np.asarray(Image.open(aligned["256"] / "grace_hopper.png"))
    face = align.align_photo(photos["grace_hopper"], 256)[0]
    assert np.array_equal(face.crop, crop)


# --- bad photos: one error line naming the file, exit 2, nothing written ---------------------------------
def bad_photos(folder: Path, photos) -> dict:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    made = {}
    made["no_face.png"] = Image.fromarray(np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[:, None, None], (1, 256, 3)))
    made["tiny_face.png"] = astronaut.resize((180, 180), Image.LANCZOS)  # found (a 60 px square) but too small
    made["one_pixel.png"] = Image.new("RGB", (1, 1), (200, 100, 50))
    for name, im in made.items():
        im.save(folder / name)
    jpeg = photos["grace_hopper"].read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(folder / "sixteen_bit.png")
    # a PNG header claiming 10,000 x 10,000 pixels (100 MP), refused before any pixel is decoded
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    (folder / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0))
                                      + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    (folder / "a_folder.png").mkdir()
    return {"no_face.png": "no face", "tiny_face.png": "too", "one_pixel.png": "1x1", "truncated.jpg": "truncated",
            "sixteen_bit.png": "16-bit", "huge.png": "megapixels", "a_folder.png": "directory"}


def test_bad_photos(photos, bundle, tmp_path):
    cases = bad_photos(tmp_path, photos)
    for name, words in cases.items():
        out = tmp_path / f"out_{name}"
        line = one_error(run_cli("align", tmp_path / name, "--out", out), name)
        assert words in line, line
        assert not out.exists()
        pasted = tmp_path / f"pasted_{name}.png"
        line = one_error(run_cli("edit", "a smiling face", "--image", tmp_path / name, "--align", "--paste", "--out",
                                 pasted, "--bundle", bundle), name)
        assert not pasted.exists()


def test_odd_but_valid_photos(photos, tmp_path):
    """A CMYK JPEG is converted (the face found, as in the RGB photo); an animated GIF aligns its first frame
    and says so in a warning line."""
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    astronaut.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    frames = [astronaut, astronaut.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    result = run_cli("align", tmp_path / "cmyk.jpg", tmp_path / "animated.gif", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: ") == 1 and "2 frames; aligning the first" in result.stderr
    for stem in ("cmyk", "animated"):
        box = json.loads((tmp_path / "out" / f"{stem}.json").read_text())["box"]
        assert abs(box[0] - 175) < 10 and abs(box[1] - 76) < 10, box  # her face, upright: the first frame


def test_landmark_model_errors(photos, tmp_path):
    missing = tmp_path / "nowhere.dat"
    line = one_error(run_cli("align", photos["astronaut"], "--out", tmp_path / "o1", "--landmarks", missing), missing)
    assert "[align]" in line
    foreign = tmp_path / "not_dlib.dat"
    foreign.write_bytes(os.urandom(4096))
    line = one_error(run_cli("align", photos["astronaut"], "--out", tmp_path / "o2", "--landmarks", foreign), foreign)
    assert "not dlib's 68-point" in line
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_refuses_to_overwrite_a_users_file(photos, tmp_path):
    out = tmp_path / "crops"
    out.mkdir()
    (out / "astronaut.png").write_bytes(b"my own picture")
    line = one_error(run_cli("align", photos["astronaut"], "--out", out), "astronaut.png")
    assert "not written by" in line
    assert (out / "astronaut.png").read_bytes() == b"my own picture" and not (out / "astronaut.json").exists()


def test_options_need_align(photos, bundle, tmp_path):
    for args in (["--paste"], ["--faces", "all"], ["--align", "--crop", "center"]):
        line = one_error(run_cli("edit", "a smiling face", "--image", photos["astronaut"], *args, "--out",
                                 tmp_path / "x.png", "--bundle", bundle))
        assert "--align" in line or "--paste" in line
