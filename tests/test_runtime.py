"""The torch-free runtime: parity with the PyTorch pipeline, caching, thread safety, CLI errors."""
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from export.validate import metrics
from precompute.checkpoints import load_generator
from precompute.clip_model import load_clip
from precompute.mapper import load_mapper
from runtime import edit_math
from runtime.editor import Editor, GlobalEdit, MapperEdit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def editor(bundle):
    return Editor(bundle)


def test_runtime_never_imports_torch(bundle, tmp_path):
    code = f"""
import sys
from runtime.editor import Editor, GlobalEdit, MapperEdit
e = Editor({str(bundle)!r})
w = e.sample([1, 2])
e.render(w); e.edit(w, [GlobalEdit("a face with purple hair"), MapperEdit("purple_hair")])
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "open_clip", "torchvision"))
assert not bad, bad
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_editor_matches_pytorch_pipeline(editor, models):
    gen, clip = load_generator(models["generator"]), load_clip(weights=models["clip"])
    mapper = load_mapper(models["mapper"])
    fs3, std = np.load(models["fs3"]), np.load(models["s_stats"])["std"]
    seeds = [3, 7, 11]
    z = torch.from_numpy(np.stack([np.random.default_rng(s).standard_normal(64, dtype=np.float32) for s in seeds]))
    with torch.no_grad():
        wplus = gen.wplus_from_z(z, 0.7)
        mapped = mapper.edit(wplus)
        dt = edit_math.text_direction(lambda t: clip.encode_text(t).numpy(), "a face with purple hair", "a face")
        ds = edit_math.style_direction(edit_math.relevance(fs3, dt), 0.1, std, gen.layout)
        s = torch.cat(gen.styles(mapped), 1).numpy()
        ref = gen.synthesis_flat(torch.from_numpy(edit_math.apply_edits(s, [ds], [3.0]))).numpy()
    ours_w = editor.sample(seeds)
    np.testing.assert_allclose(ours_w, wplus.numpy(), atol=1e-5)
    ours = editor.synthesize(editor.edit_styles(ours_w, [MapperEdit("purple_hair"), GlobalEdit("a face with purple hair", alpha=3.0, beta=0.1)]))
    assert metrics(ref, ours)["psnr"] >= 60


def test_text_direction_is_cached(editor, monkeypatch):
    calls = []
    real = editor.encode_text
    monkeypatch.setattr(editor, "encode_text", lambda texts: calls.append(len(texts)) or real(texts))
    a = editor.text_direction("a face with glasses", "a face")
    b = editor.text_direction("a face with glasses", "a face")
    assert calls == [158] and a is b  # both texts' 79 templates in one call, then from the cache
    assert abs(np.linalg.norm(a) - 1) < 1e-5


def test_composed_edits_add_up(editor):
    w = editor.sample([5])
    e1, e2 = GlobalEdit("a face with glasses", alpha=2.0, beta=None), GlobalEdit("a smiling face", alpha=-1.5, beta=None)
    s = editor.styles(w)
    both = editor.edit_styles(w, [e1, e2])
    expected = s + 2.0 * editor.global_direction(e1)[0] - 1.5 * editor.global_direction(e2)[0]
    np.testing.assert_allclose(both, expected, atol=1e-5)
    ds, beta, kept = editor.global_direction(e1)
    assert kept >= 10 and np.count_nonzero(ds[editor.layout.conv_index()]) == kept  # ToRGB untouched


def test_close_drops_sessions_and_the_editor_opens_them_again(bundle, monkeypatch):
    ed = Editor(bundle)
    w = ed.sample([2, 9])
    edit = GlobalEdit("a face with glasses", alpha=2.0, beta=None)
    before = ed.edit(w, edit)
    assert {"mapping", "styles", "synthesis", "text_encoder"} <= set(ed._sessions)
    ed.close("text_encoder")
    assert "text_encoder" not in ed._sessions and {"mapping", "styles", "synthesis"} <= set(ed._sessions)
    ed.close()
    assert not ed._sessions
    monkeypatch.setattr(ed, "encode_text", lambda texts: pytest.fail("the cached direction was dropped"))
    np.testing.assert_array_equal(ed.edit(w, edit), before)  # sessions opened again, the direction cached
    assert "text_encoder" not in ed._sessions


def test_thread_safety(bundle):
    shared = Editor(bundle)
    w = shared.sample(list(range(4)))
    prompts = ["a face with purple hair", "a smiling face", "a face with glasses", "a bald face"]
    serial = {p: Editor(bundle).edit(w, GlobalEdit(p, alpha=3.0, beta=None)) for p in prompts}
    errors, mismatches = [], []

    def work(k):
        try:
            for i in range(100):
                p = prompts[(k + i) % 4]
                if not np.array_equal(shared.edit(w, GlobalEdit(p, alpha=3.0, beta=None)), serial[p]):
                    mismatches.append((k, i))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches


def run_edit(bundle, tmp_path, *args):
    out = tmp_path / "out.png"
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "edit", *args, "--bundle", str(bundle), "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    return res, out


def test_cli_edit_writes_grid(bundle, tmp_path):
    from PIL import Image

    res, out = run_edit(bundle, tmp_path, "a face with purple hair", "--seed", "1,2,3", "--sweep", "-4,0,4", "--beta", "auto")
    assert res.returncode == 0, res.stderr
    img = Image.open(out)
    assert img.size[0] > img.size[1] > 3 * 128  # 3 rows, 4 columns of 128 px tiles
    res, out = run_edit(bundle, tmp_path, "purple hair", "--method", "mapper", "--seed", "4")
    assert res.returncode == 0, res.stderr


def test_tuned_settings_fill_what_the_caller_leaves_out(editor):
    # tests/models.EDIT_SETTINGS: "A face with  blue hair" -> neutral 'a face with hair', alpha 2, beta 0.1; "purple hair" strength 0.5
    assert editor.global_edit("a face with BLUE hair") == GlobalEdit("a face with BLUE hair", "a face with hair", 2.0, 0.1)
    assert editor.global_edit("a face with blue hair", alpha=-1.0, beta=None) == \
        GlobalEdit("a face with blue hair", "a face with hair", -1.0, None)  # given settings win, beta None = auto
    assert editor.global_edit("a smiling face") == GlobalEdit("a smiling face")  # no tuned settings: the defaults
    assert editor.mapper_edit("purple hair") == MapperEdit("purple_hair", 0.5)  # by prompt ...
    assert editor.mapper_edit("purple_hair") == MapperEdit("purple_hair", 0.5)  # ... or by name
    assert editor.mapper_edit("purple hair", 2.0) == MapperEdit("purple_hair", 2.0)


def test_cli_edit_uses_the_bundles_tuned_settings(bundle, tmp_path):
    for sub in "tedm":
        (tmp_path / sub).mkdir()
    tuned, tuned_png = run_edit(bundle, tmp_path / "t", "a face with blue hair", "--seed", "1")
    assert tuned.returncode == 0, tuned.stderr
    assert "from 'a face with hair', beta 0.1; alpha 2" in tuned.stdout
    explicit, explicit_png = run_edit(bundle, tmp_path / "e", "a face with blue hair", "--seed", "1", "--neutral",
                                      "a face with hair", "--alpha", "2", "--beta", "0.1")
    assert explicit.returncode == 0 and explicit_png.read_bytes() == tuned_png.read_bytes()
    default, default_png = run_edit(bundle, tmp_path / "d", "a face with blue hair", "--seed", "1", "--neutral", "a face",
                                    "--alpha", "4.1", "--beta", "0.15")
    assert default.returncode == 0 and default_png.read_bytes() != tuned_png.read_bytes()
    mapper, _ = run_edit(bundle, tmp_path / "m", "purple hair", "--method", "mapper", "--seed", "1")
    assert mapper.returncode == 0 and "mapper 'purple_hair'; strength 0.5" in mapper.stdout, mapper.stdout


@pytest.mark.parametrize("settings,message", [
    ([1, 2], "must map prompts to settings"),
    ({"  ": {"alpha": 1}}, "is not a prompt"),
    ({"a face": 3}, "must be an object"),
    ({"a face": {"alpah": 1}}, r"unknown key\(s\) \['alpah'\]; allowed: neutral, alpha, beta, strength"),
    ({"a face": {"neutral": ""}}, "'neutral' must be a non-empty text"),
    ({"a face": {"alpha": "4"}}, "alpha must be a number, got '4'"),
    ({"a face": {"beta": True}}, "beta must be a number"),
    ({"a face": {"alpha": 11}}, r"alpha must be a number in \[-10.0, 10.0\], got 11"),
    ({"a face": {"strength": float("nan")}}, "strength must be a number in"),
    ({"A face": {}, "a  face": {}}, "list 'a  face' twice"),
])
def test_bad_edit_settings_are_refused(settings, message):
    from runtime.edit_settings import check_edit_settings

    with pytest.raises(ValueError, match=message):
        check_edit_settings(settings)


def test_export_rejects_bad_edit_settings_before_any_work(models, tmp_path):
    bad = tmp_path / "settings.json"
    for content, message in (("{not json", "cannot read .* as JSON"), ('{"a face": {"alpha": 50}}', "alpha must be a number in")):
        bad.write_text(content)
        res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", "--generator", str(models["generator"]),
                              "--clip", str(models["clip"]), "--edit-settings", str(bad), "--out", str(tmp_path / "b")],
                             capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 2 and "Traceback" not in res.stderr and "error" in res.stderr.lower(), res.stderr
        assert re.search(message, res.stderr), res.stderr
        assert not (tmp_path / "b").exists()


def _broken(bundle, tmp_path, change):
    work = tmp_path / "broken"
    shutil.copytree(bundle, work)
    change(work)
    return work


@pytest.mark.parametrize("case,args,message", [
    ("empty prompt", ["  "], "is empty"),
    ("long prompt", ["a face with " + "very " * 80 + "long hair"], "too long"),
    ("unknown mapper", ["a face with blue hair", "--method", "mapper"], "no mapper is named or was trained for .* purple_hair"),
    ("alpha", ["a smiling face", "--alpha", "50"], r"alpha must be a number in \[-10.0, 10.0\]"),
    ("beta", ["a smiling face", "--beta", "0.99"], "no style channel reaches beta=0.99.*use beta <="),
    ("beta range", ["a smiling face", "--beta", "-1"], "beta must be"),
    ("seed", ["a smiling face", "--seed", "x"], "non-negative integers or ranges like 0-99"),
    ("mapper name", ["purple hair", "--method", "mapper", "--mapper", "bogus"], "no mapper is named or was trained for 'bogus'; this bundle has: purple_hair"),
    ("mapper without method", ["purple hair", "--mapper", "purple_hair"], "add --method mapper"),
    ("global option with mapper", ["purple hair", "--method", "mapper", "--beta", "0.2"], "settings of --method global"),
    ("sweep value", ["a smiling face", "--sweep", "-4,x,4"], "expected comma-separated numbers, got '-4,x,4'"),
    ("sweep range", ["a smiling face", "--sweep", "0,50"], r"alpha must be a number in \[-10.0, 10.0\], got 50"),
])
def test_cli_rejects_bad_input(bundle, tmp_path, case, args, message):
    res, out = run_edit(bundle, tmp_path, *args)
    assert res.returncode == 2, (case, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "error:" in res.stderr.lower()
    import re
    assert re.search(message, res.stderr), (case, res.stderr)
    assert not out.exists()


@pytest.mark.parametrize("content,message", [
    (np.full((1, 8, 64), np.nan, np.float32), "NaN or infinite"),
    (np.concatenate([np.zeros((1, 8, 64), np.float32), np.full((1, 8, 64), -np.inf, np.float32)]), "NaN or infinite"),
    (np.zeros((2, 5, 64), np.float32), r"W\+ of shape \[N, 8, 64\]"),
])
def test_cli_rejects_bad_latents(bundle, tmp_path, content, message):
    np.save(tmp_path / "w.npy", content)
    res, out = run_edit(bundle, tmp_path, "a smiling face", "--latents", str(tmp_path / "w.npy"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "error:" in res.stderr
    import re
    assert re.search(message, res.stderr), res.stderr
    assert not out.exists()


def test_cli_rejects_damaged_bundles(bundle, tmp_path):
    def flip(work):
        p = work / "graphs" / "synthesis.onnx"
        data = bytearray(p.read_bytes())
        data[100] ^= 1
        p.write_bytes(bytes(data))

    def version(work):
        m = json.loads((work / "manifest.json").read_text())
        (work / "manifest.json").write_text(json.dumps(dict(m, format_version=2)))

    cases = [(flip, "does not match its sha256"), (lambda w: (w / "graphs" / "mapping.onnx").unlink(), "mapping.onnx is missing"),
             (version, "format version 2"), (lambda w: (w / "manifest.json").unlink(), "manifest.json is missing")]
    for i, (change, message) in enumerate(cases):
        work = _broken(bundle, tmp_path / str(i), change)
        res, out = run_edit(work, tmp_path, "a smiling face")
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert not out.exists()


@pytest.mark.parametrize("kind", ["empty", "truncated", "pickled"])
def test_cli_rejects_unreadable_latents_file(bundle, tmp_path, kind):
    path = tmp_path / "w.npy"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        np.save(path, np.zeros((2, 8, 64), np.float32))
        path.write_bytes(path.read_bytes()[:300])
    else:
        np.save(path, np.array([{"w": 1}], dtype=object), allow_pickle=True)
    res, out = run_edit(bundle, tmp_path, "a smiling face", "--latents", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"error: {path} is not a valid .npy of W+ latents [N, n_latent, style_dim]" in res.stderr
    assert not out.exists()


def test_cli_rejects_missing_bundle_folder(tmp_path):
    res, out = run_edit(tmp_path / "no-such-bundle", tmp_path, "a smiling face")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "error: bundle folder" in res.stderr and "does not exist" in res.stderr and "cli.py export" in res.stderr
    assert not out.exists()


def _drop(*keys):
    """Manifest edit that deletes manifest[k0][k1]...; the key "<first>" stands for a dict's first key."""
    def change(m):
        d = m
        for k in keys[:-1]:
            d = d[next(iter(d)) if k == "<first>" else k]
        del d[keys[-1]]
    return change


@pytest.mark.parametrize("change,missing", [
    (_drop("clip"), "lacks its 'clip' section"),
    (_drop("templates"), "lacks its 'templates' section"),
    (_drop("defaults"), "lacks its 'defaults' section"),
    (_drop("tables"), "lacks its 'tables' section"),
    (_drop("defaults", "truncation"), "'defaults' section lacks 'truncation'"),
    (_drop("tables", "latent_avg"), "'tables' section lacks 'latent_avg'"),
    (_drop("generator", "layout"), "'generator' section lacks 'layout'"),
    (_drop("clip", "tokenizer", "file"), "lacks the tokenizer 'file'"),
    (_drop("graphs", "text_encoder"), "lacks the graph.* text_encoder"),
    (_drop("files", "<first>", "size"), "file entry .* lacks 'size' or 'sha256'"),
    (_drop("files", "<first>", "sha256"), "file entry .* lacks 'size' or 'sha256'"),
    (lambda m: m["edit_settings"]["purple hair"].update(strength=9), r"'edit_settings' section is invalid .*strength must be"),
])
def test_incomplete_manifest_is_a_bundle_error(bundle, tmp_path, change, missing):
    from runtime.bundle import BundleError, read_manifest

    def edit_manifest(work):
        m = json.loads((work / "manifest.json").read_text())
        change(m)
        (work / "manifest.json").write_text(json.dumps(m))

    work = _broken(bundle, tmp_path, edit_manifest)
    assert issubclass(BundleError, ValueError)
    for load in (read_manifest, Editor):
        with pytest.raises(BundleError, match=f"is invalid: .*{missing}.*re-export the bundle with `python cli.py export`"):
            load(work)


def test_cached_arrays_are_read_only(bundle):
    ed = Editor(bundle)
    e = GlobalEdit("a face with a beard", alpha=3.0, beta=None)
    dt, (ds, beta, kept) = ed.text_direction(e.target, e.neutral), ed.global_direction(e)
    for cached in (dt, ds, ed.latent_avg, ed._memo(("table", "fs3"), lambda: None)):
        assert not cached.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            cached[..., 0] = 1.0
        with pytest.raises(ValueError, match="read-only"):
            cached += 1.0
    assert ed.text_direction(e.target, e.neutral) is dt and ed.global_direction(e)[0] is ds
    w = ed.sample([2, 9])
    first = ed.edit(w, e)
    np.testing.assert_array_equal(ed.edit(w, e), first)  # edits never write into the cached Δs
    np.testing.assert_array_equal(Editor(bundle).edit(w, e), first)
    assert ed.edit_styles(w, [e]).flags.writeable  # results are the caller's own arrays


def test_cache_entries_are_distinct_and_match_fresh_editor(bundle):
    ed = Editor(bundle)
    base = GlobalEdit("a face with red lips", beta=0.05)
    variants = [base, GlobalEdit(base.target, "a person", beta=0.05), GlobalEdit(base.target, beta=0.1),
                GlobalEdit(base.target, beta=None, min_channels=10), GlobalEdit(base.target, beta=None, min_channels=40)]
    results = [ed.global_direction(v) for v in variants]
    assert len({k for k in ed._cache if k[0] == "ds"}) == len(variants)
    assert len({k for k in ed._cache if k[0] == "dt"}) == 2  # one per (target, neutral)
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            assert not np.array_equal(results[i][0], results[j][0]), (variants[i], variants[j])
    assert results[3][2] < results[4][2]  # auto-beta keeps at least min_channels
    fresh = Editor(bundle)
    for v, (ds, beta, kept) in zip(variants, results):
        ds2, beta2, kept2 = fresh._direction(v)  # uncached computation
        np.testing.assert_array_equal(ds, ds2)
        assert (beta, kept) == (beta2, kept2)


def test_forget_directions_recomputes(bundle, monkeypatch):
    ed = Editor(bundle)
    calls = []
    real = ed.encode_text
    monkeypatch.setattr(ed, "encode_text", lambda texts: calls.append(len(texts)) or real(texts))
    e = GlobalEdit("a bald face", beta=None)
    dt, ds = ed.text_direction(e.target), ed.global_direction(e)[0]
    assert calls == [158]
    fs3 = ed._cache[("table", "fs3")]
    ed.forget_directions()
    dt2, ds2 = ed.text_direction(e.target), ed.global_direction(e)[0]
    assert calls == [158, 158] and dt2 is not dt and ds2 is not ds
    np.testing.assert_array_equal(dt2, dt)
    np.testing.assert_array_equal(ds2, ds)
    assert ed._cache[("table", "fs3")] is fs3  # loaded tables stay


def test_device_without_provider_is_a_clear_error(bundle, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    for device, provider in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        with pytest.raises(ValueError, match=f"device '{device}' needs {provider}, which this onnxruntime lacks "
                                             r"\(available: CPUExecutionProvider\); install onnxruntime-gpu or use device='cpu'"):
            Editor(bundle, device=device)  # raised by the constructor, before any session is opened


@pytest.mark.parametrize("kwargs,message", [
    ({"device": "gpu"}, r"device must be one of 'cpu', 'cuda', 'openvino', 'tensorrt', got 'gpu'"),
    ({"device": "CPU"}, "device must be one of"),
    ({"precision": "fp8"}, r"precision must be one of 'bf16', 'fp16', 'fp32', 'int8', got 'fp8'"),
    ({"precision": "INT8"}, "precision must be one of"),
    ({"optimization": "max"}, "optimization must be one of"),
])
def test_bad_editor_options_are_rejected(bundle, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Editor(bundle, **kwargs)


def test_session_options_are_applied(bundle):
    import onnxruntime

    ed = Editor(bundle, threads=1, optimization="basic", precision="fp16")
    assert ed.providers == ["CPUExecutionProvider"] and ed.options.intra_op_num_threads == 1
    assert ed.options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert ed.session("mapping")._model_path.endswith("mapping.fp16.onnx")


@pytest.mark.parametrize("kwargs,message", [
    ({"device": "openvino", "precision": "int8"}, "precision 'int8' does not run on device 'openvino'"),
    ({"device": "cpu", "precision": "bf16"}, "bf16 needs device='openvino'"),
])
def test_precisions_a_device_cannot_run_are_rejected(bundle, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Editor(bundle, **kwargs)


def test_openvino_device_edits_like_the_cpu_one(bundle):
    """device='openvino' opens the synthesis graphs' openvino variant (transposed conv kept), the fp32 graphs
    elsewhere; its edits equal onnxruntime's in f32 and stay close in bf16."""
    pytest.importorskip("openvino")
    cpu, ov = Editor(bundle, threads=1), Editor(bundle, device="openvino", threads=1)
    bf16 = Editor(bundle, device="openvino", precision="bf16", threads=1)
    w = cpu.sample([1, 2])
    edit = GlobalEdit("a face with purple hair")
    ref = cpu.edit(w, edit)
    assert type(ov.session("synthesis")).__name__ == "OpenVinoSession"
    opened = {g: bf16.session(g).precision for g in ("mapping", "styles", "synthesis", "text_encoder", "mapper_purple_hair")}
    assert opened == {"mapping": "fp32", "styles": "fp32", "synthesis": "bf16", "text_encoder": "bf16",
                      "mapper_purple_hair": "fp32"}  # bf16 only where it pays (openvino.BF16_GRAPHS)
    assert np.abs(ov.edit(w, edit).astype(int) - ref).max() <= 1  # uint8 rounding of 1e-5 differences
    diff = np.abs(bf16.edit(w, edit).astype(int) - ref)
    assert 0 < diff.mean() < 3
    texts = ["a face with purple hair", "a face"]
    a, b = cpu.encode_text(texts), bf16.encode_text(texts)
    assert (a * b).sum(-1).min() >= 0.999


def test_int8_precision_picks_the_int8_graphs_and_falls_back_to_fp32(bundle):
    """precision='int8' opens the int8 text encoder and mapper, fp32 where a graph has no int8 variant;
    its edits stay close to fp32's (the validated error, tests/test_export.py)."""
    fp32, int8 = Editor(bundle, threads=1), Editor(bundle, threads=1, precision="int8")
    assert int8.session("text_encoder")._model_path.endswith("text_encoder.int8.onnx")
    assert int8.session("mapper_purple_hair")._model_path.endswith("mapper_purple_hair.int8.onnx")
    assert int8.session("synthesis")._model_path.endswith("synthesis.onnx")  # no int8 synthesis: fp32
    texts = ["a face with purple hair", "a face"]
    a, b = fp32.encode_text(texts), int8.encode_text(texts)
    assert not np.array_equal(a, b) and (a * b).sum(-1).min() >= 0.999
    w = fp32.sample([1, 2])
    edit = MapperEdit("purple_hair")
    diff = fp32.edit(w, edit).astype(int) - int8.edit(w, edit)
    assert 0 < np.abs(diff).mean() < 2  # uint8 images: the int8 mapper moves pixels by a fraction of a level


def test_bundle_of_an_older_toolkit_with_synthesis_wplus_still_edits(bundle, tmp_path):
    """Bundles exported before W+ rendered as styles -> synthesis carry a `synthesis_wplus` graph: the runtime
    reads them and leaves it unused; `validate` refuses them before any work, asking for a re-export."""
    import hashlib

    from export.validate import Validator
    from runtime.bundle import BundleError

    work = tmp_path / "old"
    shutil.copytree(bundle, work)
    m = json.loads((work / "manifest.json").read_text())
    data = (work / "graphs" / "synthesis.onnx").read_bytes() + b"\0"  # not a graph: opening it would fail
    (work / "graphs" / "synthesis_wplus.onnx").write_bytes(data)
    m["files"]["graphs/synthesis_wplus.onnx"] = {"role": "graph:synthesis_wplus", "size": len(data),
                                                 "sha256": hashlib.sha256(data).hexdigest()}
    m["graphs"]["synthesis_wplus"] = {**m["graphs"]["synthesis"], "inputs": m["graphs"]["styles"]["inputs"],
                                      "variants": {"fp32": {"file": "graphs/synthesis_wplus.onnx", "format": "onnx",
                                                            "precision": "fp32"}}}
    (work / "manifest.json").write_text(json.dumps(m))
    old, new = Editor(work), Editor(bundle)
    w = new.sample([1, 2])
    assert np.array_equal(old.render(w), new.render(w))
    assert np.array_equal(old.edit(w, MapperEdit("purple_hair")), new.edit(w, MapperEdit("purple_hair")))
    assert "synthesis_wplus" not in old._sessions
    with pytest.raises(BundleError, match=r"synthesis_wplus, which this toolkit no longer exports.*re-export"):
        Validator(work, progress=False)
