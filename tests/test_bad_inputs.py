"""A corpus of bad inputs, as a new user (or an attacker editing a bundle) would give them.

Every CLI case must end with exit code 2 and one `error:` line naming the problem, no traceback, and
nothing written or deleted in its folder; every Python API case with a TypeError/ValueError (BundleError
is a ValueError) naming the argument. The shared test bundle must be intact afterwards. Kills of export
at random moments and concurrent use are in tests/test_kills.py.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cli
from runtime.bundle import BundleError
from runtime.editor import Editor, GlobalEdit, MapperEdit



def noise(n: int) -> bytes:
    """n bytes of noise, the same on every run (a corpus case must not change between runs)."""
    return random.Random(n).randbytes(n)


def snapshot(folder: Path) -> dict:
    """Every entry below `folder` (not following links): kind, size and content hash of regular files."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file" if p.is_file() else "other"
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if kind == "file" else os.readlink(p) if kind == "link" else ""
        out[str(p.relative_to(folder))] = (kind, st.st_size if kind == "file" else 0, digest)
    return out


@pytest.fixture(scope="module", autouse=True)
def shared_bundle_stays_intact(bundle):
    before = snapshot(bundle)
    yield
    assert snapshot(bundle) == before


def run_cli(args, cwd: Path):
    """cli.main in this process (fast), in `cwd`; returns (exit code, stdout, stderr, exception)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=True)
    finally:
        os.chdir(old)
    return res.exit_code, res.stdout, res.stderr, res.exception


def expect_error(args, cwd: Path, message: str):
    before = snapshot(cwd)
    code, out, err, exc = run_cli(args, cwd)
    assert isinstance(exc, SystemExit) and code == 2, (args, code, out, err, repr(exc))
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), (message, lines[0])
    assert snapshot(cwd) == before, "a failing command wrote or deleted something"


# --- inputs of each kind -----------------------------------------------------------------------------
def npy_bytes(array) -> bytes:
    import io

    f = io.BytesIO()
    np.save(f, array, allow_pickle=True)
    return f.getvalue()


def huge_header() -> bytes:
    """A valid .npy header that claims [256000, 1000, 500] float32 (477 GiB) over 100 bytes of data."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (256000, 1000, 500), }"
    header += " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 100


def negative_shape_header() -> bytes:
    """A well-formed .npy header whose shape (-1, 10, 128) no array can have, over 100 bytes of data."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 10, 128), }"
    header += " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 100


def npz_with_member(name: str, member: bytes):
    """An .npz whose `name`.npy member holds `member` as is (a hand-made header numpy.savez never writes)."""
    def make(path, models):
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{name}.npy", member)
            archive.writestr("std.npy", npy_bytes(np.ones(256, np.float32)))
    return make


LATENTS = {  # name -> (file bytes or a maker, expected message)
    "missing": (None, "not found"),
    "folder": ("dir", "is a (folder|directory)"),
    "fifo": ("fifo", "not a regular file"),
    "empty": (b"", "empty or truncated"),
    "random bytes": (noise(300), "not in .npy format"),
    "truncated": (npy_bytes(np.zeros((2, 8, 64), np.float32))[:300], "truncated"),
    "pickled objects": (npy_bytes(np.array([{"w": 1}], dtype=object)), "pickled Python objects"),
    "npz archive": ("npz", "is an .npz archive"),
    "477 GiB header": (huge_header(), "claims 476.8 GiB"),
    "negative shape header": (negative_shape_header(), r"w\.npy is not a valid \.npy of W\+ latents .*\(its header is invalid: "
                              r"it declares the shape \[-1, 10, 128\], and an array cannot have a negative or non-integer "
                              r"dimension\); re-save the array with numpy\.save$"),
    "wrong shape": (npy_bytes(np.zeros((2, 9, 64), np.float32)), r"W\+ of shape \[N, 8, 64\], got \[2, 9, 64\]"),
    "no rows": (npy_bytes(np.zeros((0, 8, 64), np.float32)), r"got \[0, 8, 64\]"),
    "nan": (npy_bytes(np.full((1, 8, 64), np.nan, np.float32)), "NaN or infinite"),
    "inf": (npy_bytes(np.full((1, 8, 64), np.inf, np.float64)), "NaN or infinite"),
    "overflow to inf": (npy_bytes(np.full((1, 8, 64), 1e300)), "NaN or infinite"),
    "complex": (npy_bytes(np.zeros((1, 8, 64), np.complex64)), "complex64, not real numbers"),
    "strings": (npy_bytes(np.full((1, 8, 64), "x")), "<U1, not real numbers"),
    "booleans": (npy_bytes(np.zeros((1, 8, 64), bool)), "bool, not real numbers"),
    "structured": (npy_bytes(np.zeros(3, dtype=[("a", "f4")])), "not real numbers"),
}


def make_latents(sandbox: Path, kind: str) -> Path:
    content = LATENTS[kind][0]
    path = sandbox / "w.npy"
    if content == "dir":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif content == "npz":
        with open(path, "wb") as f:
            np.savez(f, w=np.zeros((1, 8, 64), np.float32))
    elif content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", sorted(LATENTS))
def test_bad_latents_file(bundle, tmp_path, kind):
    path = make_latents(tmp_path, kind)
    expect_error(["edit", "a smiling face", "--latents", path, "--bundle", bundle, "--out", "x.png"], tmp_path,
                 LATENTS[kind][1])


EDIT_OPTIONS = [  # (id, extra arguments of `edit`, expected message)
    ("seed letters", ["a smiling face", "--seed", "x"], "non-negative integers or ranges"),
    ("seed negative", ["a smiling face", "--seed", "-1"], "non-negative integers or ranges"),
    ("seed empty part", ["a smiling face", "--seed", "1,,2"], "non-negative integers or ranges"),
    ("seed empty", ["a smiling face", "--seed", ""], "non-negative integers or ranges"),
    ("seed float", ["a smiling face", "--seed", "1.5"], "non-negative integers or ranges"),
    ("seed backwards range", ["a smiling face", "--seed", "5-2"], "is empty; write it low-high"),
    ("seed range too long", ["a smiling face", "--seed", "0-99999999999"], "more than 100000 seeds"),
    ("10k faces", ["a smiling face", "--seed", "0-9999"], "would hold 10000 faces .*split the faces over several runs"),
    ("grid too wide", ["a smiling face", "--seed", "0-255", "--sweep", ",".join(["1"] * 40)], "megapixels"),
    ("beta two values", ["a smiling face", "--beta", "0.1,0.9"], "expected one number, got '0.1,0.9'"),
    ("beta letters", ["a smiling face", "--beta", "abc"], "expected one number"),
    ("beta nan", ["a smiling face", "--beta", "nan"], r"beta must be a number in \[0.0, 1.0\], got nan"),
    ("beta above 1", ["a smiling face", "--beta", "2"], r"beta must be a number in \[0.0, 1.0\]"),
    ("beta negative", ["a smiling face", "--beta", "-0.1"], "beta must be"),
    ("beta too high for any channel", ["a smiling face", "--beta", "0.99"], "no style channel reaches beta=0.99.*use beta <="),
    ("alpha inf", ["a smiling face", "--alpha", "inf"], "alpha must be a number"),
    ("alpha nan", ["a smiling face", "--alpha", "nan"], "alpha must be a number"),
    ("alpha out of range", ["a smiling face", "--alpha", "11"], r"alpha must be a number in \[-10.0, 10.0\]"),
    ("alpha letters", ["a smiling face", "--alpha", "x"], "'x' is not a valid float"),
    ("sweep letters", ["a smiling face", "--sweep", "1,x"], "expected comma-separated numbers"),
    ("sweep empty", ["a smiling face", "--sweep", ""], "expected comma-separated numbers"),
    ("sweep nan", ["a smiling face", "--sweep", "1,nan"], "alpha must be a number"),
    ("sweep mapper range", ["purple hair", "--method", "mapper", "--sweep", "0,9"], r"strength must be a number in \[-5.0, 5.0\]"),
    ("truncation above 1", ["a smiling face", "--truncation", "2"], r"truncation must be a number in \[0.0, 1.0\]"),
    ("truncation negative", ["a smiling face", "--truncation", "-0.5"], "truncation must be"),
    ("method unknown", ["a smiling face", "--method", "style"], "'style' is not one of 'global', 'mapper'"),
    ("mapper without method", ["purple hair", "--mapper", "purple_hair"], "add --method mapper"),
    ("neutral with mapper", ["purple hair", "--method", "mapper", "--neutral", "a face"], "settings of --method global"),
    ("no mapper for prompt", ["a face with green hair", "--method", "mapper"], "no mapper is named or was trained for"),
    ("unknown mapper name", ["purple hair", "--method", "mapper", "--mapper", "bogus"], "no mapper is named or was trained for 'bogus'"),
    ("empty prompt", [""], "the target text is empty"),
    ("blank prompt", ["   \t"], "the target text is empty"),
    ("too long prompt", ["a face with " + "very " * 80 + "long hair"], "is too long"),
    ("prompt equals neutral", ["a face", "--neutral", "a face"], "same CLIP embedding, so the edit direction is zero"),
    ("prompt equals neutral up to case", ["A  Face", "--neutral", "a face"], "direction is zero"),
    ("empty neutral", ["a smiling face", "--neutral", " "], "neutral is empty"),
    ("unknown option", ["a smiling face", "--colour", "red"], "No such option '--colour'"),
    ("missing prompt", [], "Missing argument 'PROMPT'"),
]


@pytest.mark.parametrize("case,args,message", EDIT_OPTIONS, ids=[c[0] for c in EDIT_OPTIONS])
def test_bad_edit_option(bundle, tmp_path, case, args, message):
    expect_error(["edit", *args, "--bundle", bundle, "--out", "x.png"], tmp_path, message)


def _photo(sandbox):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(sandbox / "photo.png")
    return "photo.png"


OUTPUTS = [  # (id, setup(sandbox) -> --out value, expected message)
    ("a user's photo", _photo, "photo.png exists and was not written by styleclip-edge"),
    ("a folder named .png", lambda s: (s / "d.png").mkdir() or "d.png", "exists and is not a regular file"),
    ("jpeg suffix", lambda s: "x.jpg", "must end in .png"),
    ("the current folder", lambda s: ".", "must end in .png"),
    ("a link to a photo", lambda s: _photo(s) and os.symlink("photo.png", s / "l.png") or "l.png", "exists and is not a regular file"),
    ("a name of 300 bytes", lambda s: "a" * 296 + ".png", r"--out a{30}\.\.\.a{23}\.png is too long for the file system: its "
     "name has 300 bytes, more than the 255 bytes a file or folder name may have; choose a shorter name"),
    ("a name of 150 two-byte letters", lambda s: "\u00e9" * 148 + ".png", "its name has 300 bytes, more than the 255 bytes"),
    ("a folder name of 300 bytes", lambda s: "d" * 300 + "/x.png", r"the folder name 'd{15}\.\.\.d{12}' in it has 300 bytes, "
     "more than the 255 bytes"),
]


@pytest.mark.parametrize("case,setup,message", OUTPUTS, ids=[c[0] for c in OUTPUTS])
def test_bad_edit_output(bundle, tmp_path, case, setup, message):
    out = setup(tmp_path)
    expect_error(["edit", "a smiling face", "--bundle", bundle, "--out", out], tmp_path, message)


def test_our_own_png_may_be_replaced_but_not_a_photo(bundle, tmp_path):
    code, *_ = run_cli(["edit", "a smiling face", "--seed", "1", "--bundle", bundle, "--out", "x.png"], tmp_path)
    assert code == 0
    first = (tmp_path / "x.png").read_bytes()
    code, *_ = run_cli(["edit", "a smiling face", "--seed", "2", "--bundle", bundle, "--out", "x.png"], tmp_path)
    assert code == 0 and (tmp_path / "x.png").read_bytes() != first  # our own output is replaced


# --- bundle tampering ------------------------------------------------------------------------------------
def copy_bundle(bundle: Path, sandbox: Path) -> Path:
    work = sandbox / "t"
    shutil.copytree(bundle, work, ignore=shutil.ignore_patterns("torchscript", "report"))
    return work


def manifest_of(work):
    return json.loads((work / "manifest.json").read_text())


def write_manifest(work, m):
    (work / "manifest.json").write_text(json.dumps(m))


def rehash(work, m, rel):
    """Make the manifest agree with a replaced file (what an attacker would do)."""
    data = (work / rel).read_bytes()
    m["files"][rel] = {"role": m["files"].get(rel, {}).get("role", "x"), "sha256": hashlib.sha256(data).hexdigest(),
                       "size": len(data)}


def edit_manifest(change):
    def tamper(work):
        m = manifest_of(work)
        change(m)
        write_manifest(work, m)
    return tamper


def set_path(*keys_and_value):
    *keys, value = keys_and_value

    def change(m):
        d = m
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


def rename_entry(rel, new):
    """Point the manifest's entry `rel` (and every reference to it) at `new`, keeping its hash."""
    def change(m):
        m["files"][new] = m["files"].pop(rel)
        text = json.dumps(m).replace(json.dumps(rel), json.dumps(new))
        m.clear()
        m.update(json.loads(text))
    return change


def replace_file(rel, content, rehashed=True):
    def tamper(work):
        m = manifest_of(work)
        target = work / rel
        target.unlink()
        if content == "dir":
            target.mkdir()
        elif content == "fifo":
            os.mkfifo(target)
        elif callable(content):
            content(work, target)
        else:
            target.write_bytes(content)
        if rehashed and target.is_file():
            rehash(work, m, rel)
        write_manifest(work, m)
    return tamper


def link_outside(rel):
    def tamper(work):
        outside = work.parent / "outside.npy"
        shutil.copyfile(work / rel, outside)
        (work / rel).unlink()
        os.symlink(outside, work / rel)
    return tamper


def swap_graph(a, b):
    def make(work, target):
        shutil.copyfile(work / f"graphs/{b}.onnx", target)
    return replace_file(f"graphs/{a}.onnx", make)


def deep(m):
    m["extra"] = json.loads("[" * 100_000 + "]" * 100_000)


TAMPERING = [  # (id, tamper(work), expected message)
    ("no manifest", lambda w: (w / "manifest.json").unlink(), "is not a bundle: manifest.json is missing"),
    ("manifest random bytes", lambda w: (w / "manifest.json").write_bytes(noise(200)), "is not valid JSON"),
    ("manifest a JSON list", lambda w: (w / "manifest.json").write_text("[1, 2]"), "is not a styleclip-edge-bundle manifest"),
    ("manifest nested too deeply", lambda w: (w / "manifest.json").write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    ("manifest huge", lambda w: os.truncate(w / "manifest.json", 65 << 20), "more than any manifest"),
    ("manifest a folder", lambda w: (w / "manifest.json").unlink() or (w / "manifest.json").mkdir(), "manifest.json is missing"),
    ("format", edit_manifest(set_path("format", "other")), "is not a styleclip-edge-bundle manifest"),
    ("format version", edit_manifest(set_path("format_version", 99)), "format version 99"),
    ("format version a string", edit_manifest(set_path("format_version", "1")), r"t/manifest\.json: 'format_version' must be the "
     r"integer 1, got the string \"1\" \(a type mismatch\); write it as 1, without quotes or a decimal point"),
    ("format version a float", edit_manifest(set_path("format_version", 1.0)), "must be the integer 1, got the decimal number 1.0 \\(a type mismatch"),
    ("format version a boolean", edit_manifest(set_path("format_version", True)), "must be the integer 1, got the boolean true \\(a type mismatch"),
    ("format version null", edit_manifest(set_path("format_version", None)), "must be the integer 1, got null \\(a type mismatch"),
    ("format version missing", edit_manifest(lambda m: m.pop("format_version")), "manifest.json lacks 'format_version' \\(the integer 1\\)"),
    ("path escape in files", edit_manifest(rename_entry("tables/fs3.npy", "../fs3.npy")), "\"../fs3.npy\" is not a path inside the bundle"),
    ("absolute path", edit_manifest(rename_entry("tables/latent_avg.npy", "/etc/passwd")), "\"/etc/passwd\" is not a path inside the bundle"),
    ("escape via graph", edit_manifest(rename_entry("graphs/mapping.onnx", "graphs/../../mapping.onnx")), "is not a path inside the bundle"),
    ("escape via tokenizer", edit_manifest(rename_entry("tokenizer/bpe_simple_vocab_16e6.txt.gz", "../../bpe.gz")), "is not a path inside the bundle"),
    ("backslash path", edit_manifest(rename_entry("tables/fs3.npy", "tables\\fs3.npy")), "is not a path inside the bundle"),
    ("dot path", edit_manifest(rename_entry("tables/fs3.npy", "./tables/fs3.npy")), "is not a path inside the bundle"),
    ("unlisted table", edit_manifest(set_path("tables", "fs3", "tables/other.npy")), "'tables/other.npy', which its 'files' section does not list"),
    ("link leading outside", link_outside("tables/latent_avg.npy"), "link that leads outside the bundle folder"),
    ("template without {}", edit_manifest(lambda m: m["templates"].__setitem__(0, "a photo of a face.")), "exactly one '\\{\\}'"),
    ("template with two {}", edit_manifest(lambda m: m["templates"].__setitem__(0, "{} and {}")), "exactly one"),
    ("template with {0}", edit_manifest(lambda m: m["templates"].__setitem__(0, "a {} {0}")), "exactly one"),
    ("templates empty", edit_manifest(set_path("templates", [])), "lacks its 'templates' section"),
    ("templates a string", edit_manifest(set_path("templates", "a {}")), "lacks its 'templates' section"),
    ("templates numbers", edit_manifest(set_path("templates", [1, 2])), "lacks its 'templates' section"),
    ("n_latent string", edit_manifest(set_path("generator", "n_latent", "8")), "'n_latent' must be a positive integer, got \"8\""),
    ("n_latent mismatch", edit_manifest(set_path("generator", "n_latent", 9)), "layout reads 8 W\\+ rows, n_latent says 9"),
    ("style_dim negative", edit_manifest(set_path("generator", "style_dim", -64)), "'style_dim' must be a positive integer"),
    ("style_dim other", edit_manifest(set_path("generator", "style_dim", 65)), "graph 'mapping' inputs have shape"),
    ("layout not a list", edit_manifest(set_path("generator", "layout", {"a": 1})), "the StyleSpace layout table"),
    ("layout row malformed", edit_manifest(lambda m: m["generator"]["layout"][0].pop("channels")), "not a StyleSpace layout table"),
    ("layout offsets", edit_manifest(lambda m: m["generator"]["layout"][1].update(offset=3)), "not a StyleSpace layout table"),
    ("layout rows strings", edit_manifest(set_path("generator", "layout", ["a"])), "not a StyleSpace layout table"),
    ("context length string", edit_manifest(set_path("clip", "context_length", "77")), "'context_length' must be an integer"),
    ("context length 1", edit_manifest(set_path("clip", "context_length", 1)), "'context_length' must be an integer of at least 2"),
    ("tokenizer missing", edit_manifest(lambda m: m["clip"]["tokenizer"].pop("file")), "lacks the tokenizer 'file'"),
    ("truncation string", edit_manifest(set_path("defaults", "truncation", "0.7")), "'truncation' must be a number in \\[0, 1\\]"),
    ("truncation 5", edit_manifest(set_path("defaults", "truncation", 5)), "'truncation' must be a number"),
    ("truncation NaN", lambda w: (w / "manifest.json").write_text((w / "manifest.json").read_text().replace('"truncation": 0.7', '"truncation": NaN')), "'truncation' must be a number"),
    ("alpha string", edit_manifest(set_path("defaults", "alpha", "x")), "'alpha' must be a number"),
    ("section a list", edit_manifest(set_path("generator", [])), "'generator' section must be an object"),
    ("graphs missing", edit_manifest(lambda m: m.pop("graphs")), "lacks its 'graphs' section"),
    ("graph not an object", edit_manifest(set_path("graphs", "mapping", 3)), "graph 'mapping' must be an object"),
    ("graph shape vs generator", edit_manifest(set_path("graphs", "styles", "inputs", 0, "shape", ["batch", 9, 64])), "graph 'styles' inputs have shape"),
    ("graph static batch", edit_manifest(set_path("graphs", "synthesis", "inputs", 0, "shape", [1, 256])), "graph 'synthesis' inputs have shape"),
    ("graph dtype", edit_manifest(set_path("graphs", "mapping", "inputs", 0, "dtype", "float64")), "'dtype' must be one of"),
    ("graph inputs missing", edit_manifest(lambda m: m["graphs"]["mapping"].pop("inputs")), "graph 'mapping' inputs must list exactly one tensor"),
    ("graph two inputs", edit_manifest(lambda m: m["graphs"]["mapping"]["inputs"].append({"name": "x"})), "must list exactly one tensor"),
    ("graph shape nested", edit_manifest(set_path("graphs", "mapping", "outputs", 0, "shape", [["batch"], 64])), "'shape' must be a list of sizes"),
    ("variants not an object", edit_manifest(set_path("graphs", "mapping", "variants", [1])), "lacks its fp32 variant file"),
    ("variant file number", edit_manifest(set_path("graphs", "mapping", "variants", "fp16", "file", 7)), "names 7, which is not a path"),
    ("mapper prompt missing", edit_manifest(lambda m: m["mappers"]["purple_hair"].pop("prompt")), "mapper 'purple_hair' lacks its 'prompt'"),
    ("mapper graph unknown", edit_manifest(set_path("mappers", "purple_hair", "graph", "mapper_x")), "lacks its 'prompt' or its graph"),
    ("global directions a string", edit_manifest(set_path("global_directions", "yes")), "'global_directions' section must be an object or null"),
    ("fs3 rows too many", edit_manifest(set_path("global_directions", "fs3_rows", 10**9)), "'fs3_rows' must be a positive row count"),
    ("edit settings list", edit_manifest(set_path("edit_settings", [1])), "'edit_settings' section is invalid"),
    ("edit settings key", edit_manifest(set_path("edit_settings", "purple hair", {"colour": 1})), "unknown key"),
    ("file size string", edit_manifest(lambda m: m["files"]["tables/fs3.npy"].update(size="12")), "lacks 'size' or 'sha256'"),
    ("file sha256 short", edit_manifest(lambda m: m["files"]["tables/fs3.npy"].update(sha256="00")), "lacks 'size' or 'sha256'"),
    ("file modified", lambda w: (w / "tables/latent_avg.npy").write_bytes((w / "tables/latent_avg.npy").read_bytes()[:-4] + b"\0\0\0\1"), "does not match its sha256"),
    ("file truncated", lambda w: (w / "tables/latent_avg.npy").write_bytes((w / "tables/latent_avg.npy").read_bytes()[:-4]), "has \\d+ bytes, the manifest says"),
    ("file missing", lambda w: (w / "graphs/mapping.onnx").unlink(), "graphs/mapping.onnx is missing"),
    ("file now a folder", replace_file("tables/latent_avg.npy", "dir"), "is a folder"),
    ("file now a pipe", replace_file("tables/latent_avg.npy", "fifo"), "not a regular file"),
    ("graph swapped, rehashed", swap_graph("mapping", "styles"), "graphs/mapping.onnx \\(mapping\\) names its input 'wplus', the manifest 'z'"),
    ("graph swapped, same io names", swap_graph("styles", "mapper_purple_hair"), "styles\\) names its output"),
    ("graph random bytes, rehashed", replace_file("graphs/mapping.onnx", noise(500)), "cannot be opened by onnxruntime"),
    ("table wrong shape, rehashed", replace_file("tables/latent_avg.npy", npy_bytes(np.zeros(63, np.float32))), "has shape \\[63\\]; the manifest implies \\[64\\]"),
    ("table pickled, rehashed", replace_file("tables/latent_avg.npy", npy_bytes(np.array([{}], dtype=object))), "pickled Python objects"),
    ("table huge header, rehashed", replace_file("tables/latent_avg.npy", huge_header()), "claims 476.8 GiB"),
    ("table negative shape, rehashed", replace_file("tables/latent_avg.npy", negative_shape_header()),
     r"latent_avg\.npy is not a valid .*its header is invalid: it declares the shape \[-1, 10, 128\]"),
    ("table strings, rehashed", replace_file("tables/latent_avg.npy", npy_bytes(np.full(64, "a"))), "not real numbers"),
    ("tokenizer random bytes, rehashed", replace_file("tokenizer/bpe_simple_vocab_16e6.txt.gz", noise(300)), "bpe_simple_vocab_16e6.txt.gz"),
    ("tokenizer too short, rehashed", replace_file("tokenizer/bpe_simple_vocab_16e6.txt.gz", gzip.compress(b"#v\na b\n")), "bpe_simple_vocab_16e6.txt.gz"),
]


@pytest.mark.parametrize("case,tamper,message", TAMPERING, ids=[c[0] for c in TAMPERING])
def test_tampered_bundle(bundle, tmp_path, case, tamper, message):
    work = copy_bundle(bundle, tmp_path)
    tamper(work)
    expect_error(["edit", "a face with purple hair", "--seed", "1", "--bundle", work, "--out", "x.png"], tmp_path, message)
    with pytest.raises(BundleError if "tokenizer" not in case else ValueError, match=message):  # the same through the API
        ed = Editor(work)
        w = ed.sample([1])
        ed.render(w), ed.edit(w, [GlobalEdit("a face with purple hair"), MapperEdit("purple_hair")])


# --- other commands: files that are not what their suffix says, refused outputs, bad options ------------
def _write(rel, content):
    def setup(sandbox, models):
        path = sandbox / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path, models)
        elif content == "dir":
            path.mkdir()
        elif content == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def _torch_file(obj):
    return lambda path, models: torch.save(obj() if callable(obj) else obj, path)


def _model_pair(kind, tensors, config=None):
    """Our .json + .safetensors pair with a correct sha256, holding `tensors` (bytes: raw weights bytes)."""
    def make(path, models):
        weights = path.with_suffix(".safetensors")
        if isinstance(tensors, bytes):
            weights.write_bytes(tensors)
        else:
            from safetensors.torch import save_file
            save_file(tensors, str(weights))
        meta = {"kind": kind, "format_version": 1, "weights": weights.name,
                "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "config": config or {}}
        path.write_text(json.dumps(meta))
    return make


def _gen_state(models):
    from precompute.checkpoints import load_generator

    return load_generator(models["generator"]).state_dict()


def _copy(name):
    def make(path, models):
        shutil.copyfile(models[name], path)
        for suffix in (".safetensors",):
            if models[name].with_suffix(suffix).is_file():
                shutil.copyfile(models[name].with_suffix(suffix), path.with_suffix(suffix))
    return make


def _non_bundle_folder(sandbox, models):
    (sandbox / "mine").mkdir()
    (sandbox / "mine" / "thesis.txt").write_text("years of work")
    (sandbox / ".mine.old").mkdir()
    (sandbox / ".mine.old" / "notes.txt").write_text("unrelated")


def _fake_ort_dist(sandbox, models):
    """The file names `web` checks for in onnxruntime-web's dist folder (empty: the refusal comes first)."""
    from runtime.web_site import ORT_BACKENDS

    (sandbox / "ort").mkdir()
    for files in ORT_BACKENDS.values():
        for name in files:
            (sandbox / "ort" / name).write_bytes(b"")


def _bundle_with_foreign_file(sandbox, models, bundle):
    work = copy_bundle(bundle, sandbox)
    (work / "my_notes.txt").write_text("keep me")


# (id, setup(sandbox, models), arguments with {G}/{C}/{M}/{F}/{S} model paths, expected message)
COMMANDS = [
    ("export into a non-bundle folder", _non_bundle_folder, ["export", "--generator", "{G}", "--clip", "{C}", "--out", "mine"], "mine cannot be replaced: it is not a styleclip-edge bundle"),
    ("export into the current folder", None, ["export", "--generator", "{G}", "--clip", "{C}", "--out", "."], "--out . cannot be replaced"),
    ("export onto a file", _write("b", "x"), ["export", "--generator", "{G}", "--clip", "{C}", "--out", "b"], "'b' is a file"),
    ("export onto a link", lambda s, m: (s / "real").mkdir() or os.symlink("real", s / "b"), ["export", "--generator", "{G}", "--clip", "{C}", "--out", "b"], "exists and is not a folder"),
    ("export onto a bundle with a foreign file", "bundle+foreign", ["export", "--generator", "{G}", "--clip", "{C}", "--out", "t"], "holds files this tool did not write \\(my_notes.txt\\)"),
    ("export onto a name of 300 bytes", None, ["export", "--generator", "{G}", "--clip", "{C}", "--out", "b" * 300],
     r"--out b{30}\.\.\.b{27} is too long for the file system: its name has 300 bytes, more than the 255 bytes"),
    ("web onto a name of 300 bytes", _fake_ort_dist, ["web", "{B}", "--ort-dist", "ort", "--out", "w" * 300],
     r"--out w{30}\.\.\.w{27} is too long for the file system: its name has 300 bytes, more than the 255 bytes"),
    ("export without clip", None, ["export", "--generator", "{G}"], "pass both --generator and --clip"),
    ("export mapper without models", None, ["export", "--mapper", "{M}"], "need --generator and --clip"),
    ("export fs3 without s-stats", None, ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "{F}", "--out", "o"], "need both --fs3 and --s-stats"),
    ("generator missing", None, ["export", "--generator", "nope.json", "--clip", "{C}", "--out", "o"], "not found: nope.json"),
    ("generator a folder", _write("g.json", "dir"), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "'g.json' is a directory"),
    ("generator a pipe", _write("g.json", "fifo"), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "not a regular file"),
    ("generator json random bytes", _write("g.json", noise(100)), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "g.json is not a valid stylegan2-generator config"),
    ("generator json a list", _write("g.json", "[1]"), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "holds a JSON list, not a stylegan2-generator config"),
    ("generator json of a mapper", _write("x.json", _copy("mapper")), ["export", "--generator", "x.json", "--clip", "{C}", "--out", "o"], None),
    ("generator weights random bytes", _write("g.json", _model_pair("stylegan2-generator", noise(64))), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "g.safetensors is not a valid safetensors file"),
    ("generator weights escape", _write("g.json", lambda p, m: p.write_text(json.dumps({"kind": "stylegan2-generator", "format_version": 1, "weights": "../x.safetensors", "sha256": "0" * 64, "config": {}}))), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "'weights' must name a file beside it"),
    ("generator no weights", _write("g.json", _model_pair("stylegan2-generator", {}, {"size": 32, "style_dim": 64, "n_mlp": 3, "channels": {"4": 32, "8": 32, "16": 16, "32": 8}})), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "missing keys"),
    ("generator config wrong types", _write("g.json", _model_pair("stylegan2-generator", {}, {"size": "32", "style_dim": 64, "n_mlp": 3, "channels": []})), ["export", "--generator", "g.json", "--clip", "{C}", "--out", "o"], "invalid generator config"),
    ("pt random bytes", _write("g.pt", noise(200)), ["export", "--generator", "g.pt", "--clip", "{C}", "--out", "o"], "not a readable PyTorch checkpoint"),
    ("pt a list", _write("g.pt", _torch_file([1, 2])), ["export", "--generator", "g.pt", "--clip", "{C}", "--out", "o"], "holds a list, expected a dict with 'g_ema'"),
    ("pt g_ema not a state dict", _write("g.pt", _torch_file({"g_ema": [1, 2]})), ["export", "--generator", "g.pt", "--clip", "{C}", "--out", "o"], "holds a list, not a generator state dict"),
    ("pt g_ema with non-tensors", _write("g.pt", _torch_file({"g_ema": {"style.1.weight": "x"}})), ["export", "--generator", "g.pt", "--clip", "{C}", "--out", "o"], "not a rosinality StyleGAN2 generator"),
    ("pt discriminator", _write("g.pt", _torch_file({"d": {"final_linear.0.weight": torch.zeros(1)}})), ["export", "--generator", "g.pt", "--clip", "{C}", "--out", "o"], "discriminator-only"),
    ("pt pickled code", _write("g.pt", _torch_file({"g_ema": {}, "args": Path("x")})), ["export", "--generator", "g.pt", "--clip", "{C}", "--out", "o"], "pass --trust-pickle"),
    ("clip missing", None, ["export", "--generator", "{G}", "--clip", "nope.pt", "--out", "o"], "not found"),
    ("clip random bytes", _write("c.pt", noise(100)), ["export", "--generator", "{G}", "--clip", "c.pt", "--clip-name", "ViT-B-32", "--out", "o"], "c.pt"),
    ("mapper with no weights", _write("m.json", _model_pair("latent-mapper", {}, {"n_latent": 8, "style_dim": 64, "prompt": "p"})), ["export", "--generator", "{G}", "--clip", "{C}", "--mapper", "m.json", "--out", "o"], "missing keys"),
    ("mapper config a list", _write("m.json", _model_pair("latent-mapper", {}, [1])), ["export", "--generator", "{G}", "--clip", "{C}", "--mapper", "m.json", "--out", "o"], "'config' must be an object"),
    ("mapper is a generator file", _write("x.json", _copy("generator")), ["export", "--generator", "{G}", "--clip", "{C}", "--mapper", "x.json", "--out", "o"], "describes a 'stylegan2-generator', not a 'latent-mapper'"),
    ("fs3 object array", _write("f.npy", npy_bytes(np.array([{}], dtype=object))), ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "f.npy", "--s-stats", "{S}", "--out", "o"], "pickled Python objects"),
    ("fs3 wrong shape", _write("f.npy", npy_bytes(np.zeros((3, 3), np.float32))), ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "f.npy", "--s-stats", "{S}", "--out", "o"], "has shape \\(3, 3\\)"),
    ("s-stats missing std", _write("s.npz", lambda p, m: np.savez(p, mean=np.zeros(3))), ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "{F}", "--s-stats", "s.npz", "--out", "o"], "lacks 'std'"),
    ("s-stats not a zip", _write("s.npz", noise(100)), ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "{F}", "--s-stats", "s.npz", "--out", "o"], "not an .npz archive"),
    ("s-stats wrong size", _write("s.npz", lambda p, m: np.savez(p, mean=np.zeros(3), std=np.ones(3))), ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "{F}", "--s-stats", "s.npz", "--out", "o"], "must hold flat mean/std of 256 channels"),
    ("s-stats negative shape", _write("s.npz", npz_with_member("mean", negative_shape_header())), ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "{F}", "--s-stats", "s.npz", "--out", "o"], r"s\.npz is not a valid .*\('mean': its header is invalid: it declares the shape \[-1, 10, 128\].*re-save the arrays with numpy\.savez"),
    ("s-stats object arrays", _write("s.npz", lambda p, m: np.savez(p, mean=np.array([{}], dtype=object), std=np.ones(3))), ["export", "--generator", "{G}", "--clip", "{C}", "--fs3", "{F}", "--s-stats", "s.npz", "--out", "o"], "'mean' holds object"),
    ("edit settings a list", _write("e.json", "[1]"), ["export", "--generator", "{G}", "--clip", "{C}", "--edit-settings", "e.json", "--out", "o"], "edit settings must map prompts"),
    ("edit settings random bytes", _write("e.json", noise(50)), ["export", "--generator", "{G}", "--clip", "{C}", "--edit-settings", "e.json", "--out", "o"], "cannot read e.json as JSON"),
    ("edit settings unknown key", _write("e.json", '{"a face": {"colour": 1}}'), ["export", "--generator", "{G}", "--clip", "{C}", "--edit-settings", "e.json", "--out", "o"], "unknown key"),
    ("edit settings alpha string", _write("e.json", '{"a face": {"alpha": "5"}}'), ["export", "--generator", "{G}", "--clip", "{C}", "--edit-settings", "e.json", "--out", "o"], "alpha must be a number"),
    ("convert sha256 not hex", None, ["convert", "{G}", "out", "--sha256", "00"], "expected a sha256 of 64 hex digits"),
    ("convert sha256 mismatch", None, ["convert", "{G}", "out", "--sha256", "0" * 64], "sha256 is [0-9a-f]{64}, expected 0{64}"),
    ("convert onto a user's json", _write("out.json", '{"mine": true}'), ["convert", "{G}", "out"], "out.json exists and was not written by styleclip-edge"),
    ("convert onto a user's weights", _write("out.safetensors", "x"), ["convert", "{G}", "out"], "out.safetensors exists and was not written"),
    ("inspect missing", None, ["inspect", "nope.pt"], "not found: nope.pt"),
    ("inspect a folder", _write("d.pt", "dir"), ["inspect", "d.pt"], "'d.pt' is a directory"),
    ("import-mapper random bytes", _write("m.pt", noise(100)), ["import-mapper", "m.pt", "o"], "not a readable PyTorch checkpoint"),
    ("import-mapper a list", _write("m.pt", _torch_file([1])), ["import-mapper", "m.pt", "o"], "not a StyleCLIP mapper checkpoint"),
    ("import-mapper an encoder", _write("m.pt", _torch_file({"state_dict": {"encoder.x": torch.zeros(1)}})), ["import-mapper", "m.pt", "o"], "looks like an e4e/pSp encoder"),
    ("import-mapper non-tensor weights", _write("m.pt", _torch_file({"state_dict": {"mapper.course_mapping.mapping.1.weight": "x"}})), ["import-mapper", "m.pt", "o"], "no mapper weight matrices"),
    ("import-mapper bad size", _write("m.pt", _torch_file({"state_dict": {"mapper.course_mapping.mapping.1.weight": torch.zeros(4, 4)}, "opts": {"stylegan_size": "big"}})), ["import-mapper", "m.pt", "o"], "not a size"),
    ("s-stats out suffix", None, ["s-stats", "--generator", "{G}", "--out", "s.txt"], "must end in .npz"),
    ("s-stats onto a user's npz", _write("s.npz", lambda p, m: np.savez(p, a=np.zeros(1))), ["s-stats", "--generator", "{G}", "--out", "s.npz"], "s.npz exists and was not written"),
    ("fs3 out suffix", None, ["fs3", "--generator", "{G}", "--clip", "{C}", "--out", "f.txt"], "must end in .npy"),
    ("fs3 bad shard", None, ["fs3", "--generator", "{G}", "--clip", "{C}", "--shard", "3/2"], "need 0 <= i < n"),
    ("fs3-merge onto a user's npy", _write("fs3.npy", npy_bytes(np.zeros(2))), ["fs3-merge", "--workdir", "w", "--shards", "1"], "fs3.npy exists and was not written"),
    ("fs3 workers without ray", None, ["fs3", "--generator", "{G}", "--clip", "{C}", "--workers", "2"], "--workers.*needs --ray"),
    ("fs3 ray and a shard", None, ["fs3", "--generator", "{G}", "--clip", "{C}", "--ray", "--shard", "0/2"], "leave --shard out"),
    ("fs3 ray without threads", None, ["fs3", "--generator", "{G}", "--clip", "{C}", "--ray", "--threads", "0"], "thread count"),
    ("fs3-merge no unit parts", _write("w/x", "x"), ["fs3-merge", "--workdir", "w"], "no unit parts .* merge with --shards n"),
    ("validate a folder that is no bundle", _write("b/x", "x"), ["validate", "b"], "is not a bundle"),
    ("bench out suffix", None, ["bench", "--out", "b.txt"], "must end in .md"),
    ("bench onto a user's notes", _write("notes.md", "# my notes"), ["bench", "--out", "notes.md"], "notes.md exists and was not written"),
    ("bench a non-bundle", _write("b/x", "x"), ["bench", "--bundle", "b"], "is not a bundle"),
    ("optimize latents onto a user's file", _write("w.npy", npy_bytes(np.zeros(2))), ["optimize", "a smiling face", "--generator", "{G}", "--clip", "{C}", "--save-latents", "w.npy"], "w.npy exists and was not written"),
    ("optimize too many faces", None, ["optimize", "a smiling face", "--generator", "{G}", "--clip", "{C}", "--seed", "0-999"], "would hold 1000 faces"),
    ("train-mapper all groups off", None, ["train-mapper", "p", "--disable", "coarse", "--disable", "medium", "--disable", "fine"], "at least one group must stay enabled"),
    ("train-mapper onto a user's json", _write("m.json", "{}"), ["train-mapper", "p", "--out", "m"], "m.json exists and was not written"),
    ("train-mapper keep unknown attribute", None, ["train-mapper", "p", "--keep", "hair"], "attribute of the demo world .*hair_color"),
    ("train-mapper keep weight alone", None, ["train-mapper", "p", "--keep-weight", "5"], "--keep-weight needs --keep"),
    ("train-mapper keep, another generator", None, ["train-mapper", "p", "--generator", "{G}", "--clip", "{C}", "--keep", "glasses"], "needs the demo world's generator"),
    ("evaluate unknown method", None, ["evaluate", "--methods", "D"], "choose from A, B, C"),
    ("sample-demo zero", None, ["sample-demo", "-n", "0"], "0 is not in the range"),
    ("demo seeds", None, ["demo", "--seed", "a", "--bundle", "{B}"], "non-negative integers or ranges"),
    ("invert a pipe", _write("p.png", "fifo"), ["invert", "p.png", "--bundle", "{B}", "--out", "w.npy"], "not a regular file"),
    ("invert a huge picture", _write("big.png", lambda p, m: __import__("PIL.Image").Image.new("L", (9000, 9000)).save(p)), ["invert", "big.png", "--bundle", "{B}", "--out", "w.npy"], "more than the 80 megapixels"),
    ("invert noise", _write("x.png", noise(100)), ["invert", "x.png", "--bundle", "{B}", "--out", "w.npy"], "not an image PIL can read"),
    ("invert missing picture", None, ["invert", "nope.png", "--bundle", "{B}", "--out", "w.npy"], "not found: nope.png"),
    ("invert onto a user's npy", _write("w.npy", npy_bytes(np.zeros(2))), ["invert", "x.png", "--bundle", "{B}", "--out", "w.npy"], "w.npy exists and was not written"),
    ("invert recon onto a photo", lambda s, m: _photo(s), ["invert", "photo.png", "--bundle", "{B}", "--out", "w.npy", "--recon", "photo.png"], "photo.png exists and was not written"),
    ("edit image with seeds", lambda s, m: _photo(s), ["edit", "a smiling face", "--image", "photo.png", "--seed", "3", "--bundle", "{B}", "--out", "x.png"], "--image replaces --seed"),
]


@pytest.mark.parametrize("case,setup,args,message", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_bad_command_input(bundle, models, tmp_path, monkeypatch, case, setup, args, message):
    import export.bundle

    if setup == "bundle+foreign":
        _bundle_with_foreign_file(tmp_path, models, bundle)
    elif setup is not None:
        setup(tmp_path, models)
    names = {"{G}": models["generator"], "{C}": models["clip"], "{M}": models["mapper"], "{F}": models["fs3"],
             "{S}": models["s_stats"], "{B}": bundle}
    args = [str(names.get(a, a)) for a in args]
    if case.startswith("export into") or case.startswith("export onto"):  # refused before any model is loaded
        monkeypatch.setattr(export.bundle, "load_sources", lambda *a: pytest.fail("export did work before refusing --out"))
    if case == "generator json of a mapper":
        message = "describes a 'latent-mapper', not a 'stylegan2-generator'"
    expect_error(args, tmp_path, message)
    if case == "export into a non-bundle folder":
        assert (tmp_path / "mine" / "thesis.txt").read_text() == "years of work"
        assert (tmp_path / ".mine.old" / "notes.txt").read_text() == "unrelated"


# --- the Python API ---------------------------------------------------------------------------------------
W = np.zeros((1, 8, 64), np.float32)
API = [  # (id, call(editor), exception type, message)
    ("Editor(None)", lambda e, b: Editor(None), TypeError, "bundle must be a path"),
    ("Editor(123)", lambda e, b: Editor(123), TypeError, "bundle must be a path .* got int"),
    ("Editor(list)", lambda e, b: Editor([b]), TypeError, "bundle must be a path"),
    ("Editor('')", lambda e, b: Editor(""), ValueError, "bundle is empty"),
    ("Editor device None", lambda e, b: Editor(b, device=None), ValueError, "device must be one of"),
    ("Editor device list", lambda e, b: Editor(b, device=["cpu"]), ValueError, "device must be one of"),
    ("Editor threads string", lambda e, b: Editor(b, threads="2"), TypeError, "threads must be an integer"),
    ("Editor threads zero", lambda e, b: Editor(b, threads=0), ValueError, "threads must be an integer in \\[1"),
    ("Editor threads bool", lambda e, b: Editor(b, threads=True), TypeError, "threads must be an integer"),
    ("Editor optimization", lambda e, b: Editor(b, optimization=None), ValueError, "optimization must be one of"),
    ("Editor precision", lambda e, b: Editor(b, precision=16), ValueError, "precision must be one of"),
    ("GlobalEdit(None)", lambda e, b: GlobalEdit(None), TypeError, "GlobalEdit target must be a text"),
    ("GlobalEdit(5)", lambda e, b: GlobalEdit(5), TypeError, "GlobalEdit target must be a text"),
    ("GlobalEdit('')", lambda e, b: GlobalEdit(""), ValueError, "GlobalEdit target is empty"),
    ("GlobalEdit neutral None", lambda e, b: GlobalEdit("x", neutral=None), TypeError, "GlobalEdit neutral must be a text"),
    ("GlobalEdit alpha string", lambda e, b: GlobalEdit("x", alpha="4"), TypeError, "GlobalEdit alpha must be a real number, got str"),
    ("GlobalEdit alpha None", lambda e, b: GlobalEdit("x", alpha=None), TypeError, "GlobalEdit alpha must be a real number"),
    ("GlobalEdit alpha complex", lambda e, b: GlobalEdit("x", alpha=1j), TypeError, "GlobalEdit alpha must be a real number, got complex"),
    ("GlobalEdit alpha list", lambda e, b: GlobalEdit("x", alpha=[1]), TypeError, "GlobalEdit alpha must be a real number"),
    ("GlobalEdit alpha nan", lambda e, b: GlobalEdit("x", alpha=float("nan")), ValueError, "GlobalEdit alpha must be a number in"),
    ("GlobalEdit alpha bool", lambda e, b: GlobalEdit("x", alpha=True), TypeError, "GlobalEdit alpha must be a real number"),
    ("GlobalEdit alpha 20", lambda e, b: GlobalEdit("x", alpha=20), ValueError, "GlobalEdit alpha must be a number in \\[-10.0, 10.0\\]"),
    ("GlobalEdit beta 'auto'", lambda e, b: GlobalEdit("x", beta="auto"), TypeError, "GlobalEdit beta must be a real number"),
    ("GlobalEdit beta 2", lambda e, b: GlobalEdit("x", beta=2), ValueError, "GlobalEdit beta must be a number in"),
    ("GlobalEdit min_channels 0", lambda e, b: GlobalEdit("x", min_channels=0), ValueError, "min_channels must be an integer in"),
    ("GlobalEdit min_channels float", lambda e, b: GlobalEdit("x", min_channels=2.5), TypeError, "min_channels must be an integer"),
    ("MapperEdit(None)", lambda e, b: MapperEdit(None), TypeError, "MapperEdit name must be a text"),
    ("MapperEdit strength string", lambda e, b: MapperEdit("p", strength="1"), TypeError, "MapperEdit strength must be a real number"),
    ("MapperEdit strength complex", lambda e, b: MapperEdit("p", strength=2j), TypeError, "MapperEdit strength must be a real number"),
    ("MapperEdit strength 9", lambda e, b: MapperEdit("p", strength=9), ValueError, "MapperEdit strength must be a number in"),
    ("global_edit(None)", lambda e, b: e.global_edit(None), TypeError, "the target text must be a text"),
    ("global_edit(5)", lambda e, b: e.global_edit(5), TypeError, "the target text must be a text \\(str\\), got int 5"),
    ("global_edit alpha string", lambda e, b: e.global_edit("x", alpha="1"), TypeError, "GlobalEdit alpha must be a real number"),
    ("global_edit unknown setting", lambda e, b: e.global_edit("x", colour=1), TypeError, "global_edit takes neutral, alpha, beta and min_channels, not colour"),
    ("mapper_edit(None)", lambda e, b: e.mapper_edit(None), TypeError, "the mapper prompt or name must be a text"),
    ("mapper_edit(3)", lambda e, b: e.mapper_edit(3), TypeError, "the mapper prompt or name must be a text"),
    ("mapper_edit strength string", lambda e, b: e.mapper_edit("purple hair", strength="x"), TypeError, "MapperEdit strength must be a real number"),
    ("mapper_edit unknown", lambda e, b: e.mapper_edit("green hair"), ValueError, "no mapper is named or was trained for 'green hair'"),
    ("sample(None)", lambda e, b: e.sample(None), TypeError, "seeds must be an integer or a list of integers, got NoneType"),
    ("sample(str)", lambda e, b: e.sample("1,2"), TypeError, "seeds must be an integer or a list of integers, got str"),
    ("sample(float)", lambda e, b: e.sample(1.0), TypeError, "seeds must be an integer or a list"),
    ("sample([1.5])", lambda e, b: e.sample([1.5]), TypeError, "each seed must be an integer, got float"),
    ("sample([True])", lambda e, b: e.sample([True]), TypeError, "each seed must be an integer, got bool"),
    ("sample([-1])", lambda e, b: e.sample([-1]), ValueError, "each seed must be an integer in \\[0"),
    ("sample([])", lambda e, b: e.sample([]), ValueError, "seeds is empty"),
    ("sample truncation string", lambda e, b: e.sample(1, truncation="0.7"), TypeError, "truncation must be a real number"),
    ("sample truncation 2", lambda e, b: e.sample(1, truncation=2), ValueError, "truncation must be a number in \\[0.0, 1.0\\]"),
    ("edit latents None", lambda e, b: e.edit(None, GlobalEdit("x")), TypeError, "latents must be an array"),
    ("edit latents string", lambda e, b: e.edit("w.npy", GlobalEdit("x")), TypeError, "latents must be an array"),
    ("edit latents complex", lambda e, b: e.edit(W.astype(np.complex64), GlobalEdit("x")), TypeError, "latents must hold real numbers, got complex64"),
    ("edit latents objects", lambda e, b: e.edit(np.array([None]), GlobalEdit("x")), TypeError, "latents must hold real numbers, got object"),
    ("edit latents ragged", lambda e, b: e.edit([[1, 2], [3]], GlobalEdit("x")), ValueError, "latents must be an array"),
    ("edit latents shape", lambda e, b: e.edit(np.zeros((1, 8, 63)), GlobalEdit("x")), ValueError, "latents must be W\\+ of shape \\[N, 8, 64\\]"),
    ("edit latents nan", lambda e, b: e.edit(W + np.nan, GlobalEdit("x")), ValueError, "NaN or infinite"),
    ("edit edits None", lambda e, b: e.edit(W, None), TypeError, "edits must be a GlobalEdit, a MapperEdit or a list of them, got NoneType"),
    ("edit edits string", lambda e, b: e.edit(W, "purple hair"), TypeError, "edits must be a GlobalEdit, a MapperEdit or a list of them, got str"),
    ("edit edits numbers", lambda e, b: e.edit(W, [1]), TypeError, "edits must hold GlobalEdit or MapperEdit objects, got int"),
    ("edit unknown mapper", lambda e, b: e.edit(W, MapperEdit("bogus")), ValueError, "unknown mapper 'bogus'"),
    ("edit prompt equals neutral", lambda e, b: e.edit(W, GlobalEdit("a face", "a face")), ValueError, "direction is zero"),
    ("comparison columns None", lambda e, b: e.comparison(W, None), TypeError, "columns must be a list"),
    ("comparison columns string", lambda e, b: e.comparison(W, "x"), TypeError, "columns must be a list"),
    ("comparison column None", lambda e, b: e.comparison(W, [None]), TypeError, "each column must be a GlobalEdit, a MapperEdit or a list"),
    ("comparison column numbers", lambda e, b: e.comparison(W, [[1]]), TypeError, "each column must hold GlobalEdit or MapperEdit"),
    ("comparison one edit", lambda e, b: e.comparison(W, GlobalEdit("x")), TypeError, "columns must be a list"),
    ("render None", lambda e, b: e.render(None), TypeError, "latents must be an array"),
    ("synthesize strings", lambda e, b: e.synthesize([["a"]]), TypeError, "styles must hold real numbers"),
    ("synthesize shape", lambda e, b: e.synthesize(np.zeros((1, 3))), ValueError, "styles must be finite \\[N, 256\\]"),
    ("apply_mapper with a name", lambda e, b: e.apply_mapper(W, "purple_hair"), TypeError, "edit must be a MapperEdit, got str"),
    ("text_direction None", lambda e, b: e.text_direction(None), TypeError, "the target text must be a text"),
    ("text_direction same", lambda e, b: e.text_direction("a face", "a face"), ValueError, "direction is zero"),
    ("table unknown", lambda e, b: e.table("bogus"), BundleError, "no 'bogus' table"),
    ("session unknown", lambda e, b: e.session("encoderx"), BundleError, "no 'encoderx' graph"),
]


@pytest.fixture(scope="module")
def editor(bundle):
    return Editor(bundle)


@pytest.mark.parametrize("case,call,error,message", API, ids=[c[0] for c in API])
def test_bad_api_call(editor, bundle, case, call, error, message):
    with pytest.raises(error, match=message):
        call(editor, bundle)


def test_corpus_size():
    cases = len(LATENTS) + len(EDIT_OPTIONS) + len(OUTPUTS) + len(TAMPERING) + len(COMMANDS) + len(API)
    assert cases >= 150, cases
