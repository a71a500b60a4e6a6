"""`cli.py bench` machinery on the small random bundle: every row is produced, FLOPs match a hand count; the
real-photo rows (align, whole photo) exist, or are skipped with a note where align cannot run.

No timing is asserted anywhere (DESIGN §9: a benchmark is a command, never a timed unit test).
"""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from export.bench import (TEXT_BATCH, UNCUT, Bench, BenchResult, Hardware, bench_bundle, format_result, graph_cost,
                          interleaved, table_rows, write_markdown)
from export.bundle import load_sources
from export.presets import reusable
from runtime.bundle import read_manifest
from tests.models import sources

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result(bundle, models) -> BenchResult:
    threads = torch.get_num_threads()
    res = bench_bundle(bundle, load_sources(sources(models)), batches=(1, 2), repeats=2, warmup=1, threads=1,
                       max_seconds=None, hardware_sizes=(128, 4), fs3_channels=1, profile=True, openvino=False,
                       align_sides=(512, 1024))  # 1024, not 2048: the same path at a quarter of the detector's time
    assert torch.get_num_threads() == threads  # restored
    return res


def test_every_graph_variant_and_batch_has_a_row(result, bundle):
    manifest = read_manifest(bundle)
    graph_rows = {(r.name, r.batch, r.variant): r for r in result.rows if r.section == "graph"}
    rewritten = {"synthesis", "text_encoder"}  # also timed unrewritten, and in PyTorch eager
    for graph, entry in manifest["graphs"].items():
        batches = {1, 2} | ({TEXT_BATCH} if graph == "text_encoder" else set())
        onnxruntime_variants = [v for v in entry["variants"] if v != "openvino"]  # timed by OpenVINO only
        for variant in [*onnxruntime_variants, *(("fp32 plain", "torch rewrite") if graph in rewritten else ())]:
            for b in batches:
                row = graph_rows.pop((graph, b, variant))
                assert row.runtime.median > 0 and row.torch.median > 0 and row.runtime.n == 2
                assert row.runtime.p10 <= row.runtime.median <= row.runtime.p90
                assert math.isfinite(row.ratio) and row.ratio > 0 and row.per_s > 0
                assert row.cost.flops > 0 and row.cost.bytes > 0 and row.floor_s > 0 and row.vs_floor > 0
    for graph in rewritten:  # the same FLOPs in both forms, but for the phases' extra row and column (7% at 4-32 px)
        for b in (1, 2):
            plain, fp32 = result_row(result, graph, b, "fp32 plain"), result_row(result, graph, b, "fp32")
            assert plain.cost.flops == pytest.approx(fp32.cost.flops, rel=0.1)
    int8 = result_row(result, "text_encoder", 2, "int8")
    assert int8.cost.flops == result_row(result, "text_encoder", 2, "fp32").cost.flops
    assert int8.cost.weight_bytes < 0.6 * result_row(result, "text_encoder", 2, "fp32").cost.weight_bytes
    # The text encoder also ran on uncut ids (77 per prompt) in the same loop: more FLOPs, more time.
    for b in (1, 2, TEXT_BATCH):
        uncut, cut = graph_rows.pop(("text_encoder", b, UNCUT)), result_row(result, "text_encoder", b, "fp32")
        assert uncut.cost.flops > 3 * cut.cost.flops and uncut.runtime.median > 0
    assert not graph_rows  # nothing beyond the bundle's graphs


def result_row(result, name, batch, variant):
    (row,) = [r for r in result.rows if (r.name, r.batch, r.variant) == (name, batch, variant)]
    return row


def test_edits_fs3_memory_hardware_and_report(result, tmp_path):
    edits = {(r.name, r.batch): r for r in result.rows if r.section == "edit"}
    assert set(edits) == {(name, b) for b in (1, 2) for name in
                          ("GD cached text", f"GD uncached text ({TEXT_BATCH} prompts)", "mapper purple_hair",
                           "invert (uint8 pictures -> W+)")}
    for row in edits.values():
        assert row.runtime.median > 0 and row.ratio > 0 and row.floor_s > 0
    assert math.isfinite(edits[("GD cached text", 1)].extra["beyond_synthesis_pct"])
    (fs3,) = [r for r in result.rows if r.section == "precompute"]
    assert fs3.extra["channels_per_s"] > 0
    assert {m.family for m in result.memory} == {"generator", "mapper", "clip", "encoder"}
    assert all(m.runtime_weights_mb > 0 and m.torch_weights_mb > 0 and m.runtime_peak_mb >= 0 for m in result.memory)
    assert result.hardware.matmul_gflops > 0 and result.hardware.bandwidth_gbs > 0 and len(result.hardware.samples) == 2
    assert result.machine["threads"] == 1 and result.machine["cpu"]
    assert {(g, b) for g, b, _ in result.profiles} >= {("synthesis", 1), ("text_encoder", TEXT_BATCH)}
    text = format_result(result)
    assert "synthesis" in text and "GD cached text" in text and "Conv" in text

    out = tmp_path / "docs" / "benchmarks.md"
    out.parent.mkdir()
    out.write_text("# Benchmarks\n\nhand-written notes\n")
    for _ in range(2):  # the second run replaces its block and keeps the notes
        md, chart = write_markdown(out, [result], "python cli.py bench", "demo")
    text = md.read_text()
    assert text.count("<!-- bench:demo:begin -->") == 1 and "hand-written notes" in text
    assert "| synthesis | 1 | fp32 |" in text and chart.name in text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


ALIGN_ROWS = ("align 512 px -> 256 px crop", "align 1024 px -> 256 px crop")
PHOTO_ROW = "whole photo 512 px: align + invert + GD edit + paste-back"  # the test generator is 32 px: a 512 px photo


def test_photo_rows(result, bundle):
    photo = {r.name: r for r in result.rows if r.section == "photo"}
    assert list(photo) == [*ALIGN_ROWS, PHOTO_ROW]
    for name in ALIGN_ROWS:  # no PyTorch side, no floor: dlib and PIL, not a graph
        row = photo[name]
        assert row.batch == 1 and row.torch is None and row.cost is None and math.isnan(row.ratio)
        assert row.runtime.n == 2 and row.runtime.median > 0 and row.extra["faces"] >= 1
        assert all(row.extra[k].n == 2 and row.extra[k].median > 0 for k in ("detect", "landmarks", "warp"))
    first_load = photo[ALIGN_ROWS[0]].extra["load_s"]  # None when an earlier test of this process loaded dlib's models
    assert first_load is None or first_load > 0
    assert "load_s" not in photo[ALIGN_ROWS[1]].extra
    whole = photo[PHOTO_ROW]
    assert whole.runtime.median > 0 and whole.torch.median > 0 and whole.ratio > 0 and whole.floor_s > 0
    # The encoder's input size; the bundle's prompt tuned for a global direction (tests/models.EDIT_SETTINGS).
    assert whole.extra == {"crop": read_manifest(bundle)["encoder"]["input_size"], "prompt": "a face with blue hair"}
    # Its graphs: the encoder (the invert row's) and styles + synthesis (the cached GD edit's), at batch 1.
    (invert,) = [r for r in result.rows if (r.name, r.batch) == ("invert (uint8 pictures -> W+)", 1)]
    (gd,) = [r for r in result.rows if (r.name, r.batch) == ("GD cached text", 1)]
    assert whole.cost.flops == invert.cost.flops + gd.cost.flops
    cells = {r[0]: r for r in table_rows(result)}
    align_cells = cells[f"photo: {ALIGN_ROWS[0]}"]
    assert align_cells[4] == "-" and align_cells[5] == "-" and "no PyTorch counterpart" in align_cells[-1]
    assert "detect " in align_cells[-1] and "landmarks " in align_cells[-1] and "warp " in align_cells[-1]
    assert cells[f"photo: {PHOTO_ROW}"][5] != "-"  # a torch/rt ratio
    assert not result.notes


@pytest.mark.parametrize("module", ["dlib", "skimage.data"])
def test_photo_rows_skipped_when_align_cannot_run(module, bundle, models, monkeypatch):
    """Without dlib (the [align] extra) or scikit-image (the portrait), no photo row and one line saying why."""
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    res = Bench(bundle, load_sources(sources(models)), batches=(1,), repeats=1, warmup=0, threads=1, graphs=[],
                edits=False, fs3_channels=0, hardware_sizes=(128, 4), openvino=False).run()
    assert res.rows == []
    (note,) = res.notes
    assert note.startswith("photo rows skipped: ") and "\n" not in note
    assert ("dlib" if module == "dlib" else "scikit-image") in note and "pip install" in note
    assert note in format_result(res).splitlines()


def _tiny_model() -> onnx.ModelProto:
    """x [N,3,8,8] -> Conv 3x3 (4 out, pad 1) -> ConvTranspose 2x2 stride 2 (4 -> 2, groups 2) -> flatten
    -> MatMul [512, 5] -> Gemm [5 -> 6] -> + Gather(table [100, 6], ids [N]) -> y [N, 6]."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
            [("w_conv", (4, 3, 3, 3)), ("w_tconv", (4, 1, 2, 2)), ("w_mm", (512, 5)), ("w_gemm", (6, 5)),
             ("b_gemm", (6,)), ("table", (100, 6))]]
    init.append(numpy_helper.from_array(np.array([-1, 512], dtype=np.int64), "shape"))
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("ConvTranspose", ["c", "w_tconv"], ["t"], strides=[2, 2], group=2),
        helper.make_node("Reshape", ["t", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w_mm"], ["m"]),
        helper.make_node("Gemm", ["m", "w_gemm", "b_gemm"], ["g"], transB=1),
        helper.make_node("Gather", ["table", "ids"], ["e"]),
        helper.make_node("Add", ["g", "e"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_floor_is_the_larger_of_compute_and_memory_time(tmp_path):
    """floor = max(FLOPs / matmul peak, bytes / bandwidth) on the hand-made graph below, in both regimes."""
    cost = graph_cost(_tiny_model(), 3)
    compute_bound = Hardware(matmul_gflops=1e-3, bandwidth_gbs=1e3)
    memory_bound = Hardware(matmul_gflops=1e3, bandwidth_gbs=1e-3)
    assert compute_bound.floor(cost) == pytest.approx(cost.flops / 1e6)  # 1e-3 GFLOP/s = 1e6 FLOP/s
    assert memory_bound.floor(cost) == pytest.approx(cost.bytes / 1e6)
    balanced = Hardware(matmul_gflops=cost.flops / 1e9, bandwidth_gbs=cost.bytes / 2e9)  # 1 s vs 2 s
    assert balanced.floor(cost) == pytest.approx(2.0)


def test_attention_flops_match_a_hand_count():
    """onnxruntime's Attention node (com.microsoft): QKV projection, QK^T and AV; shapes flow past it."""
    n, s, d = 3, 5, 8
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name) for name, shape in
            [("w_qkv", (d, 3 * d)), ("b_qkv", (3 * d,)), ("w_out", (d, 4))]]
    graph = helper.make_graph(
        [helper.make_node("Attention", ["x", "w_qkv", "b_qkv"], ["a"], domain="com.microsoft", num_heads=2, unidirectional=1),
         helper.make_node("MatMul", ["a", "w_out"], ["y"])], "attn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length", 4])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    macs = n * s * d * 3 * d + 2 * n * s * s * d + n * s * d * 4
    assert graph_cost(model, n, s).flops == 2 * macs


@pytest.mark.parametrize("n", [1, 3])
def test_flops_and_bytes_match_a_hand_count(n, tmp_path):
    model = _tiny_model()
    onnx.save(model, tmp_path / "tiny.onnx")
    macs = (n * 4 * 8 * 8 * 3 * 3 * 3      # Conv: every output element sums C_in·k·k products
            + n * 4 * 8 * 8 * 1 * 2 * 2     # ConvTranspose: every input element feeds (C_out/groups)·k·k outputs
            + n * 5 * 512                   # MatMul [n,512] x [512,5]
            + n * 6 * 5)                    # Gemm [n,5] x [5,6]
    weights = 4 * (4 * 3 * 3 * 3 + 4 * 1 * 2 * 2 + 512 * 5 + 6 * 5 + 6) + 8 * 2 + 4 * 6 * n  # table: gathered rows only
    io = 4 * n * 3 * 8 * 8 + 8 * n + 4 * n * 6
    for source in (model, tmp_path / "tiny.onnx"):
        cost = graph_cost(source, n)
        assert cost.flops == 2 * macs
        assert cost.weight_bytes == weights and cost.io_bytes == io
    assert all(d.dim_param == "batch" for d in model.graph.input[0].type.tensor_type.shape.dim[:1])  # not mutated


def test_counting_a_graph_does_not_copy_its_weights(monkeypatch):
    """Shape inference serializes the model it is given: counting must hand it the shapes of the large
    weights, not their values (an FFHQ e4e encoder's 1 GB held 4 GB while it was counted), and count the same."""
    model = _tiny_model()
    big = numpy_helper.from_array(np.zeros((512, 1024), np.float32), "w_big")  # 2 MB
    model.graph.initializer.append(big)
    model.graph.node.append(helper.make_node("Identity", ["w_big"], ["w_out"]))
    model.graph.output.append(helper.make_tensor_value_info("w_out", TensorProto.FLOAT, [512, 1024]))
    seen = []
    infer = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda m, **k: seen.append(m.ByteSize()) or infer(m, **k))
    cost = graph_cost(model, 2)
    assert seen and max(seen) < 64 * 1024, seen  # the model itself is over 2 MB
    assert model.ByteSize() > 2 * 2**20  # the caller's model keeps its values
    small = _tiny_model()
    expected = graph_cost(small, 2)
    assert cost.flops == expected.flops
    assert cost.weight_bytes == expected.weight_bytes + 512 * 1024 * 4  # counted from its shape
    assert cost.io_bytes == expected.io_bytes + 512 * 1024 * 4


def test_interleaving_alternates_order():
    calls = []
    stats = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1, pause=0)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert stats["a"].n == stats["b"].n == 4


def test_preset_reuse_needs_a_matching_bundle(tmp_path):
    from export.bundle import ExportOptions

    assert "no usable bundle" in reusable(tmp_path, "demo", ExportOptions())
    with pytest.raises(ValueError, match="unknown preset"):
        reusable(tmp_path, "huge", ExportOptions())


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("batches", ["1,x", "0,4", ""])
def test_cli_bad_batches_exit_2(batches, tmp_path):
    res = run_cli("bench", "--bundle", tmp_path, "--batches", batches)
    assert res.returncode == 2 and "--batches" in res.stderr and "Traceback" not in res.stderr


def test_cli_bad_options_exit_2(tmp_path):
    res = run_cli("bench", "--preset", "demo", "--bundle", tmp_path)
    assert res.returncode == 2 and "not both" in res.stderr
    res = run_cli("bench", "--bundle", tmp_path, "--graphs", "mapping", "--only-photos")
    assert res.returncode == 2 and "--only-photos, not both" in res.stderr
    res = run_cli("bench", "--bundle", tmp_path)  # not a bundle: one line, exit 2
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr


def test_cli_bench_only_some_graphs(bundle):
    res = run_cli("bench", "--bundle", bundle, "--graphs", "mapping", "--batches", "1", "--repeats", "2",
                  "--threads", "1", "--max-seconds", "0")
    assert res.returncode == 0, res.stderr
    rows = [line.split()[0] for line in res.stdout.splitlines()
            if line.startswith(("mapping", "styles", "edit:", "photo:", "precompute"))]
    assert rows and set(rows) == {"mapping"}  # no other graph, no whole edit, no photo, no fs3
    res = run_cli("bench", "--bundle", bundle, "--graphs", "mapping,nope")
    assert res.returncode == 2 and "no graph nope" in res.stderr and "Traceback" not in res.stderr


def test_default_batches_leave_out_batch_8_at_large_sizes(bundle, monkeypatch):
    """Batch 8 of 1024 px images in every interleaved session passed 19 GB at FFHQ size: large generators bench
    batch 1 unless --batches says otherwise."""
    import cli
    import runtime.bundle

    assert read_manifest(bundle)["generator"]["size"] < 512 and cli.default_batches(bundle) == [1, 8]
    monkeypatch.setattr(runtime.bundle, "read_manifest", lambda folder: {"generator": {"size": 1024}})
    assert cli.default_batches(bundle) == [1]


def test_candidates_are_timed_one_at_a_time(bundle, models, monkeypatch):
    """Each candidate is opened for its turn and closed before the next one opens (at FFHQ size all seven
    candidates of a graph open together held 15 GB)."""
    open_now, most, opened = [0], [0], []

    class Counted:
        def __init__(self, run, variant):
            self.run = run
            opened.append(variant)
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])

        def __call__(self, x):
            return self.run(x)

        def __del__(self):
            open_now[0] -= 1

    real = Bench.session
    monkeypatch.setattr(Bench, "session", lambda self, graph, variant: Counted(real(self, graph, variant), variant))
    bench = Bench(bundle, load_sources(sources(models)), batches=(1, 2), repeats=1, warmup=0, threads=1,
                  graphs=["synthesis"], edits=False, photos=False, fs3_channels=0, openvino=False, reference_graphs=False)
    rows, _ = bench.bench_family("generator", ["synthesis"])
    assert opened.count("fp16") == 1 and opened.count("fp32") == 2  # fp32: once for the memory figures, once timed
    assert most[0] == 1 and open_now[0] == 0
    assert [(r.batch, r.variant) for r in rows] == [(1, "fp32"), (1, "fp16"), (1, "torchscript"),
                                                   (2, "fp32"), (2, "fp16"), (2, "torchscript")]
