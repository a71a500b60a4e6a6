"""The runtime in a web page (web/, runtime/web_site.py): the page's modules under node and the whole site in
headless chromium, compared with the Python runtime on the same seeds, prompts and settings.

Needs node with web/'s npm packages (`npm ci --prefix web`) and Debian's chromium; `make test` installs
them (scripts/web_deps.sh). Without them these tests skip with the reason, except where
STYLECLIP_WEB_TESTS=require (.ci/run sets it), where a missing tool fails them.
"""
import base64
import ctypes
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime import edit_math
from runtime.bundle import read_manifest
from runtime.stylespace import StyleSpaceLayout
from runtime.tokenizer import ClipTokenizer
from runtime.web_site import (SITE_MANIFEST, WebSiteError, build_site, check_destination, first_visit, make_server, ort_dist,
                              site_size)
from runtime.web_text import text_tables
from tests.text_corpus import corpus

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
REQUIRED = os.environ.get("STYLECLIP_WEB_TESTS") == "require"
# STYLECLIP_WEB_SWEEP=1: the long parity sweeps behind the README's figures (all code points, more seeds
# and mojibake strings; ~3 min) instead of the default samples.
SWEEP = os.environ.get("STYLECLIP_WEB_SWEEP") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOLERANCE = 2  # uint8 per channel, page vs Python runtime


def need(ok: bool, reason: str):
    if not ok:
        (pytest.fail if REQUIRED else pytest.skip)(f"{reason} (`make test` installs it: scripts/web_deps.sh)")


@pytest.fixture(scope="module")
def node():
    need(shutil.which("node") is not None, "node is not installed")
    need((WEB / "node_modules" / "onnxruntime-web" / "dist").is_dir() and (WEB / "node_modules" / "playwright-core").is_dir(),
         "web/node_modules lacks onnxruntime-web/playwright-core: run `npm ci --prefix web`")
    return shutil.which("node")


def run_node(node, script: str, job: dict, timeout: int = 600) -> dict:
    res = subprocess.run([node, str(WEB / "test" / script)], input=json.dumps(job), capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout)


def f32(a) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def from_f32(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


@pytest.fixture(scope="module")
def tables_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("web") / "text_tables.json"
    path.write_text(json.dumps(text_tables(), ensure_ascii=False))
    return path


# --- modules under node -------------------------------------------------------------------------------
def test_rng_is_numpy_bit_for_bit(node):
    seeds = list(range(20000 if SWEEP else 3000)) + [2**32 - 1, 2**32, 2**63 + 11, 2**64 + 3, 10**40 + 7]
    out = run_node(node, "parity.mjs", {"rng": {"seeds": [str(s) for s in seeds], "n": 128}})["rng"]
    bad = [s for s, got in zip(seeds, out)
           if not np.array_equal(from_f32(got).view(np.uint32),
                                 np.random.default_rng(s).standard_normal(128, dtype=np.float32).view(np.uint32))]
    assert not bad, f"{len(bad)} of {len(seeds)} seeds differ from numpy, e.g. {bad[:5]}"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="numpy's tail sampler uses the C library's log1pf (glibc here)")
def test_log1pf_rounds_as_glibc():
    """The ziggurat's tail (|z| > 3.65, ~1 draw in 4000) uses libm's log1pf; ours must round the same way."""
    libm = ctypes.CDLL("libm.so.6")
    libm.log1pf.restype, libm.log1pf.argtypes = ctypes.c_float, [ctypes.c_float]
    rng = np.random.default_rng(5)
    x = -(rng.integers(0, 2**24, 20000) / 2**24).astype(np.float32)  # the inputs the sampler passes: -(k / 2^24)
    x = np.concatenate([x, np.float32([-0.0, -0.5, -0.2929, -1e-9, -0.999999])])
    node_bin = shutil.which("node")
    need(node_bin is not None, "node is not installed")
    got = from_f32(run_node(node_bin, "parity.mjs", {"log1pf": f32(x)})["log1pf"])
    ref = np.array([libm.log1pf(float(v)) for v in x], dtype=np.float32)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert not np.array_equal(ref, np.log1p(x.astype(np.float64)).astype(np.float32))  # not just a rounded log1p


def _mojibake(n: int, seed: int = 1) -> list[str]:
    """UTF-8 text decoded with the code pages ftfy repairs (some twice, some with NBSP turned to spaces)."""
    rng = random.Random(seed)
    pages = ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257", "iso-8859-2", "mac_roman", "cp437"]
    base = ["café", "naïve résumé", "Привет мир", "ελληνικά", "東京", "😀 emoji", "doesn’t “quote”", "Ångström ½",
            "straße", "İstanbul", "à la carte", "no problem ✔", "Ğüşİ", "ĀĒĪŌŪ"]
    out = []
    for _ in range(n):
        raw = " ".join(rng.choice(base) for _ in range(rng.randint(1, 4))).encode()
        if rng.random() < 0.3:
            raw = raw.replace(b"\xa0", b" ")
        text = raw.decode(rng.choice(pages), errors="replace")
        if rng.random() < 0.3:
            text = text.encode().decode(rng.choice(pages), errors="replace")
        out.append(text)
    return out


@pytest.mark.parametrize("which", ["corpus", "mojibake"])
def test_tokenizer_ids_match_python(node, tables_file, which):
    from open_clip.tokenizer import default_bpe

    texts = corpus() if which == "corpus" else _mojibake(40000 if SWEEP else 3000)
    assert which != "corpus" or len(texts) >= 1000
    job = {"tokenizer": {"vocab": default_bpe(), "tables": str(tables_file), "texts": [[ord(c) for c in t] for t in texts],
                         "context": 77}}
    got = run_node(node, "parity.mjs", job)["tokenizer"]
    ref = ClipTokenizer(default_bpe())(texts)
    bad = [t for t, a, b in zip(texts, ref, got) if a.tolist() != b]
    assert not bad, f"{len(bad)} of {len(texts)} strings get other ids, e.g. {bad[:5]!r}"


@pytest.mark.skipif(not SWEEP, reason="the all-code-points sweep runs with STYLECLIP_WEB_SWEEP=1 (~2 min)")
def test_tokenizer_on_every_code_point(node, tables_file):
    """'x' + c + ' y' for every code point c: only characters unknown to Python's Unicode database may differ
    (the browser's newer tables lower-case some of them)."""
    import unicodedata

    from open_clip.tokenizer import default_bpe

    tok, cps = ClipTokenizer(default_bpe()), [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    differ = []
    for i in range(0, len(cps), 100_000):
        chunk = [[0x78, c, 0x20, 0x79] for c in cps[i:i + 100_000]]
        job = {"tokenizer": {"vocab": default_bpe(), "tables": str(tables_file), "texts": chunk, "context": 77}}
        got = run_node(node, "parity.mjs", job)["tokenizer"]
        ref = tok(["".join(map(chr, t)) for t in chunk])
        differ += [t[1] for t, a, b in zip(chunk, ref, got) if a.tolist() != b]
    print(f"\n{len(differ)} of {len(cps)} code points tokenize differently (Unicode {unicodedata.unidata_version} in Python)")
    assert all(unicodedata.category(chr(c)) == "Cn" for c in differ), [hex(c) for c in differ if unicodedata.category(chr(c)) != "Cn"]


def test_edit_math_matches_python(node):
    """Hand-made tables: every step of runtime/edit_math.py against editmath.js (same float32 steps)."""
    rng = np.random.default_rng(3)
    layout = StyleSpaceLayout.for_generator(32, {4: 16, 8: 12, 16: 8, 32: 6})
    dim, templates = 24, 7
    rows = [l.channels for l in layout.conv_layers]
    n_rows = sum(rows[:-1])  # fs3 stops a layer early, as the official FFHQ table does
    fs3 = edit_math.unit(rng.standard_normal((n_rows, dim))).astype(np.float32)
    std = rng.uniform(0.1, 2, layout.total).astype(np.float32)
    emb = edit_math.unit(rng.standard_normal((2 * templates, dim)) + 0.3).astype(np.float32)
    s = rng.standard_normal((3, layout.total)).astype(np.float32)
    w, mapped = rng.standard_normal((2, 5, dim)).astype(np.float32), rng.standard_normal((2, 5, dim)).astype(np.float32)
    w_mapped, avg = rng.standard_normal((3, dim)).astype(np.float32), rng.standard_normal(dim).astype(np.float32)
    images = np.concatenate([rng.uniform(-1.3, 1.3, (2, 3, 4, 5)), np.full((1, 3, 4, 5), 0.2 / 127.5 - 1)]).astype(np.float32)
    images[1, 0, 0, :3] = [-1 + 0.5 / 127.5, -1 + 1.5 / 127.5, -1 + 2.5 / 127.5]  # ties: numpy rounds half to even

    dt = edit_math.text_direction(lambda texts: emb, "x", "y", templates=["{}"] * templates)
    r = edit_math.relevance(fs3, dt)
    betas = [0.05, float(np.abs(r).max()) * 0.7, float(np.abs(r).max()) + 0.01, 0.0, 1.2]
    math = {"alpha_range": edit_math.ALPHA_RANGE, "beta_range": edit_math.BETA_RANGE}
    job = {"edit_math": {
        "layout": layout.to_list(), "fs3": f32(fs3), "rows": n_rows, "dim": dim, "std": f32(std), "emb": f32(emb),
        "templates": templates, "total": layout.total, "betas": betas, "min_channels": [1, 10, n_rows, 0], "math": math,
        "s": f32(s), "alphas": [2.5, -1.25], "bad_alpha": 11.0, "w": f32(w), "mapped": f32(mapped), "strength": 1.7,
        "w_mapped": f32(w_mapped), "avg": f32(avg), "psi": 0.7, "images": f32(images), "n": 3, "h": 4, "w_px": 5,
        "template_text": "a face", "template_list": list(edit_math.TEMPLATES)}}
    got = run_node(node, "parity.mjs", job)["edit_math"]

    assert got["conv"] == layout.conv_index().tolist()
    np.testing.assert_allclose(from_f32(got["dt"]), dt, rtol=0, atol=2e-7)  # float64 sums in another order
    np.testing.assert_allclose(from_f32(got["r"]), r, rtol=0, atol=1e-6)
    r = from_f32(got["r"])  # from here on the same inputs: bit-exact
    for beta, res in zip(betas, got["directions"]):
        try:
            ref = edit_math.style_direction(r, beta, std, layout)
        except ValueError as err:
            assert res["error"] == str(err), (beta, res)
            assert (res["type"] == "NoChannelError") == isinstance(err, edit_math.NoChannelError)
        else:
            assert np.array_equal(from_f32(res), ref), beta
    for k, res in zip([1, 10, n_rows, 0], got["auto_betas"]):
        if k == 0:
            assert "min_channels must be in 1.." in res["error"]
        else:
            assert res == edit_math.auto_beta(r, k)
    ds = edit_math.style_direction(r, betas[0], std, layout)
    assert np.array_equal(from_f32(got["edited"]), edit_math.apply_edits(s, [ds, ds], [2.5, -1.25]).ravel())
    with pytest.raises(ValueError) as err:
        edit_math.apply_edits(s, [ds], [11.0])
    assert got["bad_alpha"]["error"] == str(err.value)
    assert np.array_equal(from_f32(got["scaled"]), (w + np.float32(1.7) * (mapped - w)).ravel())
    assert np.array_equal(from_f32(got["truncated"]), (avg + np.float32(0.7) * (w_mapped - avg)).ravel())
    ref_img = ((np.clip(images, -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)
    for k, rgba in enumerate(got["rgba"]):
        rgba = np.frombuffer(base64.b64decode(rgba), np.uint8).reshape(4, 5, 4)
        assert np.array_equal(rgba[..., :3], ref_img[k]) and (rgba[..., 3] == 255).all()
    assert got["templates"] == edit_math.template_prompts("a face")


# --- the site -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    """The demo world's bundle (the page's tuned settings and faces) with its fp16 variants (the site's default
    weights), exported once for these tests (~35 s)."""
    from export.bundle import ExportOptions, demo_sources, export_bundle

    out = tmp_path_factory.mktemp("web-demo") / "bundle"
    export_bundle(out, demo_sources(ROOT / "artifacts" / "demo"), ExportOptions(fp16=True), progress=False)
    return out


def add_test_encoder(bundle: Path) -> Path:
    """A tiny stand-in for issue 16's e4e graph (image [B, 3, S, S] in [-1, 1] -> W+) with the manifest section
    it writes, so the page's drag-and-drop path runs: W+ = latent_avg + the image's channel means @ a projection."""
    import hashlib

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = json.loads((bundle / "manifest.json").read_text())
    n, d, size = m["generator"]["n_latent"], m["generator"]["style_dim"], m["generator"]["size"]
    proj = (np.random.default_rng(0).standard_normal((3, n * d)) * 2).astype(np.float32)
    avg = np.tile(np.load(bundle / m["tables"]["latent_avg"]), n).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["means", "proj"], ["offset"]), helper.make_node("Add", ["offset", "avg"], ["flat"]),
         helper.make_node("Reshape", ["flat", "shape"], ["wplus"])],
        "test_encoder", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("wplus", TensorProto.FLOAT, ["batch", n, d])],
        [numpy_helper.from_array(proj, "proj"), numpy_helper.from_array(avg, "avg"),
         numpy_helper.from_array(np.array([-1, n, d], dtype=np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    rel = "graphs/encoder.onnx"
    onnx.save(model, bundle / rel)
    data = (bundle / rel).read_bytes()
    m["files"][rel] = {"role": "graph:encoder", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    m["graphs"]["encoder"] = {"inputs": [{"name": "image", "shape": ["batch", 3, size, size], "dtype": "float32"}],
                              "outputs": [{"name": "wplus", "shape": ["batch", n, d], "dtype": "float32"}],
                              "metric": "wplus", "variants": {"fp32": {"file": rel, "format": "onnx", "precision": "fp32"}}}
    m["encoder"] = {"graph": "encoder", "input_size": size, "n_latent": n, "style_dim": d, "color": "RGB",
                    "normalization": {"mean": [0.5] * 3, "std": [0.5] * 3, "range": [-1.0, 1.0]}, "resize": "bilinear"}
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    return bundle / rel


@pytest.fixture(scope="module")
def site(node, demo_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("web-site") / "site"
    build_site(demo_bundle, out)
    return out


def test_site_holds_what_the_page_needs(site, demo_bundle):
    import hashlib

    manifest, info = read_manifest(demo_bundle), json.loads((site / SITE_MANIFEST).read_text())

    for rel, entry in info["files"].items():
        data = (site / rel).read_bytes()
        assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    html = (site / "index.html").read_text()
    assert hashlib.sha256((site / SITE_MANIFEST).read_bytes()).hexdigest() in html
    assert '"integrity"' in html and "sha384-" in html
    for name, graph in info["graphs"].items():  # graphs byte for byte, the bundle's fp16 variants by default
        assert graph["variant"] == "fp16"
        assert (site / graph["file"]).read_bytes() == (demo_bundle / manifest["graphs"][name]["variants"]["fp16"]["file"]).read_bytes()
    assert set(info["graphs"]) == {"mapping", "styles", "synthesis", "text_encoder", "encoder",
                                   *(m["graph"] for m in manifest["mappers"].values())}
    for name, table in info["tables"].items():  # little-endian float32 with the shape from the manifest
        if name == "text_directions":
            continue
        ref = np.load(demo_bundle / manifest["tables"][name])
        got = np.fromfile(site / table["file"], dtype="<f4").reshape(table["shape"])
        assert table["dtype"] == "float32" and np.array_equal(got, ref), name
    assert info["edit_settings"] == manifest["edit_settings"] and info["templates"] == manifest["templates"]
    from runtime.editor import Editor

    # the tuned prompts' directions, from the text encoder the site serves
    editor, known = Editor(demo_bundle, precision="fp16"), info["tables"]["text_directions"]
    dirs = np.fromfile(site / known["file"], dtype="<f4").reshape(known["shape"])
    assert [k[0] for k in known["keys"]] == list(manifest["edit_settings"])
    for (target, neutral), dt in zip(known["keys"], dirs):
        assert np.array_equal(dt, editor.text_direction(target, neutral))
    assert "sources" not in info  # local paths of the builder's machine stay out of a public site


def test_site_never_replaces_what_it_did_not_write(site, tmp_path, demo_bundle):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(WebSiteError, match="not a site written by"):
        build_site(demo_bundle, mine)
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    inode = empty.stat().st_ino
    with pytest.raises(WebSiteError, match="not a site written by"):
        build_site(demo_bundle, empty)  # someone's empty folder is theirs too
    assert empty.stat().st_ino == inode and not any(empty.iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(WebSiteError, match="not a folder"):
        check_destination(tmp_path / "file")
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    (copy / "notes.txt").write_text("mine")  # someone's file inside a site of ours: it would be lost
    with pytest.raises(WebSiteError, match=r"holds files this tool did not write \(notes.txt\)"):
        build_site(demo_bundle, copy)
    (copy / "notes.txt").unlink()
    (copy / "graphs" / "mapping.onnx").write_bytes(b"changed")  # a listed file, changed: still ours to replace
    build_site(demo_bundle, copy)  # a site of ours is replaced whole
    assert (copy / SITE_MANIFEST).is_file() and (copy / "graphs" / "mapping.onnx").read_bytes() != b"changed"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    with pytest.raises(WebSiteError, match="npm ci --prefix web"):
        ort_dist(tmp_path / "nowhere")


def test_cli_web_is_torch_free_and_reports_errors(node, demo_bundle, tmp_path):
    code = (
        "import sys, runpy\n"
        "sys.argv = ['cli.py', 'web', sys.argv[1], '--out', sys.argv[2]]\n"
        "try:\n    runpy.run_path('cli.py', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip', 'onnx'))\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(demo_bundle), str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fp16 graphs; the first visit downloads wasm" in res.stdout
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for args, expected in (([str(demo_bundle), "--out", str(tmp_path / "mine")], "not a site written by"),
                           ([str(tmp_path / "nobundle"), "--out", str(tmp_path / "s2")], "does not exist"),
                           ([str(demo_bundle), "--out", str(tmp_path / "s3"), "--ort-dist", str(tmp_path)], "npm ci --prefix web"),
                           ([str(demo_bundle), "--out", str(tmp_path / "s4"), "--without", "encoder,tokenizer"],
                            "--without takes encoder, text_encoder, mappers (comma-separated), not tokenizer")):
        res = subprocess.run([sys.executable, "cli.py", "web", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# --- in headless chromium ---------------------------------------------------------------------------------
class Served:
    """`cli.py web --serve` on a free loopback port, stopped on exit."""

    def __init__(self, bundle, out, *options):
        self.proc = subprocess.Popen([sys.executable, "cli.py", "web", str(bundle), "--out", str(out), "--serve", "--port", "0",
                                      *options],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if line.startswith("serving "):
                self.url = line.split()[1]
                break
        else:
            raise AssertionError(f"`cli.py web --serve` did not start: {self.proc.stderr.read()[-3000:]}")
        assert self.url.startswith("http://127.0.0.1:")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def drive(node, job: dict) -> dict:
    need(CHROMIUM is not None, "chromium is not installed (Debian: apt-get install chromium)")
    return run_node(node, "drive.mjs", {"chromium": CHROMIUM, **job}, timeout=900)


SEEDS = [1, 2, 3, 4, 5]
CASES = [  # what the page is told (as a person sets the controls), and the same edit through the Python runtime
    ({"method": "global", "prompt": "a face with purple hair"}, lambda ed: ed.global_edit("a face with purple hair")),
    # not a tuned prompt: its text direction comes from the page's own tokenizer and text encoder
    ({"method": "global", "prompt": "a face with red hair", "neutral": "a face", "alpha": 4.0, "beta": "auto", "min_channels": 20},
     lambda ed: ed.global_edit("a face with red hair", neutral="a face", alpha=4.0, beta=None, min_channels=20)),
    ({"method": "mapper", "mapper": "a_face_with_glasses", "strength": 1.5}, lambda ed: ed.mapper_edit("a_face_with_glasses", 1.5)),
    ({"method": "mapper", "mapper": "a_face_with_purple_hair"}, lambda ed: ed.mapper_edit("a face with purple hair")),
]


def fetched(requests) -> set[str]:
    return {r["path"].lstrip("/") or "index.html" for r in requests}


@pytest.mark.parametrize("weights", ["auto", "fp32"])
def test_page_edits_equal_the_python_runtime(node, demo_bundle, tmp_path, weights):
    """Type a prompt, press Edit, read the canvases: the same pixels as runtime/editor.py (uint8 within ±2), with the
    site's default weights (the bundle's fp16 variants: fp16-stored, computed in fp32) against Editor(precision="fp16")
    and with the fp32 graphs against the default Editor. The first visit fetches only what the first edit needs; the
    text encoder, a mapper and the encoder come when first used."""
    from runtime.editor import Editor

    import onnxruntime as ort
    from PIL import Image

    shot = Path(os.environ.get("WEB_SCREENSHOT") or tmp_path / "web.png")
    bad_prompts = ["", "   ", " ".join(["purple"] * 80)]
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_bundle, bundle)
    encoder = add_test_encoder(bundle)  # fp32 only: the site serves it so, Editor(precision="fp16") runs it so
    editor = Editor(bundle, precision="fp16" if weights == "auto" else "fp32")
    photo = tmp_path / "photo.png"  # at the encoder's size: the page's W+ is then the Python one exactly
    Image.fromarray(editor.render(editor.sample([11]))[0]).save(photo)
    image_case = {"image": str(photo), "method": "global", "prompt": "a face with glasses"}
    with Served(bundle, tmp_path / "site", "--weights", weights) as server:
        result = drive(node, {"url": server.url + "?ep=wasm", "screenshot": str(shot), "screenshot_after": 0,
                              "bad_prompts": bad_prompts,
                              "cases": [{**page, "seeds": ",".join(map(str, SEEDS))} for page, _ in CASES] + [image_case]})
    assert result["load"]["errors"] == [] and result["load"]["backend"] == "wasm", result["load"]
    assert result["page_errors"] == [] and result["console_errors"] == [], result
    site = json.loads((tmp_path / "site" / SITE_MANIFEST).read_text())
    assert {g["variant"] for n, g in site["graphs"].items() if n != "encoder"} == {"fp16" if weights == "auto" else "fp32"}
    # lazy loading: the first visit is the site's first-visit list and onnxruntime-web's WebAssembly build, byte for byte
    first = result["load"]["requests"]
    assert fetched(first) == set(first_visit(site)) | set(site["ort"]["wasm"].values()), fetched(first)
    assert sum(r["bytes"] for r in first) == site_size(tmp_path / "site")["first_visit"]["wasm"]
    later = [fetched(case["requests"]) for case in result["cases"]]
    assert later[0] == set()  # a tuned prompt: its text direction came with the site
    assert later[1] == {site["graphs"]["text_encoder"]["file"], site["tokenizer"]["vocab"]}  # a new prompt
    assert later[2] == {site["graphs"]["mapper_a_face_with_glasses"]["file"]} and later[3] == {
        site["graphs"]["mapper_a_face_with_purple_hair"]["file"]}
    assert later[4] == {site["graphs"]["encoder"]["file"]}  # the dropped picture
    wplus = editor.sample(SEEDS)
    original = editor.render(wplus)
    worst = {}
    for (page, python), got in zip(CASES, result["cases"][:len(CASES)]):
        assert got["message"] is None, got
        edit = python(editor)
        expected = editor.edit(wplus, edit)
        assert len(got["faces"]) == len(SEEDS)
        for k, face in enumerate(got["faces"]):
            size = face["size"]
            for name, ref in (("original", original[k]), ("edited", expected[k])):
                rgba = np.frombuffer(base64.b64decode(face[name]), np.uint8).reshape(size, size, 4)
                diff = np.abs(rgba[..., :3].astype(int) - ref.astype(int)).max()
                worst[name] = max(worst.get(name, 0), int(diff))
                assert diff <= TOLERANCE, f"{page} seed {SEEDS[k]} {name}: max |page - python| = {diff}"
        assert not np.array_equal(expected, original)  # the edit changed the faces
    # the dropped picture: inverted with the encoder graph, then edited with the prompt's tuned settings
    x = np.asarray(Image.open(photo).convert("RGB")).transpose(2, 0, 1)[None].astype(np.float32) / np.float32(127.5) - np.float32(1)
    inverted = ort.InferenceSession(str(encoder), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    got = result["cases"][-1]
    assert got["message"] is None and len(got["faces"]) == 1, got
    for name, ref in (("original", editor.render(inverted)[0]),
                      ("edited", editor.edit(inverted, editor.global_edit("a face with glasses"))[0])):
        rgba = np.frombuffer(base64.b64decode(got["faces"][0][name]), np.uint8).reshape(ref.shape[0], ref.shape[1], 4)
        diff = int(np.abs(rgba[..., :3].astype(int) - ref.astype(int)).max())
        worst[f"inverted {name}"] = diff
        assert diff <= TOLERANCE, f"dropped picture {name}: max |page - python| = {diff}"
    print(f"\npage vs Python runtime, {len(SEEDS)} seeds x {len(CASES)} edits + 1 dropped picture: max |diff| {worst} (uint8)")
    assert shot.is_file() and shot.stat().st_size > 10_000

    messages = [r["message"] for r in result["bad_prompts"]]
    assert all(not r["hidden"] and r["state"] == "error" for r in result["bad_prompts"]), result["bad_prompts"]
    assert "the target text is empty" in messages[0] and "the target text is empty" in messages[1]
    assert "too long (80 tokens)" in messages[2]
    with pytest.raises(ValueError, match=r"too long \(80 tokens\)"):  # the Python runtime says the same
        editor.check_prompt(bad_prompts[2], "target text")


def test_site_without_the_encoders_serves_the_tuned_prompts(node, demo_bundle, tmp_path):
    """`web --without encoder,text_encoder`: no encoder, text encoder or vocabulary in the site; the page edits
    the tuned prompts (typed in any case) and the mappers as Python does, and says why it cannot edit another prompt."""
    from runtime.editor import Editor

    with Served(demo_bundle, tmp_path / "site", "--without", "encoder,text_encoder") as server:
        result = drive(node, {"url": server.url + "?ep=wasm", "cases": [
            {"seeds": "1,2", "method": "global", "prompt": "A Face  with PURPLE hair"},
            {"seeds": "1,2", "method": "global", "prompt": "a face with red hair"},
            {"seeds": "1,2", "method": "mapper", "mapper": "a_face_with_glasses"}]})
    site = json.loads((tmp_path / "site" / SITE_MANIFEST).read_text())
    assert site["without"] == ["encoder", "text_encoder"] and site["encoder"] is None and site["tokenizer"]["vocab"] is None
    assert not {"encoder", "text_encoder"} & set(site["graphs"])
    assert not [rel for rel in site["files"] if "encoder" in rel or rel.endswith(".gz")]
    assert result["load"]["errors"] == [] and result["page_errors"] == [], result["load"]
    editor = Editor(demo_bundle, precision="fp16")
    w = editor.sample([1, 2])
    tuned, new, mapper = result["cases"]
    for got, edit in ((tuned, editor.global_edit("a face with purple hair")), (mapper, editor.mapper_edit("a_face_with_glasses"))):
        assert got["message"] is None, got
        expected = editor.edit(w, edit)
        for k, face in enumerate(got["faces"]):
            rgba = np.frombuffer(base64.b64decode(face["edited"]), np.uint8).reshape(face["size"], face["size"], 4)
            assert np.abs(rgba[..., :3].astype(int) - expected[k].astype(int)).max() <= TOLERANCE
    assert "this site has no text encoder (built with --without text_encoder)" in new["message"]
    neutral = editor.global_edit("a face with purple hair").neutral  # the bundle's tuned neutral text
    assert f"'a face with purple hair' from '{neutral}'" in new["message"] and new["requests"] == []


def test_site_options_are_checked_before_any_work(demo_bundle, tmp_path):
    with pytest.raises(WebSiteError, match="--without takes encoder, text_encoder, mappers"):
        build_site(demo_bundle, tmp_path / "a", without=["text_encoder", "vocab"])
    lean = build_site(demo_bundle, tmp_path / "lean", without=[" mappers", "encoder "])  # as `--without "mappers, encoder"`
    assert lean["mappers"] == {} and lean["encoder"] is None and set(lean["graphs"]) == {"mapping", "styles", "synthesis",
                                                                                          "text_encoder"}
    assert not [rel for rel in lean["files"] if "mapper" in rel or "encoder.onnx" == rel.split("/")[-1]]
    m = json.loads((demo_bundle / "manifest.json").read_text())
    bare = tmp_path / "bare"  # a bundle without fp16 variants, tuned prompts or mappers
    shutil.copytree(demo_bundle, bare)
    for entry in m["graphs"].values():
        entry["variants"].pop("fp16")
    m["edit_settings"] = {}
    (bare / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(WebSiteError, match="no fp16 variant of its mapping graph; export it with --fp16"):
        build_site(bare, tmp_path / "b", weights="fp16")
    with pytest.raises(WebSiteError, match="without its text encoder a site edits only the bundle's tuned prompts"):
        build_site(bare, tmp_path / "c", without=["text_encoder", "mappers"])
    assert build_site(bare, tmp_path / "d")["graphs"]["synthesis"]["variant"] == "fp32"  # auto: what the bundle has
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def serve_and_load(node, folder: Path, cases=()) -> dict:
    server = make_server(folder, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return drive(node, {"url": f"http://127.0.0.1:{server.server_address[1]}/?ep=wasm", "cases": list(cases)})
    finally:
        server.shutdown()
        server.server_close()


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(data))


def test_page_refuses_tampered_files(node, site, tmp_path):
    graph, module, lazy = tmp_path / "graph", tmp_path / "module", tmp_path / "lazy"
    for folder in (graph, module, lazy):
        shutil.copytree(site, folder)
    flip_a_byte(graph / "graphs" / "synthesis.onnx")
    result = serve_and_load(node, graph)
    assert result["page_errors"] == [], result["page_errors"]
    errors = result["load"]["errors"]
    assert errors and "graphs/synthesis.onnx does not match its sha256" in errors[0], result["load"]
    assert "graphs/synthesis.onnx does not match its sha256" in result["load"]["message"]
    assert result["load"]["first_edit_ms"] is None  # nothing was edited with it

    flip_a_byte(lazy / "graphs" / "text_encoder.onnx")  # fetched on first use: checked then, before it runs
    result = serve_and_load(node, lazy, [{"seeds": "1", "method": "global", "prompt": "a face with red hair"}])
    assert result["load"]["errors"] == [] and result["load"]["first_edit_ms"] is not None, result["load"]
    assert "graphs/text_encoder.onnx does not match its sha256" in result["cases"][0]["message"], result["cases"][0]

    (module / "js" / "editmath.js").write_text((module / "js" / "editmath.js").read_text() + "\n// changed\n")
    result = serve_and_load(node, module)  # the browser refuses the module (SRI); the page says so
    assert not result["load"]["started"] and "do not match their hashes" in result["load"]["status"], result["load"]
