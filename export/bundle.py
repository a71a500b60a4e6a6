"""`cli.py export`: models from local files -> one self-describing, verified bundle folder (DESIGN §5).

The bundle is assembled in a temporary sibling folder and renamed into place at the end, so an
interrupted export leaves no half bundle and never damages an existing one.
"""
from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import open_clip
import torch
from tqdm import tqdm

from precompute.checkpoints import latent_avg_source, load_generator, require_file
from precompute.clip_model import load_clip
from precompute.encoder import NORMALIZATION, RESIZE, load_encoder
from precompute.mapper import load_mapper
from runtime.bundle import FORMAT, FORMAT_VERSION, MANIFEST, replace_problem
from runtime.edit_math import DEFAULT_ALPHA, DEFAULT_BETA, TEMPLATES
from runtime.edit_settings import check_edit_settings
from runtime.memory import release_memory
from runtime.files import atomic_path, check_name_length, read_npy, read_npz, sha256_file, slugify

from . import __version__
from .converters import OPSET, ExportError, convert_fp16, convert_int8, export_onnx, export_torchscript
from .graphs import TRUNCATION, InputSampler, clip_graphs, encoder_graph, generator_graphs, mapper_graph
from .tensorrt import build_engine, require_tensorrt

EXAMPLE_BATCH = 2  # torch.export specializes dims whose example size is 0 or 1


def int8_graph(name: str) -> bool:
    """The graphs whose time is MatMuls with constant weights, where dynamic int8 pays on CPU (the text
    encoder and the mappers); convolutions (synthesis) have no fast dynamic-int8 kernel in onnxruntime."""
    return name == "text_encoder" or name.startswith("mapper_")


@dataclass
class Sources:
    """Local model files a bundle is built from (recorded with their sha256 for `validate`)."""

    generator: Path
    clip: Path
    clip_name: str | None = None  # an open_clip name when `clip` is a raw weights file
    mappers: list[Path] = field(default_factory=list)  # our mapper format (.json/.safetensors)
    fs3: Path | None = None  # [rows, embed_dim] .npy
    s_stats: Path | None = None  # .npz with flat `mean` and `std` over all style channels
    trust_pickle: bool = False
    edit_settings: dict = field(default_factory=dict)  # tuned settings per prompt (runtime/edit_settings.py)
    encoder: Path | None = None  # e4e: our format (.json/.safetensors) or an official .pt checkpoint


@dataclass
class ExportOptions:
    fp16: bool = False
    torchscript: bool = False
    tensorrt: bool = False
    image_encoder: bool = False
    opset: int = OPSET
    int8: bool = False  # dynamic int8 variants of the graphs that are mostly MatMul (int8_graph)
    openvino: bool = False  # 'openvino' variants: synthesis graphs in the form OpenVINO runs best


@dataclass
class Models:
    generator: torch.nn.Module
    clip: torch.nn.Module
    mappers: dict[str, torch.nn.Module]
    tables: dict[str, np.ndarray]
    edit_settings: dict  # checked, prompt keys normalized (runtime/edit_settings.py)
    encoder: torch.nn.Module | None = None

    def sampler(self) -> InputSampler:
        return InputSampler(self.generator, self.clip, self.encoder.config.input_size if self.encoder else None)


def demo_sources(demo_dir: Path) -> Sources:
    """The shipped demo world (artifacts/demo): generator, CLIP, mappers, global-direction tables, the
    encoder (when trained) and the demo edits' tuned settings (precompute/demo/edits.py)."""
    from precompute.demo.edits import DEMO_EDITS

    need = {"generator": demo_dir / "generator.json", "CLIP": demo_dir / "clip.json"}
    for what, path in need.items():
        if not path.is_file():
            raise ValueError(f"the demo {what} is not in {demo_dir} ({path.name} missing); "
                             "pass --generator and --clip to export your own models")
    fs3, stats = demo_dir / "fs3.npy", demo_dir / "s_stats.npz"
    has_gd = fs3.is_file() and stats.is_file()
    return Sources(need["generator"], need["CLIP"], None, sorted((demo_dir / "mappers").glob("*.json")),
                   fs3 if has_gd else None, stats if has_gd else None,
                   edit_settings={e.target: e.tuned_settings() for e in DEMO_EDITS},
                   encoder=demo_dir / "encoder.json" if (demo_dir / "encoder.json").is_file() else None)


def mapper_name(path: Path) -> str:
    name = slugify(Path(path).stem)
    if not name:
        raise ValueError(f"cannot derive a mapper name from {path}")
    return name


def load_sources(src: Sources) -> Models:
    edit_settings = check_edit_settings(src.edit_settings)  # a mistake there fails before the slow loading
    gen = load_generator(src.generator, trust_pickle=src.trust_pickle)
    clip = load_clip(src.clip_name, src.clip, trust_pickle=src.trust_pickle)
    mappers = {}
    for path in src.mappers:
        mapper = load_mapper(path)
        if (mapper.config.n_latent, mapper.config.style_dim) != (gen.n_latent, gen.config.style_dim):
            raise ValueError(f"mapper {path} is for W+ [{mapper.config.n_latent}, {mapper.config.style_dim}], "
                             f"the generator's is [{gen.n_latent}, {gen.config.style_dim}]")
        if (name := mapper_name(path)) in mappers:
            raise ValueError(f"two mappers are named {name!r}; rename one file")
        mappers[name] = mapper
    encoder = None
    if src.encoder is not None:
        encoder = load_encoder(require_file(src.encoder, "encoder"), trust_pickle=src.trust_pickle)
        if (encoder.n_latent, encoder.config.style_dim) != (gen.n_latent, gen.config.style_dim):
            raise ValueError(f"encoder {src.encoder} gives W+ [{encoder.n_latent}, {encoder.config.style_dim}], the "
                             f"generator's is [{gen.n_latent}, {gen.config.style_dim}]; pass the encoder trained for "
                             "this generator")
    tables = {"latent_avg": gen.latent_avg.numpy().astype(np.float32)}
    if (src.fs3 is None) != (src.s_stats is None):
        raise ValueError("global directions need both --fs3 and --s-stats")
    if src.fs3 is not None:
        tables.update(read_direction_tables(src.fs3, src.s_stats, gen.layout, clip.embed_dim))
    return Models(gen, clip, mappers, tables, edit_settings, encoder)


def read_direction_tables(fs3_path, stats_path, layout, embed_dim) -> dict[str, np.ndarray]:
    fs3 = read_npy(fs3_path, "fs3 table (.npy [rows, embed_dim])").astype(np.float32)
    # Rows follow layout.conv_index(); a table may stop at a layer boundary (official FFHQ: 5376 = up to 128 px).
    boundaries = np.cumsum([l.channels for l in layout.conv_layers]).tolist()
    if fs3.ndim != 2 or fs3.shape[1] != embed_dim or fs3.shape[0] not in boundaries:
        raise ValueError(f"fs3 {fs3_path} has shape {fs3.shape}; expected [rows, {embed_dim}] with rows at a "
                         f"conv-layer boundary (one of {boundaries})")
    stats = read_npz(stats_path, "S statistics (.npz with 'mean' and 'std', from `cli.py s-stats`)", ("mean", "std"))
    mean, std = (stats[k].astype(np.float32) for k in ("mean", "std"))
    if mean.shape != (layout.total,) or std.shape != (layout.total,):
        raise ValueError(f"S statistics {stats_path} must hold flat mean/std of {layout.total} channels")
    return {"fs3": fs3, "s_mean": mean, "s_std": std}


def _file_entry(folder: Path, rel: str, role: str) -> dict:
    path = folder / rel
    return {"role": role, "sha256": sha256_file(path), "size": path.stat().st_size}


def _io(name: str, shape: list, dtype: str) -> dict:
    return {"name": name, "shape": shape, "dtype": dtype}


def check_target(out) -> None:
    """Refuse, before any work, an `out` that export must not replace: anything but a bundle of ours."""
    out = check_name_length(out, "--out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"--out {out} exists and is not a folder; choose another path")
    if out.exists() and (problem := replace_problem(out)):
        raise FileExistsError(f"--out {out} cannot be replaced: {problem}")


CLIP_GRAPHS = ("text_encoder", "image_encoder")


def free_weights(module: torch.nn.Module | None) -> None:
    """Empty a module's parameters and buffers in place (every reference to the module sees it emptied)."""
    if module is None:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        tensor.data = torch.empty(0, dtype=tensor.dtype)
    release_memory()


def export_bundle(out, src: Sources, options: ExportOptions = ExportOptions(), progress: bool = True) -> dict:
    """Build the bundle at `out`, replacing an existing bundle of ours only once the new one is complete
    (never any other folder: checked before the work and again at the swap)."""
    check_target(out)
    trt_env = require_tensorrt() if options.tensorrt else None  # fail before any work
    models = load_sources(src)
    gen, clip = models.generator, models.clip
    sampler = models.sampler()
    specs = generator_graphs(gen, sampler)
    specs += [mapper_graph(name, m, sampler) for name, m in models.mappers.items()]
    specs += clip_graphs(clip, sampler, options.image_encoder)
    if models.encoder is not None:
        specs.append(encoder_graph(models.encoder, sampler))
    rng = np.random.default_rng(0)
    files, graphs = {}, {}
    with atomic_path(Path(out), is_dir=True, replace=replace_problem) as tmp:
        for sub in ("graphs", "tables", "tokenizer"):
            (tmp / sub).mkdir()
        clip_specs = [spec.name for spec in specs if spec.name in CLIP_GRAPHS]  # CLIP's weights freed after the last
        for spec in tqdm(specs, desc="export graphs", unit="graph", disable=not progress):
            example = spec.sample(EXAMPLE_BATCH, rng)
            with torch.no_grad():
                out_example = spec.module(torch.from_numpy(example)).numpy()
            variants = {}
            rel = f"graphs/{spec.name}.onnx"
            export_onnx(spec, example, tmp / rel, options.opset)
            variants["fp32"] = {"file": rel, "format": "onnx", "precision": "fp32"}
            if options.fp16:
                rel16 = f"graphs/{spec.name}.fp16.onnx"
                convert_fp16(tmp / rel, tmp / rel16)
                variants["fp16"] = {"file": rel16, "format": "onnx", "precision": "fp16", "weights": "float16",
                                    "compute": "float32"}
            if options.openvino and spec.openvino_module is not None:
                rel_ov = f"graphs/{spec.name}.openvino.onnx"
                export_onnx(spec, example, tmp / rel_ov, options.opset, variant="openvino")
                variants["openvino"] = {"file": rel_ov, "format": "onnx", "precision": "fp32"}
            if options.int8 and int8_graph(spec.name):
                rel8 = f"graphs/{spec.name}.int8.onnx"
                convert_int8(tmp / rel, tmp / rel8)
                variants["int8"] = {"file": rel8, "format": "onnx", "precision": "int8"}
            if options.torchscript:
                rel_ts = f"torchscript/{spec.name}.pt"
                (tmp / "torchscript").mkdir(exist_ok=True)
                export_torchscript(spec, example, tmp / rel_ts)
                variants["torchscript"] = {"file": rel_ts, "format": "torchscript", "precision": "fp32"}
            if trt_env is not None:
                rel_trt = f"tensorrt/{spec.name}.plan"
                (tmp / "tensorrt").mkdir(exist_ok=True)
                build_engine(tmp / rel, tmp / rel_trt, spec.input_name, spec.shape_range(example))
                variants["tensorrt"] = {"file": rel_trt, "format": "tensorrt", "precision": "fp32", "environment": trt_env}
            for v in variants.values():
                files[v["file"]] = _file_entry(tmp, v["file"], f"graph:{spec.name}")
            graphs[spec.name] = {
                "inputs": [_io(spec.input_name, spec.input_shape(example), str(example.dtype))],
                "outputs": [_io(spec.output_name, ["batch", *out_example.shape[1:]], str(out_example.dtype))],
                "metric": spec.metric,
                "variants": variants,
            }
            if clip_specs and spec.name == clip_specs[-1]:
                # CLIP's weights (0.6 GB for ViT-B-32, and the fused text graph's copies) freed once its graphs are
                # written: e4e's export, last, takes 3 GB beside them at FFHQ size. Only its metadata is used after.
                for done in specs:
                    if done.name in CLIP_GRAPHS:
                        free_weights(done.onnx_module)
                free_weights(clip.model)
        tables = {}
        for name, array in models.tables.items():
            rel = f"tables/{name}.npy"
            np.save(tmp / rel, np.ascontiguousarray(array), allow_pickle=False)
            files[rel] = _file_entry(tmp, rel, f"table:{name}")
            tables[name] = rel
        vocab = f"tokenizer/{Path(clip.vocab_path).name}"
        shutil.copyfile(clip.vocab_path, tmp / vocab)
        files[vocab] = _file_entry(tmp, vocab, "tokenizer")
        manifest = build_manifest(models, src, options, graphs, files, tables, vocab)
        write_manifest(tmp, manifest)
    return manifest


def build_manifest(models: Models, src: Sources, options, graphs, files, tables, vocab) -> dict:
    gen, clip = models.generator, models.clip
    sources = {"generator": src.generator, "clip": src.clip, **{f"mapper_{n}": p for n, p in zip(models.mappers, src.mappers)}}
    if src.fs3 is not None:
        sources.update(fs3=src.fs3, s_stats=src.s_stats)
    if src.encoder is not None:
        sources["encoder"] = src.encoder
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "producer": {
            "toolkit": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "open_clip": open_clip.__version__, "opset": options.opset,
        },
        "sources": {k: {"path": str(Path(p).resolve()), "sha256": sha256_file(p)} for k, p in sources.items()},
        "generator": {**gen.config.to_dict(), "n_latent": gen.n_latent, "layout": gen.layout.to_list(),
                      "truncation": TRUNCATION, "latent_avg_source": latent_avg_source(gen)},
        "clip": {
            "name": clip.name, "activation": clip.activation, "activation_source": clip.activation_source,
            "embed_dim": clip.embed_dim, "context_length": clip.context_length,
            "image_size": clip.image_size, "preprocess": clip.preprocess, "preprocess_cfg": clip.preprocess_cfg,
            "tokenizer": {"file": vocab, "type": "clip-bpe", "sot": 49406, "eot": 49407, "pad": 0, "lowercase": True},
        },
        "templates": list(TEMPLATES),
        "tables": tables,
        "global_directions": None if "fs3" not in tables else {
            "fs3_rows": int(models.tables["fs3"].shape[0]),
            "row_order": "non-ToRGB style channels in layout order (layout conv_index); channels past the last row get no edit",
        },
        "mappers": {
            name: {"graph": f"mapper_{name}", "prompt": m.config.prompt, "split": list(m.config.split),
                   "enabled": m.config.enabled, "delta_scale": 0.1}
            for name, m in models.mappers.items()
        },
        "encoder": None if models.encoder is None else encoder_section(models.encoder),
        "defaults": {"alpha": DEFAULT_ALPHA, "beta": DEFAULT_BETA, "truncation": TRUNCATION},
        "edit_settings": models.edit_settings,
        "graphs": graphs,
        "files": files,
        "validation": None,
    }


def encoder_section(encoder) -> dict:
    """What the runtime needs to turn a picture into the encoder's input (runtime/photos.py)."""
    c = encoder.config
    return {"graph": "encoder", "input_size": c.input_size, "n_latent": c.n_latent, "style_dim": c.style_dim,
            "color": "RGB", "normalization": NORMALIZATION, "resize": RESIZE, "square": "required (or crop='center')",
            "includes_latent_avg": True, "architecture": c.to_dict()}


def write_manifest(folder: Path, manifest: dict) -> None:
    import json

    with atomic_path(Path(folder) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
