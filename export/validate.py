"""`cli.py validate`: every exported graph against PyTorch on fresh inputs (DESIGN §6).

For each graph and variant (fp32/fp16 ONNX, TorchScript, TensorRT) and each batch size, the same
realistic inputs go through the PyTorch model and the exported graph; we record max abs error,
relative L2 error and the domain metric (PSNR for images, min cosine for embeddings, max abs for
latents), plus the end-to-end edits (global direction, each mapper, and with an encoder a picture
inverted, edited and rendered) compared image to image. Results
go into the manifest and into an HTML report with side-by-side images and error maps. Any failure is
a failure: the command exits non-zero.
"""
from __future__ import annotations

import datetime
import html
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from runtime import edit_math
from runtime.bundle import CORE_GRAPHS, REEXPORT, BundleError, load_table, text_tokens, verify_bundle, verify_file
from precompute.checkpoints import load_generator
from precompute.clip_model import load_clip
from precompute.encoder import load_encoder
from precompute.mapper import load_mapper
from runtime.files import atomic_path, sha256_file
from runtime.memory import release_memory

from .bundle import Sources, mapper_name, write_manifest
from .graphs import InputSampler, clip_graphs, encoder_graph, generator_graphs, mapper_graph

# metric, threshold, whether larger is better; per precision and per kind of output
TOLERANCES = {
    "fp32": {"image": ("psnr", 60.0, True), "embedding": ("cosine", 0.99999, True), "latent": ("max_abs", 1e-4, False)},
    "fp16": {"image": ("psnr", 35.0, True), "embedding": ("cosine", 0.999, True), "latent": ("rel_l2", 1e-2, False)},
    # Dynamic int8 MatMuls (text encoder, mappers); images: whole edits through an int8 graph.
    "int8": {"image": ("psnr", 30.0, True), "embedding": ("cosine", 0.999, True), "latent": ("rel_l2", 1e-2, False)},
    # OpenVINO's bf16 inference precision (Editor(device="openvino", precision="bf16")).
    "bf16": {"image": ("psnr", 30.0, True), "embedding": ("cosine", 0.999, True), "latent": ("rel_l2", 1e-2, False)},
}
OPENVINO_BF16 = "openvino bf16"  # checked, with OpenVINO installed, on a bundle exported with --openvino
VARIANT_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "torchscript": "fp32", "tensorrt": "fp32",
                     "openvino": "fp32", OPENVINO_BF16: "bf16"}
GD_PROMPT = ("a face with purple hair", "a face")  # the end-to-end global-direction check
REPORT_DIR = "report"


class ValidationFailed(ValueError):
    """An exported graph that does not even produce the right shape."""


@dataclass
class Check:
    graph: str
    variant: str
    batch: int
    metric: str
    value: float
    tolerance: float
    higher_is_better: bool
    max_abs: float
    rel_l2: float

    @property
    def passed(self) -> bool:
        ok = self.value >= self.tolerance if self.higher_is_better else self.value <= self.tolerance
        return bool(not np.isnan(self.value) and ok)


def metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    diff = out - ref
    mse_255 = np.mean(diff**2) * 127.5**2  # images: [-1, 1] -> [0, 255]
    cos = np.sum(ref * out, axis=-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(out, axis=-1) + 1e-30)
    return {
        "max_abs": float(np.abs(diff).max()),
        "rel_l2": float(np.linalg.norm(diff) / (np.linalg.norm(ref) + 1e-30)),
        "psnr": float(10 * np.log10(255.0**2 / mse_255)) if mse_255 > 0 else float("inf"),
        "cosine": float(np.min(cos)),
    }


# --- runners for each exported format --------------------------------------------------------------
def _onnx_runner(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # No arena: validation is not timed, and an arena keeps the peak of every batch of every graph it ran
    # (gigabytes at 1024 px) until its session is gone.
    options.enable_cpu_mem_arena = False
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def openvino_runner(path: Path, precision: str = "fp32", threads: int | None = None):
    """An ONNX graph as Editor(device="openvino") runs it (runtime/openvino.py), in `precision`."""
    from runtime.openvino import OpenVinoSession

    session = OpenVinoSession(path, precision, threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _torchscript_runner(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": we test it anyway
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()
    return run


def _tensorrt_runner(path: Path, environment: dict):
    from runtime.engines import check_engine_environment, gpu_environment

    check_engine_environment(environment, gpu_environment())
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]

    def run(x):
        inp = torch.from_numpy(x).cuda()
        context.set_input_shape(names[0], tuple(inp.shape))
        out = torch.empty(tuple(context.get_tensor_shape(names[1])), device="cuda")
        context.set_tensor_address(names[0], inp.data_ptr())
        context.set_tensor_address(names[1], out.data_ptr())
        context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
        return out.cpu().numpy()
    return run


def make_runner(folder: Path, manifest: dict, variant: dict):
    path = verify_file(folder, manifest, variant["file"])
    if variant["format"] == "onnx":
        return _onnx_runner(path)
    if variant["format"] == "torchscript":
        return _torchscript_runner(path)
    return _tensorrt_runner(path, variant["environment"])


class Sessions:
    """The bundle's graphs in one variant, each opened when first used and all released by `close()`, so the
    edit checks hold only the graphs of one edit (at 1024 px the encoder alone is a 1 GB session). Graphs
    without that variant come from `fallback` (the fp32 sessions)."""

    def __init__(self, folder: Path, manifest: dict, variant: str, fallback: "Sessions | None" = None):
        self.folder, self.manifest, self.variant, self.fallback, self.open = folder, manifest, variant, fallback, {}

    def has_own(self, graph: str) -> bool:
        return self.variant in self.manifest["graphs"][graph]["variants"]

    def __getitem__(self, graph: str):
        if self.fallback is not None and not self.has_own(graph):
            return self.fallback[graph]
        if graph not in self.open:
            self.open[graph] = make_runner(self.folder, self.manifest, self.manifest["graphs"][graph]["variants"][self.variant])
        return self.open[graph]

    def close(self) -> None:
        self.open.clear()
        if self.fallback is not None:
            self.fallback.close()
        release_memory()


def reference(module, x: np.ndarray) -> np.ndarray:
    """PyTorch's output one input at a time: at 1024 px a batch of 4 holds gigabytes of activations, and the
    batch > 1 check is about the exported graph's dynamic batch, which still runs the whole batch."""
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])


# --- models from the recorded sources ---------------------------------------------------------------
def sources_from_manifest(manifest: dict) -> Sources:
    recorded = manifest.get("sources") or {}
    for key, entry in recorded.items():
        path = Path(entry["path"])
        if not path.is_file():
            raise BundleError(f"validation needs the PyTorch source '{key}' at {path}, which is missing")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"the PyTorch source '{key}' at {path} changed since the export (sha256 differs)")
    mappers = [Path(e["path"]) for k, e in recorded.items() if k.startswith("mapper_")]
    get = lambda k: Path(recorded[k]["path"]) if k in recorded else None  # noqa: E731
    return Sources(get("generator"), get("clip"), manifest["clip"]["name"], mappers, get("fs3"), get("s_stats"),
                   encoder=get("encoder"))


# --- the checks ----------------------------------------------------------------------------------------
def _check(graph, variant, batch, kind, ref, out) -> Check:
    metric, tol, higher = TOLERANCES[VARIANT_PRECISION[variant]][kind]
    m = metrics(ref, out)
    return Check(graph, variant, batch, metric, m[metric], tol, higher, m["max_abs"], m["rel_l2"])


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return ((np.clip(img, -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(1, 2, 0)


def side_by_side(ref: np.ndarray, out: np.ndarray, max_side: int = 256) -> Image.Image:
    """Rows: PyTorch | exported | |error| amplified so the largest error is white.

    Large images are reduced to `max_side` (box filter for the images, max for the error map, so no
    error disappears) to keep the report small; made when the check runs, so a 1024 px batch is not kept.
    """
    f = max(1, ref.shape[-1] // max_side)
    err = np.abs(out - ref).max(axis=1, keepdims=True)
    if f > 1:
        pool = lambda a, op: op(a.reshape(*a.shape[:2], a.shape[2] // f, f, a.shape[3] // f, f), axis=(3, 5))  # noqa: E731
        ref, out, err = pool(ref, np.mean), pool(out, np.mean), pool(err, np.max)
    err = np.repeat(err / max(float(err.max()), 1e-12) * 2 - 1, 3, axis=1)
    rows = [np.concatenate([_to_uint8(r), _to_uint8(o), _to_uint8(e)], axis=1) for r, o, e in zip(ref, out, err)]
    grid = np.concatenate(rows, axis=0)
    scale = max(1, max_side // ref.shape[-1])
    return Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)


class LazyModels:
    """The bundle's PyTorch sources, each loaded when first used. `keep(...)` releases the large ones not
    named: at 1024 px e4e is 1 GB and CLIP 0.6 GB, which beside the encoder's session (3 GB at the runtime's
    optimization level) would not fit the 6 GiB a validation may take. The generator and mappers stay."""

    LARGE = ("clip", "encoder")

    def __init__(self, src: Sources):
        self.src, self.loaded = src, {}

    def _get(self, key, load):
        if key not in self.loaded:
            self.loaded[key] = load()
        return self.loaded[key]

    @property
    def generator(self):
        return self._get("generator", lambda: load_generator(self.src.generator))

    @property
    def clip(self):
        return self._get("clip", lambda: load_clip(self.src.clip_name, self.src.clip))

    @property
    def encoder(self):
        return None if self.src.encoder is None else self._get("encoder", lambda: load_encoder(self.src.encoder))

    @property
    def mappers(self) -> dict:
        return self._get("mappers", lambda: {mapper_name(p): load_mapper(p) for p in self.src.mappers})

    def sampler(self, clip: bool = False, photos: bool = False) -> InputSampler:
        """Inputs from the generator (and token ids from CLIP, pictures at the encoder's size when asked)."""
        return InputSampler(self.generator, self.clip if clip else None,
                            self.encoder.config.input_size if photos else None)

    def keep(self, *names: str) -> None:
        for key in self.LARGE:
            if key not in names and self.loaded.pop(key, None) is not None:
                release_memory()


def family(graph: str) -> str:
    """Which PyTorch model a graph is checked against."""
    return ("clip" if graph in ("text_encoder", "image_encoder") else "encoder" if graph == "encoder"
            else "mapper" if graph.startswith("mapper_") else "generator")


class Validator:
    def __init__(self, folder, batches=(1, 4), seed=0, progress=True):
        self.folder, self.batches, self.seed, self.progress = Path(folder), tuple(batches), seed, progress
        self.manifest = verify_bundle(folder)
        # Before any work: a graph this toolkit no longer exports (an older bundle's synthesis_wplus) has no
        # PyTorch counterpart to be checked against.
        known = (*CORE_GRAPHS, "image_encoder", "encoder")
        if unknown := [g for g in self.manifest["graphs"] if g not in known and not g.startswith("mapper_")]:
            raise BundleError(f"{self.folder} holds the graph(s) {', '.join(unknown)}, which this toolkit no longer "
                              f"exports (W+ renders as styles -> synthesis); {REEXPORT}")
        self.models = LazyModels(sources_from_manifest(self.manifest))
        self.models.generator  # noqa: B018  (a source that cannot be loaded fails before any check)
        self._specs: tuple[str, dict] = ("", {})
        self.images: dict[str, Image.Image] = {}  # report pictures: name -> PyTorch | exported | error

    def spec(self, graph: str):
        """The graph's PyTorch counterpart and input sampler; only one family's large model is loaded."""
        fam = family(graph)
        if self._specs[0] != fam:
            self._specs = ("", {})
            self.models.keep(fam)
            models = self.models
            if fam == "clip":
                specs = clip_graphs(models.clip, models.sampler(clip=True), "image_encoder" in self.manifest["graphs"])
            elif fam == "encoder":
                specs = [encoder_graph(models.encoder, models.sampler(photos=True))]
            elif fam == "mapper":
                specs = [mapper_graph(name, m, models.sampler()) for name, m in models.mappers.items()]
            else:
                specs = generator_graphs(models.generator, models.sampler())
            self._specs = (fam, {s.name: s for s in specs})
        return self._specs[1][graph]

    def graph_checks(self) -> list[Check]:
        """Every variant of every graph; on a bundle with 'openvino' variants, where OpenVINO is installed, every
        graph as Editor(device="openvino") runs it, in f32 (the 'openvino' rows) and in bf16."""
        checks = []
        graphs = self.manifest["graphs"]
        jobs = [(g, v) for g, entry in graphs.items() for v in entry["variants"]]
        if self.on_openvino:
            jobs += [(g, "openvino") for g, entry in graphs.items() if "openvino" not in entry["variants"]]
            jobs += [(g, OPENVINO_BF16) for g in graphs]
        # Each family's PyTorch model loaded once; every job keeps the inputs of its place in the manifest's order.
        order = ["generator", "mapper", "clip", "encoder"]
        jobs = sorted(enumerate(jobs), key=lambda job: order.index(family(job[1][0])))
        bar = tqdm(total=len(jobs), desc="validate graphs", unit="graph", disable=not self.progress)
        for fam in order:
            mine = [job for job in jobs if family(job[1][0]) == fam]
            # All of a family's PyTorch references first, then its large model (e4e, CLIP) released before any of
            # its sessions is created: at FFHQ size a session of the 1 GB e4e graph holds 3.0 GB at the runtime's
            # optimization level (1.1 GB without onnxruntime's NCHWc layout transform), which beside e4e's own
            # 1 GB broke the 6 GiB bar. The inputs and numbers are the same as when each ran beside its model.
            cases = []
            for index, (graph, variant) in mine:
                spec = self.spec(graph)
                rng = np.random.default_rng([self.seed, index * len(self.batches)])
                inputs = [spec.sample(batch, rng) for batch in self.batches]
                cases.append((graph, variant, spec.metric, [(x, reference(spec.module, x)) for x in inputs]))
            if fam in LazyModels.LARGE:
                self._specs = ("", {})
                self.models.keep()
            while cases:
                graph, variant, metric, pairs = cases.pop(0)
                run = self.runner(graph, variant)
                for batch, (x, ref) in zip(self.batches, pairs):
                    out = run(x)
                    if out.shape != ref.shape:
                        raise ValidationFailed(f"{graph} [{variant}] returned shape {out.shape} for batch {batch}, PyTorch {ref.shape}")
                    checks.append(_check(graph, variant, batch, metric, ref, out))
                    if metric == "image" and batch == max(self.batches):
                        self.images[f"{graph}.{variant}"] = side_by_side(ref, out)
                del run, pairs  # one graph's session at a time: a 1024 px bundle's graphs hold gigabytes together
                release_memory()
                bar.update()
        bar.close()
        return checks

    @property
    def on_openvino(self) -> bool:
        from runtime import openvino

        return openvino.available() and any("openvino" in e["variants"] for e in self.manifest["graphs"].values())

    def runner(self, graph: str, variant: str):
        variants = self.manifest["graphs"][graph]["variants"]
        if variant not in ("openvino", OPENVINO_BF16) or not self.on_openvino:
            return make_runner(self.folder, self.manifest, variants[variant])
        from runtime.openvino import graph_precision

        entry = variants.get("openvino") or variants["fp32"]
        return openvino_runner(verify_file(self.folder, self.manifest, entry["file"]),
                               graph_precision(graph, "bf16" if variant == OPENVINO_BF16 else "fp32"))

    def edit_checks(self) -> list[Check]:
        """Whole edits vs PyTorch, compared on the final images: with the fp32 graphs, and again with the fp16
        graphs (what a web site serves) and the int8 text encoder / mappers where the bundle has them (their
        error as a user sees it)."""
        gen, m = self.models.generator, self.manifest
        rng = np.random.default_rng([self.seed, 999])
        wplus = self.spec("styles").sample(max(self.batches), rng)
        fp32 = Sessions(self.folder, m, "fp32")
        checks = []
        if m.get("encoder"):
            checks.append(self.invert_edit_check(fp32, rng))
            fp32.close()
        self.models.keep("clip")
        clip = self.models.clip
        gd_ref = self._gd_reference(wplus) if m.get("global_directions") else None
        for variant in ("fp32", "fp16", "int8"):
            runners = fp32 if variant == "fp32" else Sessions(self.folder, m, variant, fp32)
            if gd_ref is not None and (variant == "fp32" or runners.has_own("text_encoder")):
                ref, beta = gd_ref
                dt_out = edit_math.text_direction(
                    lambda t: runners["text_encoder"](text_tokens(m, clip.tokenize(t).numpy())), *GD_PROMPT)
                fs3, std = (load_table(self.folder, m, m["tables"][k]) for k in ("fs3", "s_std"))
                ds_out = edit_math.style_direction(edit_math.relevance(fs3, dt_out), beta, std, gen.layout)
                out = runners["synthesis"](edit_math.apply_edits(runners["styles"](wplus), [ds_out], [edit_math.DEFAULT_ALPHA]))
                checks.append(_check("edit:global_direction", variant, len(wplus), "image", ref, out))
                self.images["edit:global_direction" + ("" if variant == "fp32" else f".{variant}")] = side_by_side(ref, out)
                runners.close()
            for name, info in m["mappers"].items():
                if variant != "fp32" and not runners.has_own(info["graph"]):
                    continue
                ref = reference(lambda w: gen(self.models.mappers[name].edit(w)), wplus)
                out = runners["synthesis"](runners["styles"](runners[info["graph"]](wplus)))
                checks.append(_check(f"edit:mapper_{name}", variant, len(wplus), "image", ref, out))
                self.images[f"edit:mapper_{name}" + ("" if variant == "fp32" else f".{variant}")] = side_by_side(ref, out)
                runners.close()
        return checks

    def _gd_reference(self, wplus) -> tuple[np.ndarray, float]:
        """The global-direction edit in PyTorch (open_clip at full context) and the beta it was made with."""
        gen, clip, m = self.models.generator, self.models.clip, self.manifest
        fs3, std = (load_table(self.folder, m, m["tables"][k]) for k in ("fs3", "s_std"))
        with torch.no_grad():
            dt_ref = edit_math.text_direction(
                lambda t: clip.model.encode_text(clip.tokenize(t), normalize=True).numpy(), *GD_PROMPT)
            r = edit_math.relevance(fs3, dt_ref)
            # The channels at the default beta (at least 10), beta midway to the next one: a 1e-7
            # difference in dt must not flip a channel sitting right at the threshold.
            kept = max(10, int((np.abs(r) >= edit_math.DEFAULT_BETA).sum()))
            beta = edit_math.auto_beta(r, min(kept, r.size))
            s_ref = torch.cat(gen.styles(torch.from_numpy(wplus)), 1).numpy()
            ds_ref = edit_math.style_direction(r, beta, std, gen.layout)
        ref = reference(gen.synthesis_flat, edit_math.apply_edits(s_ref, [ds_ref], [edit_math.DEFAULT_ALPHA]))
        return ref, beta

    def invert_edit_check(self, onnx: dict, rng) -> Check:
        """Pictures -> encoder -> an edit (the first mapper, else none) -> image, all-ONNX vs all-PyTorch."""
        gen, m = self.models.generator, self.manifest
        photos = self.spec("encoder").sample(max(self.batches), rng)
        mapper = next(iter(m["mappers"]), None)

        def pytorch(x):
            w = self.models.encoder(x)
            return gen(w if mapper is None else self.models.mappers[mapper].edit(w))
        ref = reference(pytorch, photos)
        self.models.keep()  # e4e released before its session is created (see graph_checks)
        w_out = onnx["encoder"](photos)
        # The encoder's session (3 GB at FFHQ size) released before synthesis renders the batch (1 GB more).
        onnx.open.pop("encoder", None)
        release_memory()
        if mapper is not None:
            w_out = onnx[m["mappers"][mapper]["graph"]](w_out)
        out = onnx["synthesis"](onnx["styles"](w_out))
        name = f"edit:invert{f'_mapper_{mapper}' if mapper else ''}"
        self.images[name] = side_by_side(ref, out)
        return _check(name, "fp32", len(photos), "image", ref, out)

    def run(self, report: bool = True) -> list[Check]:
        checks = self.graph_checks() + self.edit_checks()
        self.record(checks)
        if report:
            self.write_report(checks)
        return checks

    def record(self, checks: list[Check]) -> None:
        """Results into the manifest: every check, and each variant's worst error."""
        m = self.manifest
        for graph, entry in m["graphs"].items():
            for vname, variant in entry["variants"].items():
                mine = [c for c in checks if c.graph == graph and c.variant == vname]
                variant["error"] = {
                    "max_abs": max(c.max_abs for c in mine), "rel_l2": max(c.rel_l2 for c in mine),
                    mine[0].metric: worst(mine), "passed": all(c.passed for c in mine),
                }
        m["validation"] = {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "batches": list(self.batches), "seed": self.seed, "passed": all(c.passed for c in checks),
            "tolerances": {p: {k: {"metric": t[0], "threshold": t[1], "higher_is_better": t[2]} for k, t in kinds.items()}
                           for p, kinds in TOLERANCES.items()},
            "checks": [dict(asdict(c), passed=c.passed) for c in checks],
        }
        write_manifest(self.folder, m)

    def write_report(self, checks: list[Check]) -> Path:
        # The report folder is the validator's own part of a bundle (replace_problem spares it too).
        with atomic_path(self.folder / REPORT_DIR, is_dir=True, replace=lambda _: None) as tmp:
            pictures = []
            for name, picture in self.images.items():
                file = f"{name.replace(':', '_')}.png"
                picture.save(tmp / file)
                pictures.append((name, file))
            (tmp / "index.html").write_text(render_html(self.manifest, checks, pictures))
        return self.folder / REPORT_DIR / "index.html"


def worst(checks: list[Check]) -> float:
    values = [c.value for c in checks]
    return min(values) if checks[0].higher_is_better else max(values)


def summary_rows(checks: list[Check]) -> list[tuple]:
    """One row per (graph, variant): metric, worst value (= the tightest tolerance that passes), tolerance."""
    rows, seen = [], {}
    for c in checks:
        seen.setdefault((c.graph, c.variant), []).append(c)
    for (graph, variant), group in seen.items():
        c0 = group[0]
        rows.append((graph, variant, ",".join(str(c.batch) for c in group), c0.metric, worst(group),
                     f"{'>=' if c0.higher_is_better else '<='} {c0.tolerance:g}", max(c.max_abs for c in group),
                     all(c.passed for c in group)))
    return rows


def format_table(checks: list[Check]) -> str:
    header = f"{'graph':<28} {'variant':<11} {'batch':<6} {'metric':<8} {'would pass at':>14} {'tolerance':>12} {'max abs':>10}  result"
    lines = [header, "-" * len(header)]
    for graph, variant, batches, metric, value, tol, max_abs, ok in summary_rows(checks):
        lines.append(f"{graph:<28} {variant:<11} {batches:<6} {metric:<8} {value:>14.6g} {tol:>12} {max_abs:>10.2e}  {'ok' if ok else 'FAIL'}")
    return "\n".join(lines)


def render_html(manifest: dict, checks: list[Check], pictures: list[tuple]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr class={'ok' if ok else 'fail'}><td>{e(g)}</td><td>{e(v)}</td><td>{b}</td><td>{m}</td>"
        f"<td>{val:.6g}</td><td>{e(t)}</td><td>{mx:.2e}</td><td>{'ok' if ok else 'FAIL'}</td></tr>"
        for g, v, b, m, val, t, mx, ok in summary_rows(checks))
    figs = "".join(f"<figure><figcaption>{e(n)}: PyTorch | exported | |error| (scaled to max)</figcaption>"
                   f"<img src='{e(f)}'></figure>" for n, f in pictures)
    gen = manifest["generator"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Bundle validation</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}} td:first-child{{text-align:left}}
tr.fail{{background:#fdd}} figure{{display:inline-block;margin:1em}} img{{image-rendering:pixelated;max-width:480px}}</style></head>
<body><h1>Validation: exported graphs vs PyTorch</h1>
<p>Generator {gen['size']} px, {len(gen['layout'])} style layers; CLIP {e(str(manifest['clip']['name'] or 'custom'))};
batches {manifest['validation']['batches']}; overall: <b>{'PASSED' if manifest['validation']['passed'] else 'FAILED'}</b>.
"would pass at" is the tightest tolerance this run satisfies.</p>
<table><tr><th>graph</th><th>variant</th><th>batches</th><th>metric</th><th>would pass at</th><th>tolerance</th><th>max abs</th><th>result</th></tr>
{rows}</table>{figs}</body></html>
"""
