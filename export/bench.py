"""`cli.py bench`: the runtime (onnxruntime) against PyTorch eager, side by side in one run (DESIGN §9).

For every graph of a bundle and every batch, the same input (drawn by `graphs.InputSampler`, as the
export and validation do) goes to the runtime's session (the runtime's own session options: all graph
optimizations, intra-op threads = torch threads) and to the PyTorch module that was exported
(`torch.inference_mode()`, the same thread count). After warm-up the candidates run interleaved, in
alternating order (A B C, C B A, ...), with a pause between calls long enough that neither side's
spinning worker threads eat into the other's time. Rows give median and p10-p90 of the runtime and of PyTorch,
the ratio torch / runtime, items per second, and the floor:

  floor = max(FLOPs / matmul peak, minimum bytes / memory bandwidth)

FLOPs are 2 x the multiply-adds of Conv, ConvTranspose, MatMul and Gemm (and their int8 forms, and
onnxruntime's Attention: the QKV projection plus QK^T and AV over all heads), counted from the ONNX graph
with shapes from ONNX shape inference at the benchmark batch; minimum bytes are the weights (a table
read only by Gather counts only the rows it yields) plus the input and the output. The peak and the
bandwidth are measured in the same run with the same threads: a large fp32 matmul (torch.mm) and a
large array copy (read + write), at the start and at the end; the better of the two is used.

Whole edits go through `runtime.editor.Editor` (global direction with a cached and an uncached text
direction, mapper; with an encoder, inverting uint8 pictures) against the PyTorch models with the same
numpy edit math. Real photos (scikit-image's astronaut; needs the [align] and [test] extras, else a note
says why they were skipped): `runtime.align` at 512 and 2048 px, its detection, landmarks and warp each
timed alone and the whole align (it has no PyTorch counterpart), and with an encoder a whole photo: align,
invert, a global-direction edit and paste-back, against the same numpy align and paste-back around the
PyTorch encoder and generator. Peak memory per model
family is the growth of the resident set's high-water mark (/proc/self/status VmHWM, reset through
/proc/self/clear_refs) while the family's sessions load and warm up, and while PyTorch warms up.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from runtime import align, edit_math
from runtime import openvino as openvino_module
from runtime.bundle import text_tokens, verify_file
from runtime.editor import Editor, GlobalEdit, MapperEdit
from runtime.memory import release_memory

from .bundle import Models, load_sources
from .graphs import InputSampler, clip_graphs, encoder_graph, generator_graphs, mapper_graph
from .validate import openvino_runner, sources_from_manifest

TEXT_BATCH = 2 * len(edit_math.TEMPLATES)  # one uncached text direction: 2 x 79 prompts in one call
GD_EDIT = ("a face with purple hair", "a face")
# Between timed calls: onnxruntime's intra-op threads keep spinning for 20-50 ms after a run, so with 2 ms
# another session's or PyTorch's run lost both cores to them (ViT-B-32 text encoder batch 1: 9 ms alone,
# 18-22 ms interleaved with pauses of 2-20 ms, 9.9 ms with 50 ms; docs/benchmarks.md).
PAUSE_S = 0.05
UNCUT = "fp32 uncut"  # text encoder variant row: all context_length ids, padding included
MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "MatMulInteger", "ConvInteger", "Attention")
ALIGN_SIDES = (512, 2048)  # the align rows' photos: the astronaut and its PIL-bicubic upscale
ALIGN_CROP = 256  # e4e's crop size (align's default)
# Contrib ops our graphs use, which ONNX shape inference does not know: output 0 has the shape of this input.
CONTRIB_SAME_SHAPE = {("com.microsoft", "Attention"): 0}


FAMILIES = ("generator", "mapper", "clip", "encoder")  # graph families, in the report's order


def family(graph: str) -> str:
    if graph == "encoder":
        return "encoder"
    if graph.startswith("mapper_"):
        return "mapper"
    return "clip" if graph.endswith("_encoder") else "generator"


# --- timing ------------------------------------------------------------------------------------------
@dataclass
class Stats:
    median: float  # seconds
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, times) -> "Stats":
        t = np.asarray(times, dtype=np.float64)
        return cls(float(np.median(t)), float(np.percentile(t, 10)), float(np.percentile(t, 90)), len(t))

    @property
    def spread(self) -> float:
        """(p90 - p10) / median."""
        return (self.p90 - self.p10) / self.median if self.median > 0 else float("nan")


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                max_seconds: float | None = None, min_repeats: int = 3, pause: float = PAUSE_S) -> dict[str, Stats]:
    """Time each candidate `repeats` times, round-robin in alternating order, after `warmup` calls each.

    With `max_seconds`, rounds stop once that much time has passed (never before `min_repeats`).
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t0)
        if max_seconds is not None and r + 1 >= min_repeats and time.perf_counter() - start > max_seconds:
            break
    return {name: Stats.of(t) for name, t in times.items()}


def astronaut(side: int) -> np.ndarray:
    """scikit-image's astronaut (a 512 px portrait; the [test] extra), PIL-bicubic resized to side x side."""
    from PIL import Image
    from skimage import data

    photo = data.astronaut()
    return photo if side == photo.shape[0] else np.asarray(Image.fromarray(photo).resize((side, side), Image.BICUBIC))


def photos_missing() -> str | None:
    """Why the real-photo rows cannot run here (one line), or None; loads dlib's models when they can."""
    import importlib

    for module, what, hint in (("skimage.data", "scikit-image (the portrait)", "pip install 'styleclip-edge[test]'"),
                               ("scipy.ndimage", "scipy (align's border blur)", align.EXTRA_HINT)):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{what} is not installed: {hint}"
    try:
        align.load_models()
    except align.AlignError as err:
        return str(err)
    return None


# --- memory -------------------------------------------------------------------------------------------
class PeakRSS:
    """Growth of the resident set's peak over a block: `with PeakRSS() as m: ...; m.mb`.

    Linux resets the peak (VmHWM) when 5 is written to /proc/self/clear_refs; elsewhere the process-wide
    maximum (getrusage) is used, which only shows growth beyond every earlier peak (`exact` is False).
    """

    def __init__(self):
        self.mb, self.exact = float("nan"), False

    @staticmethod
    def _status() -> dict[str, int]:
        text = Path("/proc/self/status").read_text()
        return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}

    def __enter__(self):
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.base, self.exact = self._status()["VmRSS"], True
        except OSError:
            import resource

            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc):
        if self.exact:
            peak = self._status()["VmHWM"]
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.mb = max(0, peak - self.base) / 2**20
        return False


# --- the floor ----------------------------------------------------------------------------------------
@dataclass
class Cost:
    flops: float
    weight_bytes: float
    io_bytes: float

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.io_bytes

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.weight_bytes + other.weight_bytes, self.io_bytes + other.io_bytes)


def _dims(value_info) -> list | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _nbytes(dims, elem_type) -> float:
    return float(np.prod(dims, dtype=np.float64)) * onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize


def graph_cost(model, batch: int, length: int | None = None) -> Cost:
    """FLOPs and minimum bytes of an ONNX model (path or ModelProto) at `batch`, and at token `length`
    where an input has a second dynamic axis (the text encoder).

    Raises ValueError when a counted node's shapes cannot be inferred.
    """
    model = _shapes_only(onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model)
    graph = model.graph
    for v in list(graph.input) + list(graph.output):
        for axis, d in enumerate(v.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                continue
            if axis == 0:
                d.dim_value = batch
            elif v in graph.output:
                d.Clear()  # left to shape inference
            elif length is None:
                raise ValueError(f"input {v.name!r} has a dynamic axis {axis}; pass its length")
            else:
                d.dim_value = length
    del graph.value_info[:]
    _toposort(graph)  # shape inference walks nodes in order; the fp16 converter appends its input casts
    graph = _infer_shapes(model).graph
    shapes = {v.name: _dims(v) for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    weights = {t.name: (list(t.dims), t.data_type) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    weights[node.output[0]] = (list(a.t.dims), a.t.data_type)
    shapes.update({name: dims for name, (dims, _) in weights.items()})

    def shape(name, node):
        dims = shapes.get(name)
        if dims is None or any(d is None for d in dims):
            raise ValueError(f"cannot infer the shape of {name!r} ({node.op_type} node {node.name!r})")
        return dims

    macs = 0.0
    for node in graph.node:
        if node.op_type not in MAC_OPS:
            continue
        a, b, y = shape(node.input[0], node), shape(node.input[1], node), shape(node.output[0], node)
        if node.op_type in ("Conv", "ConvInteger"):  # W [M, C/g, k...], Y [N, M, out...]
            macs += np.prod(y, dtype=np.float64) * np.prod(b[1:], dtype=np.float64)
        elif node.op_type == "Attention":  # X [N, S, D], W [D, 3D]: QKV, then QK^T and AV (S x S x D each)
            n, s, d = a
            macs += n * s * d * b[1] + 2.0 * n * s * s * d
        elif node.op_type == "ConvTranspose":  # X [N, C, in...], W [C, M/g, k...]
            macs += np.prod(a, dtype=np.float64) * np.prod(b[1:], dtype=np.float64)
        elif node.op_type in ("MatMul", "MatMulInteger"):
            macs += np.prod(y, dtype=np.float64) * a[-1]
        else:  # Gemm
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            macs += np.prod(y, dtype=np.float64) * (a[0] if trans_a else a[1])
    # Weights: every initializer once; one read only through Gather needs only the rows gathered.
    readers: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, i))
    weight_bytes = 0.0
    for name, (dims, dtype) in weights.items():
        size = _nbytes(dims, dtype)
        uses = readers.get(name, [])
        if uses and all(n.op_type == "Gather" and i == 0 for n, i in uses):
            size = min(size, sum(_nbytes(shape(n.output[0], n), dtype) for n, _ in uses))
        weight_bytes += size
    io = sum(_nbytes(shape(v.name, v), types[v.name]) for v in list(graph.input) + list(graph.output))
    return Cost(2.0 * macs, weight_bytes, io)


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference, with the outputs of CONTRIB_SAME_SHAPE ops filled in and inference rerun past them."""
    for _ in range(1 + sum(1 for n in model.graph.node if (n.domain, n.op_type) in CONTRIB_SAME_SHAPE)):
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input)
                 if (d := _dims(v)) is not None and None not in d}
        added = False
        for node in inferred.graph.node:
            index = CONTRIB_SAME_SHAPE.get((node.domain, node.op_type))
            if index is None or node.output[0] in known or node.input[index] not in known:
                continue
            source = known[node.input[index]]
            info = onnx.ValueInfoProto()
            info.CopyFrom(source)
            info.name = node.output[0]
            model.graph.value_info.append(info)
            added = True
        if not added:
            return inferred
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _toposort(graph: onnx.GraphProto) -> None:
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or an input from nowhere: keep the rest as it was
            ordered += pending
            break
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        ordered += ready
        known.update(o for n in ready for o in n.output)
    nodes = [onnx.NodeProto() for _ in ordered]
    for dst, src in zip(nodes, ordered):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(nodes)


def _shapes_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose large initializers keep their shape and type but no values: counting needs no
    values, and shape inference serializes the model (counting an FFHQ e4e encoder's 1 GB held 4 GB).
    Small ones keep their values (shape inference reads e.g. a Reshape's target)."""
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    _copy_fields(model.graph, light.graph, skip="initializer")
    for t in model.graph.initializer:
        if np.prod(t.dims, dtype=np.float64) > 1024:
            light.graph.initializer.add(name=t.name, dims=t.dims, data_type=t.data_type)
        else:
            light.graph.initializer.add().CopyFrom(t)
    return light


def _copy_fields(src, dst, skip: str) -> None:
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


@dataclass
class Hardware:
    matmul_gflops: float  # best of the start and end measurements
    bandwidth_gbs: float
    samples: list = field(default_factory=list)  # (when, GFLOP/s, GB/s)

    def floor(self, cost: Cost) -> float:
        return max(cost.flops / (self.matmul_gflops * 1e9), cost.bytes / (self.bandwidth_gbs * 1e9))


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 [n, n] x [n, n] throughput with torch's current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def copy_gbs(mb: int = 512, repeats: int = 5) -> float:
    """Best copy bandwidth (bytes read + written) of an `mb` MiB fp32 array with torch's threads."""
    src = torch.ones(mb * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * 4 / best / 1e9


# --- the machine ----------------------------------------------------------------------------------------
def machine_info(threads: int) -> dict:
    import onnxruntime

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
    except (OSError, AttributeError):
        pass
    mem = None
    try:
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) * 1024
    except (OSError, AttributeError):
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")
            if f in flags]
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "simd": simd, "memory_gb": round(mem / 2**30, 1) if mem else None, "threads": threads,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "os": platform.platform(),
    }


# --- rows -----------------------------------------------------------------------------------------------
@dataclass
class Row:
    section: str  # graph | edit | photo | precompute
    name: str
    batch: int
    variant: str  # fp32 | fp16 | torchscript | fp32 uncut (graphs); fp32 (edits); dlib (align); torch (precompute)
    runtime: Stats | None  # the runtime (onnxruntime, or the TorchScript module for that variant)
    torch: Stats | None  # PyTorch eager on the same inputs, in the same loop
    cost: Cost | None = None
    floor_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """PyTorch median / runtime median (> 1: the runtime is faster)."""
        return self.torch.median / self.runtime.median if self.runtime and self.torch else float("nan")

    @property
    def per_s(self) -> float:
        return self.batch / self.runtime.median if self.runtime else float("nan")

    @property
    def vs_floor(self) -> float:
        return self.runtime.median / self.floor_s if self.runtime and self.floor_s else float("nan")


@dataclass
class Memory:
    family: str
    runtime_weights_mb: float  # the family's fp32 graph files
    runtime_peak_mb: float  # peak RSS growth while its sessions load and warm up (weights included)
    torch_weights_mb: float  # parameters and buffers of the PyTorch modules (whole models)
    torch_peak_mb: float  # peak RSS growth while PyTorch warms up (weights were already loaded)


@dataclass
class BenchResult:
    label: str
    bundle: str
    threads: int
    batches: list
    repeats: int
    rows: list[Row]
    memory: list[Memory]
    hardware: Hardware
    machine: dict
    seconds: float = 0.0
    profiles: list = field(default_factory=list)  # (graph, batch, ort_profile rows)
    notes: list = field(default_factory=list)  # one line each: rows skipped and why


def _module_mb(module: torch.nn.Module) -> float:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers())) / 2**20


_to_uint8 = Editor.to_uint8


class Bench:
    """One bundle against its PyTorch models; `run()` returns a BenchResult."""

    def __init__(self, bundle, models: Models | None = None, batches=(1, 8), repeats: int = 20, warmup: int = 2,
                 threads: int | None = None, max_seconds: float | None = 60.0, graphs=None, edits: bool = True,
                 photos: bool = True, align_sides=ALIGN_SIDES, fs3_channels: int = 2, hardware_sizes=(2048, 512),
                 seed: int = 0, label: str | None = None,
                 profile: bool = False, reference_graphs: bool = True, openvino: bool | None = None,
                 log: Callable[[str], None] = lambda _: None):
        self.folder = Path(bundle)
        self.threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        self.batches = sorted(set(int(b) for b in batches))
        if not self.batches or self.batches[0] < 1 or repeats < 1 or warmup < 0:
            raise ValueError(f"need batches >= 1, repeats >= 1 and warmup >= 0, got {batches}, {repeats}, {warmup}")
        self.repeats, self.warmup, self.max_seconds = repeats, warmup, max_seconds
        self.edits, self.fs3_channels, self.hardware_sizes = edits, fs3_channels, hardware_sizes
        if any(not 0 < s <= align.DETECT_SIDE for s in align_sides):  # larger ones detect_faces resizes first
            raise ValueError(f"align sides must be 1..{align.DETECT_SIDE} px, got {list(align_sides)}")
        self.photos, self.align_sides = photos, tuple(align_sides)
        self.notes: list[str] = []
        self.profile_graphs = profile
        self.reference_graphs = reference_graphs  # the 'fp32 plain' and 'torch rewrite' rows
        self.openvino = openvino_module.available() if openvino is None else openvino
        self._scratch = None  # a temporary folder for the plain graphs
        self.label, self.log, self.rng = label or self.folder.name, log, np.random.default_rng(seed)
        self.editor = Editor(self.folder, threads=self.threads)
        self.manifest = self.editor.manifest
        self.models = models or load_sources(sources_from_manifest(self.manifest))
        gen, clip = self.models.generator.eval(), self.models.clip.eval()
        sampler = self.models.sampler()
        specs = generator_graphs(gen, sampler) + clip_graphs(clip, sampler, True)
        specs += [mapper_graph(name, m, sampler) for name, m in self.models.mappers.items()]
        if self.models.encoder is not None:
            specs.append(encoder_graph(self.models.encoder, sampler))
        present = self.manifest["graphs"]
        unknown = sorted(set(graphs or ()) - set(present))
        if unknown:
            raise ValueError(f"this bundle has no graph {', '.join(unknown)}; it has {', '.join(present)}")
        self.specs = {s.name: s for s in specs if s.name in present and (graphs is None or s.name in graphs)}
        self._costs: dict[tuple, Cost] = {}

    # --- pieces ---
    def graph_batches(self, graph: str) -> list[int]:
        return sorted(set(self.batches) | ({TEXT_BATCH} if graph == "text_encoder" else set()))

    def input(self, graph: str, batch: int, cut: bool = True) -> np.ndarray:
        """A graph's benchmark input: the text encoder gets the prompts of one GD text direction (the
        first `batch` of them, repeated as needed) as the runtime feeds them (`cut`: padding cut where
        the graph allows it); other graphs `spec.sample`."""
        if graph != "text_encoder":
            return self.specs[graph].sample(batch, self.rng)
        prompts = [t.format(text) for text in GD_EDIT for t in self.manifest["templates"]]
        tokens = self.editor.tokenizer((prompts * (batch // len(prompts) + 1))[:batch])
        return text_tokens(self.manifest, tokens) if cut else tokens

    def cost(self, graph: str, batch: int, variant="fp32", length: int | None = None) -> Cost:
        """FLOPs and bytes of a graph's `variant` (a bundle variant name, or a graph file's path)."""
        if graph == "text_encoder" and length is None:
            length = self.input(graph, batch).shape[1]
        key = (graph, batch, str(variant), length)
        if key not in self._costs:
            if isinstance(variant, Path):
                path = variant
            else:
                entry = self.manifest["graphs"][graph]["variants"][variant]
                path = verify_file(self.folder, self.manifest, entry["file"])
            self._costs[key] = graph_cost(path, batch, length)
        return self._costs[key]

    def session(self, graph: str, variant: str):
        """A session with the runtime's own options and providers (as Editor.session makes them)."""
        entry = self.manifest["graphs"][graph]["variants"][variant]
        return self.file_session(verify_file(self.folder, self.manifest, entry["file"]))

    def torchscript(self, graph: str):
        import warnings

        path = verify_file(self.folder, self.manifest, self.manifest["graphs"][graph]["variants"]["torchscript"]["file"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()

    def profile(self, graph: str, batch: int, runs: int = 3, variant: str = "fp32") -> list[tuple]:
        """onnxruntime's per-op-type profile of one graph (runtime session options, fresh inputs)."""
        fresh = Editor(self.folder, threads=self.threads)  # its own options: profiling must not leak
        x = self.input(graph, batch)
        path = verify_file(self.folder, self.manifest, self.manifest["graphs"][graph]["variants"][variant]["file"])
        try:
            return ort_profile(path, fresh.options, fresh.providers, x, runs)
        finally:
            release_memory()  # the profiled session's

    def hardware(self) -> tuple[float, float]:
        n, mb = self.hardware_sizes
        return matmul_gflops(n), copy_gbs(mb)

    # --- the run ---
    def run(self) -> BenchResult:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        start = time.perf_counter()
        try:
            machine = machine_info(self.threads)
            samples = [("start", *self.hardware())]
            self.log(f"[{self.label}] matmul {samples[0][1]:.1f} GFLOP/s, copy {samples[0][2]:.1f} GB/s, "
                     f"{self.threads} thread(s)")
            done, profiled, photo_rows = {}, {}, None
            # The largest graph first, while least is resident (opening an FFHQ e4e session takes up to 3 GB
            # for a moment), with the rows that run it (invert, photos) while its session is open; each
            # family's profiles right after its rows, for the same reason.
            for fam in sorted(FAMILIES, key=lambda f: f != "encoder"):
                names = [g for g in self.specs if family(g) == fam]
                if not names:
                    continue
                done[fam] = self.bench_family(fam, names)
                if fam == "encoder":  # also with --graphs encoder
                    done[fam][0].extend(self.bench_invert(b) for b in self.batches)
                    photo_rows = self.bench_photos() if self.photos else []
                    self.editor.close()
                    release_memory()
                profiled[fam] = [(g, b, self.profile(g, b)) for g in names if self.profile_graphs
                                 for b in sorted({self.batches[0]} | ({TEXT_BATCH} if g == "text_encoder" else set()))]
            families = [f for f in FAMILIES if f in done]
            rows, memory = [r for f in families for r in done[f][0]], [done[f][1] for f in families]
            profiles = [p for f in families for p in profiled[f]]
            if self.edits:
                rows += self.bench_edits()
            if photo_rows is None and self.photos:  # no encoder: the align rows only
                photo_rows = self.bench_photos()
            rows += photo_rows or []
            self.editor.close()
            release_memory()
            if self.fs3_channels and self.manifest.get("global_directions"):
                rows.append(self.bench_fs3())
                release_memory()  # PyTorch's 1024-px activations
            samples.append(("end", *self.hardware()))
            hw = Hardware(max(s[1] for s in samples), max(s[2] for s in samples), samples)
            for row in rows:
                if row.cost is not None:
                    row.floor_s = hw.floor(row.cost)
            return BenchResult(self.label, str(self.folder), self.threads, self.batches, self.repeats, rows, memory,
                               hw, machine, time.perf_counter() - start, profiles, self.notes)
        finally:
            torch.set_num_threads(previous)
            if self._scratch is not None:
                self._scratch.cleanup()
                self._scratch = None

    def _time(self, candidates: dict, warmup: int = 0) -> dict[str, Stats]:
        return interleaved(candidates, self.repeats, warmup=warmup, max_seconds=self.max_seconds)

    def bench_family(self, fam: str, names: list[str]) -> tuple[list[Row], Memory]:
        inputs = {(g, b): self.input(g, b) for g in names for b in self.graph_batches(g)}
        # Memory: runtime sessions load + warm up; then PyTorch warms up (its weights are already resident).
        with PeakRSS() as rt_mem:
            fp32 = {g: self.session(g, "fp32") for g in names}
            for (g, _), x in inputs.items():
                for _ in range(max(1, self.warmup)):
                    fp32[g](x)
        del fp32  # the timing below opens each candidate when its turn comes
        release_memory()
        eager = {}
        with PeakRSS() as pt_mem, torch.inference_mode():
            for (g, _), x in inputs.items():
                module = self.specs[g].module.eval()
                eager[g] = module
                xt = torch.from_numpy(x)
                for _ in range(max(1, self.warmup)):
                    module(xt)
        files = {self.manifest["graphs"][g]["variants"]["fp32"]["file"] for g in names}
        modules = {id(m): m for m in (self._family_module(fam, g) for g in names)}
        mem = Memory(fam, sum(self.manifest["files"][f]["size"] for f in files) / 2**20, rt_mem.mb,
                     sum(_module_mb(m) for m in modules.values()), pt_mem.mb)
        rows = []
        for g in names:
            found = {}
            candidates, files = self.runners(g)
            costs = {}  # counted while no candidate is open: counting loads the graph file (FFHQ e4e: 2 GB at once)
            for b in self.graph_batches(g):
                full = self.input(g, b, cut=False) if g == "text_encoder" else inputs[(g, b)]
                costs.update({(b, name): self.cost(g, b, files.get(name, "fp32")) for name in candidates})
                if full.shape != inputs[(g, b)].shape:
                    costs[b, UNCUT] = self.cost(g, b, "fp32", full.shape[1])
            release_memory()  # what counting freed (FFHQ e4e: 1 GB)
            # One candidate at a time, interleaved with PyTorch eager, then closed: each holds its own weights and
            # buffers (FFHQ size, all seven candidates of a graph open together: 15 GB). Every row's ratio is to
            # PyTorch in the same interleaving; rows of one graph are timed one after another.
            for v, open_runner in candidates.items():
                run = open_runner()
                release_memory()  # what opening freed (an FFHQ e4e session: 1.9 GB of its 3 GB)
                for b in self.graph_batches(g):
                    x = inputs[(g, b)]
                    xt = torch.from_numpy(x)
                    with torch.inference_mode():
                        for _ in range({"torchscript": max(3, self.warmup)}.get(v, self.warmup)):  # TorchScript
                            run(x)                                                  # optimizes on its 2nd-3rd call
                        cands = {v: lambda run=run: run(x), "torch": lambda m=eager[g]: m(xt)}
                        full = self.input(g, b, cut=False) if g == "text_encoder" else x
                        if v == "fp32" and full.shape != x.shape:  # the same session on uncut ids: what cutting saves
                            cands[UNCUT] = lambda run=run: run(full)
                        stats = self._time(cands)
                    for name in cands:
                        if name != "torch":
                            found[b, name] = Row("graph", g, b, name, stats[name], stats["torch"], costs[b, name])
                    if v == "fp32":
                        self.log(f"[{self.label}] {g} batch {b}: runtime {stats['fp32'].median * 1e3:.2f} ms, "
                                 f"torch {stats['torch'].median * 1e3:.2f} ms")
                del run, cands  # the timed closures hold the runner too
                release_memory()
            order = [*candidates, UNCUT]
            rows += [found[k] for k in sorted(found, key=lambda k: (k[0], order.index(k[1])))]
        return rows, mem

    def runners(self, graph: str) -> tuple[dict, dict]:
        """The candidates of one graph besides PyTorch eager, each as a function that opens it, and the graph
        file (a variant name or a path) each one's cost is counted on:

          fp32, fp16, int8    the bundle's ONNX variants in the runtime's sessions
          torchscript         the bundle's TorchScript variant
          fp32 plain          the graph exported straight from the PyTorch module, without the export-time
                              rewrite (synthesis, text encoder): what the rewrite gains, in the same run
          torch rewrite       the rewritten module in PyTorch eager: what the rewrite alone gives PyTorch
          openvino [bf16]     OpenVINO's CPU plugin (when installed) on the graph Editor(device="openvino")
                              opens (the 'openvino' variant, else fp32; without an 'openvino' variant the
                              plain graph, which it runs better), f32 and with its bf16 inference precision
        """
        variants = self.manifest["graphs"][graph]["variants"]
        openers, files = {"fp32": lambda: self.session(graph, "fp32")}, {}
        for name, entry in variants.items():
            if name not in ("fp32", "openvino") and entry["format"] == "onnx":  # the openvino variant: OpenVINO only
                openers[name], files[name] = (lambda name=name: self.session(graph, name)), name
        if "torchscript" in variants:
            def open_torchscript():
                ts = self.torchscript(graph)
                return lambda x: ts(torch.from_numpy(x))
            openers["torchscript"] = open_torchscript
        spec = self.specs[graph]
        plain = None
        if self.reference_graphs and spec.onnx_module is not None:
            plain = self.plain_graph(graph)
            openers["fp32 plain"], files["fp32 plain"] = (lambda: self.file_session(plain)), plain
            openers["torch rewrite"] = lambda: (lambda x, m=spec.onnx_module.eval(): m(torch.from_numpy(x)))
        if self.openvino:
            entry = variants.get("openvino")
            target = verify_file(self.folder, self.manifest, entry["file"]) if entry else plain or \
                verify_file(self.folder, self.manifest, variants["fp32"]["file"])
            for precision, name in (("fp32", "openvino"), ("bf16", "openvino bf16")):
                openers[name] = lambda precision=precision: openvino_runner(
                    target, openvino_module.graph_precision(graph, precision), self.threads)
                files[name] = target
        return openers, files

    def plain_graph(self, graph: str) -> Path:
        """`graph` exported from its PyTorch module as it is (no rewrite), once, into a temporary folder."""
        from .converters import export_onnx
        from .graphs import GraphSpec

        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="bench-plain-")
        path = Path(self._scratch.name) / f"{graph}.plain.onnx"
        if not path.is_file():
            spec = self.specs[graph]
            plain = GraphSpec(spec.name, spec.module, spec.input_name, spec.output_name, spec.metric, spec.sample,
                              spec.dynamic)
            export_onnx(plain, self.input(graph, 2), path)
            self.log(f"[{self.label}] exported {graph} without its rewrite for the 'fp32 plain' rows")
        return path

    def file_session(self, path: Path):
        """A graph file in a session with the runtime's own options and providers."""
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), self.editor.options, providers=self.editor.providers)
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]

    def _family_module(self, fam: str, graph: str) -> torch.nn.Module:
        if fam == "generator":
            return self.models.generator
        if fam == "clip":
            return self.models.clip.model
        if fam == "encoder":
            return self.models.encoder
        return self.models.mappers[graph.removeprefix("mapper_")]

    # --- the PyTorch side of whole edits: the runtime's numpy edit math around the PyTorch models ---
    @property
    def has_global_directions(self) -> bool:
        return bool(self.manifest.get("global_directions")) and "text_encoder" in self.manifest["graphs"]

    def torch_direction(self, edit: GlobalEdit) -> np.ndarray:
        """Flat Δs of a global-direction edit from the PyTorch text encoder (call in inference mode)."""
        gen, clip, tables = self.models.generator, self.models.clip, self.models.tables
        dt = edit_math.text_direction(lambda t: clip.encode_text(t).numpy(), edit.target, edit.neutral,
                                      templates=self.manifest["templates"])
        r = edit_math.relevance(tables["fs3"], dt)
        beta = edit_math.auto_beta(r, edit.min_channels) if edit.beta is None else edit.beta
        return edit_math.style_direction(r, beta, tables["s_std"], gen.layout)

    def torch_gd_edit(self, wt: torch.Tensor, ds: np.ndarray, alpha: float) -> np.ndarray:
        """W+ (a tensor) edited along Δs by the PyTorch generator: uint8 images [N, H, W, 3]."""
        gen = self.models.generator
        s = edit_math.apply_edits(torch.cat(gen.styles(wt), 1).numpy(), [ds], [alpha])
        return _to_uint8(gen.synthesis_flat(torch.from_numpy(s)).numpy())

    def torch_invert(self, pictures: np.ndarray) -> torch.Tensor:
        """uint8 pictures [N, S, S, 3] -> W+ by the PyTorch encoder (uint8 -> [-1, 1] in torch)."""
        pictures = np.require(pictures, requirements="W")  # aligned crops are read-only, which torch warns about
        return self.models.encoder.eval()(torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1)

    # --- whole edits ---
    def bench_edits(self) -> list[Row]:
        ed, gen, m = self.editor, self.models.generator, self.manifest
        rows = []
        styles_torch = lambda w: torch.cat(gen.styles(w), 1)  # noqa: E731
        gd = GlobalEdit(*GD_EDIT, beta=None)
        for b in self.batches:
            wplus = InputSampler(gen).wplus(b, self.rng)
            wt = torch.from_numpy(wplus)
            with torch.inference_mode():
                if self.has_global_directions:
                    ds = self.torch_direction(gd)
                    ed.edit(wplus, gd)  # fills the cache
                    s_edit = ed.edit_styles(wplus, [gd])
                    s_t = torch.from_numpy(s_edit)
                    torch_edit = lambda ds: self.torch_gd_edit(wt, ds, gd.alpha)  # noqa: E731

                    stats = self._time({"runtime": lambda: ed.edit(wplus, gd), "torch": lambda: torch_edit(ds),
                                        "runtime_synthesis": lambda: ed.run("synthesis", s_edit),
                                        "torch_synthesis": lambda: gen.synthesis_flat(s_t)}, self.warmup)
                    beyond = stats["runtime"].median - stats["runtime_synthesis"].median
                    beyond_t = stats["torch"].median - stats["torch_synthesis"].median
                    rows.append(Row("edit", "GD cached text", b, "fp32", stats["runtime"], stats["torch"],
                                    self.cost("styles", b) + self.cost("synthesis", b),
                                    extra={"synthesis_s": stats["runtime_synthesis"].median,
                                           "beyond_synthesis_pct": 100 * beyond / stats["runtime_synthesis"].median,
                                           "torch_beyond_synthesis_pct": 100 * beyond_t / stats["torch_synthesis"].median}))

                    def runtime_uncached():
                        ed.forget_directions()
                        return ed.edit(wplus, gd)

                    stats = self._time({"runtime": runtime_uncached,
                                        "torch": lambda: torch_edit(self.torch_direction(gd))}, self.warmup)
                    rows.append(Row("edit", f"GD uncached text ({TEXT_BATCH} prompts)", b, "fp32",
                                    stats["runtime"], stats["torch"], self.cost("text_encoder", TEXT_BATCH)
                                    + self.cost("styles", b) + self.cost("synthesis", b)))
                for name, info in (m.get("mappers") or {}).items():
                    mapper, edit = self.models.mappers[name], MapperEdit(name)

                    def torch_mapper(mapper=mapper, k=edit.strength):
                        w = wt + k * (mapper.edit(wt) - wt)
                        return _to_uint8(gen.synthesis_flat(styles_torch(w)).numpy())

                    stats = self._time({"runtime": lambda e=edit: ed.edit(wplus, e), "torch": torch_mapper},
                                       max(1, self.warmup))  # the first call opens the mapper's session
                    rows.append(Row("edit", f"mapper {name}", b, "fp32", stats["runtime"], stats["torch"],
                                    self.cost(info["graph"], b) + self.cost("styles", b) + self.cost("synthesis", b)))
            self.log(f"[{self.label}] edits batch {b} done")
        return rows

    def bench_invert(self, batch: int) -> Row:
        """Editor.invert on uint8 pictures of the encoder's size (conversion included) vs the PyTorch encoder
        on the same pictures (uint8 -> [-1, 1] in torch)."""
        photos = self.specs["encoder"].sample(batch, self.rng)
        pictures = np.round((photos + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
        with torch.inference_mode():
            stats = self._time({"runtime": lambda: self.editor.invert(pictures),
                                "torch": lambda: self.torch_invert(pictures).numpy()}, max(1, self.warmup))
        return Row("edit", "invert (uint8 pictures -> W+)", batch, "fp32", stats["runtime"], stats["torch"],
                   self.cost("encoder", batch))

    # --- real photos ---
    def bench_photos(self) -> list[Row]:
        """The align rows and, with an encoder and global directions, the whole-photo row; none, and a note,
        when scikit-image, scipy, dlib or its landmark model is missing."""
        loaded = bool(align._models)
        t0 = time.perf_counter()
        missing = photos_missing()  # loads dlib's detector and landmark model: never inside a timed call
        load_s = None if loaded or missing else time.perf_counter() - t0
        if missing:
            self.notes.append(f"photo rows skipped: {missing}")
            self.log(f"[{self.label}] {self.notes[-1]}")
            return []
        rows = [self.bench_align(side) for side in self.align_sides]
        if rows:
            rows[0].extra["load_s"] = load_s
        if self.editor.encoder is not None and self.has_global_directions:
            rows.append(self.bench_photo_edit())
        return rows

    def bench_align(self, side: int) -> Row:
        """align_photo on the astronaut at `side` px (an ALIGN_CROP crop of the best face), and its three
        steps each timed alone: the HOG detector, the 68 landmarks of every detection, the warp (align_face)."""
        import dlib

        detector, predictor, _ = align.load_models()  # what detect_faces runs, loaded by photos_missing
        photo = astronaut(side)
        faces = align.detect_faces(photo)
        rects = [dlib.rectangle(*f.box) for f in faces]
        stats = self._time({"detect": lambda: detector.run(photo, align.UPSAMPLE, 0.0),
                            "landmarks": lambda: [predictor(photo, r) for r in rects],
                            "warp": lambda: align.align_face(photo, faces[0], ALIGN_CROP),
                            "total": lambda: align.align_photo(photo, ALIGN_CROP)}, self.warmup)
        self.log(f"[{self.label}] align {side} px: {stats['total'].median * 1e3:.1f} ms")
        return Row("photo", f"align {side} px -> {ALIGN_CROP} px crop", 1, "dlib", stats["total"], None,
                   extra={"faces": len(faces), **{k: stats[k] for k in ("detect", "landmarks", "warp")}})

    def bench_photo_edit(self) -> Row:
        """A whole photo at batch 1: align at the encoder's size, invert, a global-direction edit (the
        bundle's first prompt with tuned global-direction settings, else GD_EDIT's; its direction cached on
        both sides, as in the 'GD cached text' rows), paste-back. The runtime (Editor.invert and .edit, as
        Editor.invert_photo runs them) against the PyTorch encoder and generator, both inside the same
        align and paste-back code. The astronaut at the generator's size (512 px at least), so the face is
        large in the photo, as in FFHQ."""
        ed, side = self.editor, max(512, self.models.generator.config.size)
        photo, size = astronaut(side), ed.encoder_size()
        settings = self.manifest.get("edit_settings") or {}
        tuned = [p for p, v in settings.items() if {"neutral", "alpha", "beta"} & set(v)]  # not a mapper's strength
        edit = ed.global_edit((tuned or GD_EDIT)[0])

        def whole_photo(invert, edit_face):
            (face,) = align.align_photo(photo, size)
            return align.paste_back(photo, edit_face(invert(face.crop[None]))[0], face.aligned.quad)

        with torch.inference_mode():
            ds = self.torch_direction(edit)
            ed.global_direction(edit)  # fills the runtime's cache
            ed.close("text_encoder")  # not needed below: its 158-prompt buffers (FFHQ: ~0.5 GB) go
            release_memory()  # and PyTorch's
            stats = self._time({"runtime": lambda: whole_photo(ed.invert, lambda w: ed.edit(w, edit)),
                                "torch": lambda: whole_photo(self.torch_invert,
                                                             lambda w: self.torch_gd_edit(w, ds, edit.alpha))},
                               max(1, self.warmup))  # the first call may open the encoder's session
        self.log(f"[{self.label}] whole photo: runtime {stats['runtime'].median * 1e3:.1f} ms, "
                 f"torch {stats['torch'].median * 1e3:.1f} ms")
        return Row("photo", f"whole photo {side} px: align + invert + GD edit + paste-back", 1, "fp32",
                   stats["runtime"], stats["torch"],
                   self.cost("encoder", 1) + self.cost("styles", 1) + self.cost("synthesis", 1),
                   extra={"crop": size, "prompt": edit.target})

    # --- precompute ---
    def bench_fs3(self) -> Row:
        """fs3 precompute (PyTorch only): seconds per channel at a small N, projected to N = 100."""
        gen, clip, tables = self.models.generator, self.models.clip, self.models.tables
        n_images = 100 if gen.config.size <= 256 else 4
        per_image = fs3_seconds_per_image(gen, clip, tables["s_mean"], tables["s_std"], self.fs3_channels, n_images)
        per_channel = Stats(2 * 100 * per_image, float("nan"), float("nan"), self.fs3_channels)
        self.log(f"[{self.label}] fs3: {1 / per_channel.median:.3g} channels/s at N=100")
        return Row("precompute", "fs3 (PyTorch)", 100, "fp32", None, per_channel,
                   extra={"channels_per_s": 1 / per_channel.median, "measured_n": n_images,
                          "rows": int(self.manifest["global_directions"]["fs3_rows"])})


def fs3_seconds_per_image(gen, clip, mean, std, channels: int = 2, n_images: int = 100, batch: int | None = None,
                          compile: bool = False) -> float:
    """Seconds per (generator + CLIP) image of the fs3 precompute, timed over `channels` channel groups after
    a first, untimed one (one channel per group unless `batch` says otherwise)."""
    from precompute import global_directions as gd

    if channels < 1:
        raise ValueError(f"need at least one timed channel, got {channels}")
    batch = batch or min(2 * n_images, gd.default_batch(gen))  # what `fs3` runs (FFHQ: 1 image; 8 held 11 GB)
    group = max(1, batch // (2 * n_images))
    rows = gen.layout.conv_channels
    shard = (0, max(1, rows // ((channels + 1) * group)))  # the first (channels + 1) groups of rows
    stamps = []
    gd.compute_fs3(gen, clip, mean, std, n_images=n_images, shard=shard, batch=batch, progress=False, compile=compile,
                   on_progress=lambda done: stamps.append((done, time.perf_counter())))
    (d0, t0), (d1, t1) = stamps[0], stamps[-1]
    if d1 == d0:
        raise ValueError("need at least two channel groups to time; raise the channel count")
    return (t1 - t0) / ((d1 - d0) * 2 * n_images)


def bench_bundle(bundle, models: Models | None = None, batches=(1, 8), repeats: int = 20, warmup: int = 2,
                 threads: int | None = None, **options) -> BenchResult:
    """Benchmark every graph and whole edit of `bundle` against its PyTorch models (see Bench)."""
    return Bench(bundle, models, batches, repeats, warmup, threads, **options).run()


# --- profiles -----------------------------------------------------------------------------------------------
def ort_profile(path, options, providers, x: np.ndarray, runs: int = 3) -> list[tuple]:
    """onnxruntime's own profile of one graph: [(op type, ms per run, share, nodes)], slowest first.

    `options` must be fresh SessionOptions (profiling is switched on in them); one untimed warm-up run."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), options, providers=providers)
        release_memory()  # what opening freed, as Editor.session does (FFHQ e4e: 1.9 GB)
        name = sess.get_inputs()[0].name
        for _ in range(runs + 1):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    first_timed = starts[1] if len(starts) > 1 else 0
    by_op: dict[str, list] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_timed:
            acc = by_op.setdefault(e.get("args", {}).get("op_name", "?"), [0.0, set()])
            acc[0] += e["dur"] / 1e3 / runs
            acc[1].add(e["name"])
    total = sum(v[0] for v in by_op.values()) or 1.0
    return sorted(((op, ms, ms / total, len(nodes)) for op, (ms, nodes) in by_op.items()), key=lambda r: -r[1])


def format_profile(graph: str, batch: int, profile: list[tuple], top: int = 12) -> str:
    total = sum(r[1] for r in profile)
    lines = [f"{graph} batch {batch}: {total:.2f} ms in kernels per run"]
    lines += [f"  {op:<28} {ms:9.3f} ms  {share:6.1%}  {nodes:4d} nodes" for op, ms, share, nodes in profile[:top]]
    return "\n".join(lines)


# --- reports ------------------------------------------------------------------------------------------------
def _ms(s: Stats | None) -> str:
    if s is None:
        return "-"
    if np.isnan(s.p10):
        return f"{s.median * 1e3:.3g}"
    return f"{s.median * 1e3:.3g} ({s.p10 * 1e3:.3g}-{s.p90 * 1e3:.3g})"


def _num(v: float, fmt: str = ".3g") -> str:
    return "-" if v is None or not np.isfinite(v) else format(v, fmt)


COLUMNS = ("what", "batch", "variant", "runtime ms (p10-p90)", "torch ms (p10-p90)", "torch/rt", "items/s",
           "GFLOP", "min MB", "floor ms", "rt/floor", "note")


def table_rows(result: BenchResult) -> list[tuple]:
    out = []
    for r in result.rows:
        note = ""
        if "beyond_synthesis_pct" in r.extra:
            note = (f"beyond synthesis {r.extra['beyond_synthesis_pct']:+.1f}% "
                    f"(torch {r.extra['torch_beyond_synthesis_pct']:+.1f}%)")
        elif "detect" in r.extra:
            note = (" + ".join(f"{k} {r.extra[k].median * 1e3:.3g}" for k in ("detect", "landmarks", "warp"))
                    + f" ms (medians, each timed alone; {r.extra['faces']} detection(s)); no PyTorch counterpart")
            if r.extra.get("load_s") is not None:
                note += f"; dlib's models loaded once before timing in {r.extra['load_s']:.2f} s"
        elif "crop" in r.extra:
            note = (f"{r.extra['crop']} px crop, GD '{r.extra['prompt']}' (text direction cached); "
                    "floor: the graphs only")
        elif "channels_per_s" in r.extra:
            note = (f"{r.extra['channels_per_s']:.3g} channels/s at N=100 (measured at N={r.extra['measured_n']}); "
                    f"{r.extra['rows']} rows: {r.extra['rows'] / r.extra['channels_per_s'] / 3600:.2g} h")
        what = r.name if r.section == "graph" else f"{r.section}: {r.name}"
        cost = r.cost
        out.append((what, str(r.batch), r.variant, _ms(r.runtime), _ms(r.torch), _num(r.ratio, ".2f"),
                    _num(r.per_s), _num(cost.flops / 1e9 if cost else None), _num(cost.bytes / 2**20 if cost else None),
                    _num(r.floor_s * 1e3 if r.floor_s else None), _num(r.vs_floor, ".2f"), note))
    return out


def _summary(result: BenchResult) -> list[str]:
    m, hw = result.machine, result.hardware
    return [
        f"bundle {result.bundle} ({result.label}); {result.threads} thread(s) for both; batches {result.batches}; "
        f"up to {result.repeats} interleaved repeats per row; {result.seconds:.0f} s",
        f"machine: {m['cpu']}, {m['usable_cpus']}/{m['cpus']} CPUs usable, {m['memory_gb']} GB, "
        f"{' '.join(m['simd'])}; load average at start {m['load_average']}",
        f"versions: python {m['python']}, numpy {m['numpy']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"onnx {m['onnx']}",
        "floor inputs (this run): matmul " + ", ".join(f"{w} {g:.1f}" for w, g, _ in hw.samples)
        + f" GFLOP/s; copy " + ", ".join(f"{w} {b:.1f}" for w, _, b in hw.samples) + " GB/s",
        *result.notes,
    ]


def _memory_rows(result: BenchResult) -> list[tuple]:
    return [(x.family, f"{x.runtime_weights_mb:.1f}", f"{x.runtime_peak_mb:.1f}", f"{x.torch_weights_mb:.1f}",
             f"{x.torch_peak_mb:.1f}") for x in result.memory]


MEMORY_COLUMNS = ("family", "runtime files MB", "runtime peak RSS MB", "torch weights MB", "torch peak RSS MB")


def _text_table(header, rows) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def format_result(result: BenchResult) -> str:
    parts = _summary(result) + ["", _text_table(COLUMNS, table_rows(result))]
    if result.memory:  # none when no graph family ran (--only-photos)
        parts += ["", _text_table(MEMORY_COLUMNS, _memory_rows(result))]
    if result.profiles:
        parts += ["", "onnxruntime profiles (kernel time per run by op type):"]
        parts += [format_profile(g, b, p) for g, b, p in result.profiles]
    return "\n".join(parts)


def _md_table(header, rows) -> str:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


def markdown_block(results: list[BenchResult], command: str, chart: str | None) -> str:
    parts = [f"Command: `{command}`", ""]
    for res in results:
        parts += [f"### {res.label}", ""] + [f"- {line}" for line in _summary(res)] + [""]
        parts += [_md_table(COLUMNS, table_rows(res)), ""]
        if res.memory:
            parts += [_md_table(MEMORY_COLUMNS, _memory_rows(res)), ""]
        if res.profiles:
            parts += ["onnxruntime profiles (kernel time per run by op type):", "", "```"]
            parts += [format_profile(g, b, p) for g, b, p in res.profiles] + ["```", ""]
    if chart:
        parts += [f"![torch / runtime and runtime / floor]({chart})", ""]
    parts += ["torch/rt: PyTorch eager median ÷ runtime median (> 1: the runtime is faster). rt/floor: runtime median "
              "÷ max(FLOPs / matmul peak, min bytes / copy bandwidth). Spread: p10-p90 of the timed repeats."]
    return "\n".join(parts)


def write_markdown(path, results: list[BenchResult], command: str, key: str) -> tuple[Path, Path]:
    """Write (or replace) this run's block in `path`, between markers named by `key`; the rest of the file
    (hand-written notes, other presets' blocks) stays. The chart goes next to it as <stem>_<key>.png."""
    from runtime.files import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".md":
        raise ValueError(f"--out must be a .md file, got {path.name}")
    key = re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-") or "run"
    chart = path.with_name(f"{path.stem}_{key}.png")
    draw_chart(results, chart)
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    block = f"{begin}\n{markdown_block(results, command, chart.name)}\n{end}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n\nGenerated by `cli.py bench` (DESIGN §9).\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n## Run: {key}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path, chart


def draw_chart(results: list[BenchResult], path) -> Path:
    """Horizontal bars per row: torch / runtime (left) and runtime / floor (right), PIL only."""
    from PIL import Image, ImageDraw

    from runtime.images import save_png

    items = [(f"{res.label}: {r.name if r.section == 'graph' else r.name} b{r.batch}"
              + ("" if r.variant == "fp32" else f" {r.variant}"), r.ratio, r.vs_floor)
             for res in results for r in res.rows if np.isfinite(r.ratio) or np.isfinite(r.vs_floor)]
    bar, gap, label_w, panel_w, top = 12, 4, 330, 300, 34
    height = top + len(items) * (bar + gap) + 30
    img = Image.new("RGB", (label_w + 2 * panel_w + 60, height), "white")
    d = ImageDraw.Draw(img)
    panels = [("torch / runtime (> 1: runtime faster)", 1, (66, 110, 180)), ("runtime / floor (1 = at the floor)", 2, (220, 130, 40))]
    for p, (title, idx, color) in enumerate(panels):
        x0 = label_w + p * (panel_w + 30)
        values = [v[idx] for v in items if np.isfinite(v[idx]) and v[idx] > 0]
        vmax = max(values + [1.0]) * 1.1
        d.text((x0, 4), title, fill="black")
        for tick in _ticks(vmax):
            x = x0 + tick / vmax * panel_w
            d.line([(x, top - 4), (x, height - 24)], fill=(225, 225, 225))
            d.text((x - 6, height - 20), f"{tick:g}", fill="gray")
        one = x0 + 1 / vmax * panel_w
        d.line([(one, top - 4), (one, height - 24)], fill="black")
        for i, item in enumerate(items):
            y = top + i * (bar + gap)
            v = item[idx]
            if np.isfinite(v) and v > 0:
                d.rectangle([x0, y, x0 + v / vmax * panel_w, y + bar], fill=color)
                d.text((x0 + v / vmax * panel_w + 3, y), f"{v:.2f}", fill="black")
    for i, (label, *_) in enumerate(items):
        d.text((4, top + i * (bar + gap)), label[:52], fill="black")
    return save_png(img, path)


def _ticks(vmax: float) -> list[float]:
    step = 10 ** np.floor(np.log10(vmax / 4)) if vmax > 0 else 1
    for mult in (1, 2, 5, 10):
        if vmax / (step * mult) <= 6:
            step *= mult
            break
    return [float(t) for t in np.arange(0, vmax, step)]
