"""Export + validate round trip on small random models; bundle integrity; atomicity; TensorRT absence."""
import importlib.util
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export import bundle as bundle_mod
from export.bundle import ExportOptions, Sources, export_bundle
from export.converters import ExportError
from export.validate import TOLERANCES, Validator, format_table
from precompute.clip_model import load_clip
from runtime.bundle import BundleError, read_manifest, text_tokens, verify_bundle
from runtime.engines import tensorrt_version
from tests.models import sources

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def validated(bundle):
    checks = Validator(bundle, batches=(1, 4), progress=False).run()
    return bundle, checks


def test_manifest_describes_everything(bundle):
    m = verify_bundle(bundle)
    assert set(m["graphs"]) == {"mapping", "styles", "synthesis", "mapper_purple_hair",
                                "text_encoder", "image_encoder", "encoder"}
    assert m["graphs"]["synthesis"]["inputs"] == [{"name": "styles", "shape": ["batch", 256], "dtype": "float32"}]
    assert m["graphs"]["synthesis"]["outputs"][0]["shape"] == ["batch", 3, 32, 32]
    assert m["graphs"]["text_encoder"]["inputs"][0]["shape"] == ["batch", "length"]  # padding can be cut
    assert set(m["graphs"]["styles"]["variants"]) == {"fp32", "fp16", "torchscript"}
    assert m["generator"]["size"] == 32 and len(m["generator"]["layout"]) == 11
    assert m["clip"]["context_length"] == 77 and m["clip"]["embed_dim"] == 32
    assert len(m["templates"]) == 79 and m["defaults"]["alpha"] == 4.1
    assert m["mappers"]["purple_hair"]["prompt"] == "purple hair"
    assert m["global_directions"]["fs3_rows"] == 168
    assert m["encoder"]["input_size"] == 64 and m["encoder"]["resize"] == "bilinear"
    assert m["encoder"]["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "range": [-1.0, 1.0]}
    assert m["graphs"]["encoder"]["inputs"] == [{"name": "image", "shape": ["batch", 3, 64, 64], "dtype": "float32"}]
    assert m["graphs"]["encoder"]["outputs"][0]["shape"] == ["batch", 8, 64]
    assert m["producer"]["opset"] >= 18 and m["producer"]["torch"]
    for rel, entry in m["files"].items():
        assert (bundle / rel).stat().st_size == entry["size"] and len(entry["sha256"]) == 64
    assert np.load(bundle / m["tables"]["fs3"], allow_pickle=False).shape == (168, 32)


def test_fp16_variants_store_weights_in_fp16_and_compute_in_fp32(validated):
    """`--fp16`: each graph's large weights as float16 initializers, cast to float32 inside the graph (half the
    bytes a web page downloads), every activation float32; the runtime's precision='fp16' opens them, and
    validation checks whole edits through them too."""
    import onnx
    from onnx import TensorProto

    from runtime.editor import Editor

    bundle, checks = validated
    m = read_manifest(bundle)
    for name in ("synthesis", "text_encoder", "styles"):
        variants = m["graphs"][name]["variants"]
        assert variants["fp16"]["weights"] == "float16" and variants["fp16"]["compute"] == "float32"
        fp32, fp16 = (bundle / variants[v]["file"] for v in ("fp32", "fp16"))
        assert fp16.stat().st_size < fp32.stat().st_size, name
        model = onnx.load(str(fp16))
        halves = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16}
        count = lambda kind: sum(np.prod(t.dims) for t in model.graph.initializer if t.data_type == kind)  # noqa: E731
        assert count(TensorProto.FLOAT16) > 0.9 * (count(TensorProto.FLOAT16) + count(TensorProto.FLOAT)), name
        assert halves and all(n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT
                              for n in model.graph.node if set(n.input) & halves), name
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        assert not [v.name for v in inferred if v.type.tensor_type.elem_type == TensorProto.FLOAT16], name
    editor = Editor(bundle, precision="fp16")
    assert editor.session("synthesis")._model_path.endswith("synthesis.fp16.onnx")
    edits = {c.graph: c for c in checks if c.variant == "fp16" and c.graph.startswith("edit:")}
    assert {"edit:global_direction", "edit:mapper_purple_hair"} <= set(edits) and all(c.passed for c in edits.values())


def test_validation_passes_and_is_recorded(validated):
    bundle, checks = validated
    assert all(c.passed for c in checks), format_table(checks)
    graphs = {(c.graph, c.variant) for c in checks}
    assert ("synthesis", "fp16") in graphs and ("text_encoder", "torchscript") in graphs
    assert {("text_encoder", "int8"), ("mapper_purple_hair", "int8"), ("synthesis", "openvino")} <= graphs
    assert ("edit:global_direction", "int8") in graphs and ("edit:mapper_purple_hair", "int8") in graphs
    if importlib.util.find_spec("openvino"):  # every graph as Editor(device="openvino") runs it, f32 and bf16
        assert {(g, v) for g in ("mapping", "synthesis", "text_encoder") for v in ("openvino", "openvino bf16")} <= graphs
    assert {"edit:global_direction", "edit:mapper_purple_hair"} <= {c.graph for c in checks}
    by = {(c.graph, c.variant, c.batch): c for c in checks}
    assert by[("synthesis", "fp32", 4)].value >= 60 and by[("text_encoder", "fp32", 1)].value >= 0.99999
    assert by[("mapper_purple_hair", "fp32", 4)].value <= 1e-4
    m = read_manifest(bundle)
    assert m["validation"]["passed"] is True and len(m["validation"]["checks"]) == len(checks)
    fp16 = m["graphs"]["synthesis"]["variants"]["fp16"]["error"]
    assert fp16["passed"] and 35 <= fp16["psnr"] < 200 and fp16["max_abs"] > 0  # fp16 really differs
    assert (bundle / "report" / "index.html").read_text().count("<tr") == len({(c.graph, c.variant) for c in checks}) + 1
    assert (bundle / "report" / "synthesis.fp32.png").is_file()


def test_validation_failure_is_a_failure(validated, monkeypatch):
    bundle, _ = validated
    work = bundle.parent / "strict"
    shutil.copytree(bundle, work)
    monkeypatch.setitem(TOLERANCES, "fp32", dict(TOLERANCES["fp32"], image=("psnr", 1e9, True)))
    checks = Validator(work, batches=(2,), progress=False).run(report=False)
    failed = {c.graph for c in checks if not c.passed}
    assert {"synthesis", "edit:global_direction", "edit:mapper_purple_hair"} <= failed and "mapping" not in failed
    assert read_manifest(work)["validation"]["passed"] is False


def test_validation_opens_no_session_beside_a_large_pytorch_model(validated, monkeypatch):
    """Issue 26 (memory): at FFHQ size onnxruntime takes 3 GB while it optimizes the 1 GB e4e graph, so
    validate computes a family's PyTorch references first and releases e4e and CLIP before any of their
    graphs' sessions is created (the edit checks too); the same checks come out."""
    import export.validate as validate_mod

    bundle, checks = validated
    work = bundle.parent / "order"
    shutil.copytree(bundle, work)
    validator = Validator(work, batches=(1, 4), progress=False)
    seen, make, edits = [], validate_mod._onnx_runner, validator.edit_checks
    monkeypatch.setattr(validate_mod, "_onnx_runner",
                        lambda path: seen.append((Path(path).name, set(validator.models.loaded))) or make(path))
    monkeypatch.setattr(validator, "edit_checks", lambda: seen.append(("edits", set())) or edits())
    again = validator.run(report=False)
    graph_phase = seen[:seen.index(("edits", set()))]
    assert {n for n, _ in graph_phase} >= {"encoder.onnx", "encoder.fp16.onnx", "text_encoder.onnx"}
    assert not [(n, got) for n, got in graph_phase if got & {"encoder", "clip"} and n.startswith(("encoder", "text_"))]
    # The edit checks keep CLIP (its tokenizer) beside the small text encoder, never e4e beside the encoder.
    assert "encoder.onnx" in {n for n, _ in seen[len(graph_phase):]}
    assert not [(n, got) for n, got in seen if "encoder" in got and n.startswith("encoder")]
    assert [(c.graph, c.variant, c.batch, c.value) for c in again] == [(c.graph, c.variant, c.batch, c.value) for c in checks]


# VmHWM, not ru_maxrss: a child's ru_maxrss starts at the RSS of the (pytest) process it was forked from.
E4E_RSS_SCRIPT = """
import sys
from precompute.encoder import load_encoder
def status(key): return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
before = status("VmRSS")
encoder = load_encoder(sys.argv[1])
weights = sum(t.numel() * t.element_size() for t in encoder.state_dict().values())
print(before, status("VmHWM"), weights)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_e4e_load_peak_rss_is_one_copy_of_its_weights(tmp_path):
    """Peak RSS bound on a scaled e4e (384 MB of weights, FFHQ's is 1 GB): loading an official checkpoint holds
    the checkpoint's tensors and not a second copy (the module is built on the meta device): measured 1.45x the
    weights, 2.02x with the randomly initialised module it replaced."""
    from tests import e4e_reference

    arch = dict(widths=(16, 24, 32, 48), style_dim=512, n_styles=12, input_size=128, reduction=8)
    e4e_reference.official_checkpoint(tmp_path / "e4e.pt", {}, arch)
    out = subprocess.run([sys.executable, "-c", E4E_RSS_SCRIPT, str(tmp_path / "e4e.pt")], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    before, peak, weights = map(int, out)
    assert weights > 300e6
    assert peak - before < 1.7 * weights, (peak - before) / weights


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_dynamic_batch(bundle, batch):
    m = read_manifest(bundle)
    rng = np.random.default_rng(batch)
    for name, graph in m["graphs"].items():
        sess = ort.InferenceSession(str(bundle / graph["variants"]["fp32"]["file"]), providers=["CPUExecutionProvider"])
        inp = graph["inputs"][0]
        shape = [batch, *(9 if d == "length" else d for d in inp["shape"][1:])]
        x = rng.integers(0, 49407, shape).astype(inp["dtype"]) if inp["dtype"] == "int64" else rng.standard_normal(shape).astype("float32")
        out = sess.run(None, {inp["name"]: x})[0]
        assert out.shape == (batch, *graph["outputs"][0]["shape"][1:]), name


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load: TorchScript is a bundle variant
def test_text_encoder_takes_any_token_length(bundle, models):
    """Every text graph variant on ids with the padding cut gives open_clip's full-context embedding."""
    clip = load_clip(weights=models["clip"])
    tokens = clip.tokenize(["a face", "a face with purple hair, glasses and a big smile"])
    with torch.no_grad():
        ref = clip.model.encode_text(tokens, normalize=True).numpy()
    m = read_manifest(bundle)
    cut = text_tokens(m, tokens.numpy())
    assert 5 < cut.shape[1] < 20
    variants = m["graphs"]["text_encoder"]["variants"]
    for variant, atol in (("fp32", 1e-5), ("fp16", 1e-2)):
        sess = ort.InferenceSession(str(bundle / variants[variant]["file"]), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"tokens": cut})[0], ref, atol=atol, err_msg=variant)
    traced = torch.jit.load(str(bundle / variants["torchscript"]["file"]))
    with torch.no_grad():
        np.testing.assert_allclose(traced(torch.from_numpy(cut)).numpy(), ref, atol=1e-5)


def _copy(bundle, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(bundle, work)
    return work


def test_flipped_byte_is_detected(bundle, tmp_path):
    work = _copy(bundle, tmp_path)
    path = work / "graphs" / "synthesis.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"graphs/synthesis.onnx does not match its sha256"):
        verify_bundle(work)


def test_truncated_and_missing_files_are_refused(bundle, tmp_path):
    work = _copy(bundle, tmp_path)
    table = work / "tables" / "fs3.npy"
    table.write_bytes(table.read_bytes()[:-10])
    with pytest.raises(BundleError, match=r"tables/fs3.npy has \d+ bytes, the manifest says"):
        verify_bundle(work)
    table.unlink()
    with pytest.raises(BundleError, match="tables/fs3.npy is missing"):
        verify_bundle(work)
    (work / "manifest.json").write_text(json.dumps({**read_json(bundle / "manifest.json"), "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99"):
        verify_bundle(work)


def read_json(path):
    return json.loads(path.read_text())


def test_interrupted_export_leaves_existing_bundle_intact(bundle, models, tmp_path, monkeypatch):
    work = _copy(bundle, tmp_path)
    before = {p.relative_to(work): p.read_bytes() for p in work.rglob("*") if p.is_file()}
    calls = []

    def fail_on_third(spec, *args, **kwargs):
        calls.append(spec.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-export
        return real(spec, *args, **kwargs)

    real = bundle_mod.export_onnx
    monkeypatch.setattr(bundle_mod, "export_onnx", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(work, sources(models, mappers=False), progress=False)
    after = {p.relative_to(work): p.read_bytes() for p in work.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary folder left behind


def test_tensorrt_request_without_tensorrt(models, tmp_path):
    if tensorrt_version() is not None:
        pytest.skip("TensorRT is installed here; this checks the machines without it")
    with pytest.raises(ExportError, match="`tensorrt` is not installed"):
        export_bundle(tmp_path / "b", sources(models), ExportOptions(tensorrt=True), progress=False)
    assert not (tmp_path / "b").exists()
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", "--generator", str(models["generator"]),
                          "--clip", str(models["clip"]), "--tensorrt", "--out", str(tmp_path / "c")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "tensorrt" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "c").exists()


def test_bad_tables_are_refused(models, tmp_path):
    np.save(tmp_path / "fs3.npy", np.zeros((100, 32), np.float32))
    src = Sources(models["generator"], models["clip"], None, [], tmp_path / "fs3.npy", models["s_stats"])
    with pytest.raises(ValueError, match=r"shape \(100, 32\).*conv-layer boundary"):
        export_bundle(tmp_path / "b", src, progress=False)
    src = Sources(models["generator"], models["clip"], None, [], models["fs3"], None)
    with pytest.raises(ValueError, match="both --fs3 and --s-stats"):
        export_bundle(tmp_path / "b", src, progress=False)
    assert not (tmp_path / "b").exists()


def test_demo_export_without_demo_models_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="generator.json missing.*pass --generator and --clip"):
        bundle_mod.demo_sources(tmp_path)


def test_tensorrt_engine_environment_mismatch_is_refused():
    from runtime.engines import check_engine_environment

    built = {"gpu": "NVIDIA H200", "compute_capability": "9.0", "tensorrt": "10.13.0", "driver": "580"}
    check_engine_environment(built, dict(built, driver="590"))  # a newer driver is fine
    with pytest.raises(BundleError, match=r"GPU architecture \(compute capability\) 9.0 .* this machine has 8.6"):
        check_engine_environment(built, dict(built, compute_capability="8.6", gpu="NVIDIA A10"))
    with pytest.raises(BundleError, match="TensorRT version 10.13.0"):
        check_engine_environment(built, dict(built, tensorrt="11.4.0"))
    with pytest.raises(BundleError, match="need an NVIDIA GPU"):
        check_engine_environment(built, None)


@pytest.fixture
def named_tiny_clip(tmp_path):
    """A tiny CLIP registered in open_clip under a name and its -quickgelu twin (as ViT-B-32 is), and one set of
    weights in OpenAI's layout saved two ways: a plain state dict (cannot tell its activation) and with
    OpenAI's extra keys (can)."""
    import open_clip

    from tests.test_clip import TINY, openai_model

    for name, quick in (("tiny-act-test", False), ("tiny-act-test-quickgelu", True)):
        (tmp_path / f"{name}.json").write_text(json.dumps(dict(TINY, quick_gelu=True) if quick else TINY))
        open_clip.add_model_config(tmp_path / f"{name}.json")
    state = {k: v.half() for k, v in openai_model().state_dict().items()}
    torch.save(state, tmp_path / "plain.pt")
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    torch.save(state, tmp_path / "openai.pt")
    return tmp_path


def _sigmoids(path) -> int:
    import onnx

    return sum(n.op_type == "Sigmoid" for n in onnx.load(str(path)).graph.node)


def test_openai_files_are_detected_whatever_the_name(named_tiny_clip):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the file tells
        clip = load_clip("tiny-act-test", named_tiny_clip / "openai.pt")
    assert clip.activation == "QuickGELU" and "OpenAI" in clip.activation_source


@pytest.mark.parametrize("weights, name, activation, warns", [
    ("plain.pt", "tiny-act-test", "GELU", True),           # open_clip's naming, said aloud
    ("plain.pt", "tiny-act-test-quickgelu", "QuickGELU", False),
])
def test_clip_activation_is_recorded_and_exported(models, named_tiny_clip, tmp_path, weights, name, activation, warns):
    from runtime.checks import ToolWarning

    src = sources(models, mappers=False, encoder=False)
    src = Sources(src.generator, named_tiny_clip / weights, name, [], src.fs3, src.s_stats)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = export_bundle(tmp_path / "b", src, ExportOptions(), progress=False)
    said = [str(w.message) for w in caught if issubclass(w.category, ToolWarning) and "activation" in str(w.message)]
    assert bool(said) == warns, said
    if warns:
        assert f"--clip-name {name}-quickgelu" in said[0]
    assert manifest["clip"]["activation"] == activation
    assert manifest["clip"]["activation_source"]
    # QuickGELU is x * sigmoid(1.702 x): one Sigmoid per transformer block of the text tower; GELU has none
    layers = 2
    text_graph = tmp_path / "b" / manifest["graphs"]["text_encoder"]["variants"]["fp32"]["file"]
    assert _sigmoids(text_graph) == (layers if activation == "QuickGELU" else 0)
