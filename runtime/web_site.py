"""`cli.py web`: a bundle -> a self-contained static site that runs the same edits in the browser (DESIGN §12).

The site holds the page and its ES modules (web/src), onnxruntime-web's module and WebAssembly files
(from web/node_modules after `npm ci --prefix web`), the graphs the page runs (copied byte for byte),
the tables as little-endian binary, the tokenizer's vocabulary and text tables, and `site.json`: what
the page needs from the bundle's manifest plus the sha256 and size of every file. index.html pins the
sha256 of site.json and the SRI hashes of its scripts; the page checks every file it fetches with
crypto.subtle before it uses it. A first visit fetches only what the first edit needs (`first_visit`: the
page, onnxruntime-web, mapping, styles, synthesis and the tables); the text encoder and the BPE vocabulary
come with the first prompt that is not a tuned one, a mapper when chosen, the encoder with the first picture.
Graphs are the bundle's fp16 variants where it has them (`export --fp16`: weights stored in fp16, computed
in fp32, half the download), else its fp32 ones.

Needs numpy, the bundle and the runtime's text packages only (no torch, no onnx). The site is written
to a temporary sibling and renamed into place; an existing folder at the destination is replaced only
when it is a site this tool wrote (an empty folder of someone else's is not).
"""
from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import http.server
import json
import shutil
from pathlib import Path

import numpy as np

from . import edit_math
from .bundle import BundleError, load_table, verify_bundle
from .files import atomic_path, check_name_length, foreign_files_problem, sha256_file
from .web_text import text_tables

SITE_FORMAT = "styleclip-edge-site"
SITE_FORMAT_VERSION = 1
SITE_MANIFEST = "site.json"
WEB_DIR = Path(__file__).resolve().parents[1] / "web"
APP_DIR = WEB_DIR / "src"
ORT_DIST = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
# The page's ES modules besides index.html; app.js is the entry point.
MODULES = ("app.js", "editor.js", "editmath.js", "invert.js", "rng.js", "site.js", "textclean.js", "tokenizer.js")
STATIC = ("style.css",)
# onnxruntime-web builds the page picks from: WebAssembly everywhere, WebGPU where the browser has an adapter.
ORT_BACKENDS = {
    "wasm": ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm"),
    "webgpu": ("ort.webgpu.bundle.min.mjs", "ort-wasm-simd-threaded.asyncify.wasm"),
}
CORE_GRAPHS = ("mapping", "styles", "synthesis")  # what every edit runs: fetched on the first visit
OPTIONAL = ("encoder", "text_encoder", "mappers")  # what `--without` may leave out
WEIGHTS = ("auto", "fp32", "fp16")  # auto: the bundle's fp16 variant of a graph where it has one


class WebSiteError(ValueError):
    """A site that cannot be built where or from what was asked."""


def ort_dist(folder=None) -> Path:
    """onnxruntime-web's dist folder, checked to hold every file the page loads."""
    folder = Path(folder) if folder else ORT_DIST
    missing = [name for files in ORT_BACKENDS.values() for name in files if not (folder / name).is_file()]
    if missing:
        where = f"{folder} lacks {', '.join(missing)}" if folder.is_dir() else f"{folder} does not exist"
        raise WebSiteError(f"onnxruntime-web is not installed: {where}; run `npm ci --prefix web` "
                           "(or pass --ort-dist with onnxruntime-web's dist folder)")
    return folder


def replace_problem(out: Path) -> str | None:
    """Why an existing folder at `out` must not be replaced by a new site, or None: only a site this tool
    wrote, holding nothing but the files it lists, is replaced (a user's empty folder may be a mount point
    or carry permissions a web server needs: it is refused like any other)."""
    try:
        site = json.loads((out / SITE_MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        site = None
    if not isinstance(site, dict) or site.get("format") != SITE_FORMAT:
        return (f"it is not a site written by `cli.py web` (no {SITE_MANIFEST} of ours); choose another --out or "
                "remove it yourself")
    return foreign_files_problem(out, set(site.get("files") or {}) | {SITE_MANIFEST, "index.html"})


def check_destination(out: Path) -> None:
    """Refuse, before any work, an `out` that must not be replaced (the swap checks again)."""
    check_name_length(out, "--out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise WebSiteError(f"{out} exists and is not a folder; choose another --out")
    if out.exists() and (problem := replace_problem(out)):
        raise WebSiteError(f"{out} cannot be replaced: {problem}")


def check_without(without) -> tuple[str, ...]:
    """The parts a site leaves out (`--without encoder,text_encoder`), checked."""
    without = tuple(dict.fromkeys(w.strip() for w in without if w.strip()))
    if unknown := [w for w in without if w not in OPTIONAL]:
        raise WebSiteError(f"--without takes {', '.join(OPTIONAL)} (comma-separated), not {', '.join(unknown)}")
    return without


def page_graphs(manifest: dict, without=()) -> list[str]:
    graphs = list(CORE_GRAPHS)
    if "text_encoder" not in without:
        graphs.append("text_encoder")
    if "mappers" not in without:
        graphs += [info["graph"] for info in (manifest.get("mappers") or {}).values()]
    encoder = manifest.get("encoder")  # issue 16: {"graph", "input_size", "normalization", ...}
    if encoder and "encoder" not in without:
        if encoder.get("graph") not in manifest["graphs"]:
            raise BundleError(f"the bundle's encoder section names the graph {encoder.get('graph')!r}, which it lacks")
        graphs.append(encoder["graph"])
    return graphs


def graph_variant(manifest: dict, name: str, weights: str, bundle) -> str:
    """Which of the bundle's variants of graph `name` the site serves."""
    variants = manifest["graphs"][name]["variants"]
    if weights == "fp32" or (weights == "auto" and "fp16" not in variants):
        return "fp32"
    if "fp16" not in variants:
        raise WebSiteError(f"bundle {bundle} has no fp16 variant of its {name} graph; export it with --fp16, or pass "
                           "--weights fp32")
    return "fp16"


def _io(entry: dict) -> dict:
    return {"name": entry["name"], "shape": entry["shape"], "dtype": entry["dtype"]}


def site_manifest(manifest: dict, graphs: dict, tables: dict, tokenizer: dict, ort: dict, without=()) -> dict:
    """What the page reads: the bundle's generator, CLIP, templates, mappers, tuned settings and defaults."""
    gen, clip = manifest["generator"], manifest["clip"]
    mappers = {} if "mappers" in without else manifest.get("mappers") or {}
    return {
        "format": SITE_FORMAT,
        "format_version": SITE_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"created": manifest.get("created"), "producer": manifest.get("producer"),
                   "format_version": manifest.get("format_version")},
        "generator": {"size": gen.get("size"), "n_latent": gen["n_latent"], "style_dim": gen["style_dim"],
                      "layout": gen["layout"]},
        "clip": {"context_length": clip["context_length"], "embed_dim": clip.get("embed_dim")},
        "templates": manifest["templates"],
        "defaults": manifest["defaults"],
        "edit_settings": manifest.get("edit_settings") or {},
        "edit_math": {
            "alpha": edit_math.DEFAULT_ALPHA, "beta": edit_math.DEFAULT_BETA, "strength": edit_math.DEFAULT_STRENGTH,
            "alpha_range": edit_math.ALPHA_RANGE, "beta_range": edit_math.BETA_RANGE,
            "strength_range": edit_math.STRENGTH_RANGE, "truncation_range": (0.0, 1.0),
        },
        "mappers": {name: {"graph": info["graph"], "prompt": info["prompt"]} for name, info in mappers.items()},
        "global_directions": manifest.get("global_directions"),
        # input size / normalization of an `encoder` graph, when the bundle has one and the site keeps it
        "encoder": None if "encoder" in without else manifest.get("encoder"),
        "without": list(without),
        "graphs": graphs,
        "tables": tables,
        "tokenizer": tokenizer,
        "ort": ort,
    }


def _sri(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def first_visit(site: dict) -> list[str]:
    """The site's files a visit fetches before its first edit (onnxruntime-web's aside, which depend on the
    backend the page picks): the page, the graphs every edit runs, the tables and the text tables (prompt
    keys and blank checks). The tuned prompts' text directions are among the tables."""
    page = ["index.html", SITE_MANIFEST, *STATIC, *(f"js/{m}" for m in MODULES)]
    return page + [site["graphs"][g]["file"] for g in CORE_GRAPHS] + [t["file"] for t in site["tables"].values()] \
        + [site["tokenizer"]["tables"]]


def _index_html(folder: Path) -> str:
    """index.html with an import map that pins every module's SRI hash and the sha256 of site.json."""
    imports = {f"./js/{m}": f"./js/{m}" for m in MODULES}
    integrity = {f"./js/{m}": _sri(folder / "js" / m) for m in MODULES}
    integrity.update({f"./ort/{module}": _sri(folder / "ort" / module) for module, _ in ORT_BACKENDS.values()})
    importmap = json.dumps({"imports": imports, "integrity": integrity}, indent=1)
    # Start every fetch of the first visit while the page parses: the modules (else fetched level by level of
    # imports) and the data files the first edit needs (not onnxruntime's, which depend on the backend the
    # page picks, nor the graphs fetched on first use).
    site = json.loads((folder / SITE_MANIFEST).read_text())
    data = [rel for rel in first_visit(site) if not rel.startswith("js/") and rel not in ("index.html", *STATIC)]
    preloads = [f'<link rel="modulepreload" href="./js/{m}" integrity="{integrity[f"./js/{m}"]}">' for m in MODULES]
    preloads += [f'<link rel="preload" href="{rel}" as="fetch" crossorigin="anonymous">' for rel in data]
    html = (APP_DIR / "index.html").read_text()
    for key, value in {"{{IMPORTMAP}}": importmap, "{{PRELOADS}}": "\n".join(preloads), "{{APP_SRI}}": integrity["./js/app.js"],
                       "{{CSS_SRI}}": _sri(folder / "style.css"),
                       "{{SITE_SHA256}}": sha256_file(folder / SITE_MANIFEST)}.items():
        if key not in html:
            raise WebSiteError(f"{APP_DIR / 'index.html'} lacks the placeholder {key}")
        html = html.replace(key, value)
    return html


def _tuned_directions(bundle: Path, manifest: dict, folder: Path, precision: str) -> dict:
    """The text directions of the bundle's tuned prompts (from their tuned neutral texts), computed by the
    Python runtime with the text encoder variant the site serves (`precision`): the page starts its first edit
    without fetching its text encoder (any other prompt, or another neutral text, runs the page's own text
    encoder; the tests compare both with Python)."""
    from .editor import Editor

    editor = Editor(bundle, precision=precision)
    keys = [[prompt, settings.get("neutral", "a face")] for prompt, settings in manifest["edit_settings"].items()]
    directions = np.stack([editor.text_direction(target, neutral) for target, neutral in keys])
    rel = "tables/text_directions.bin"
    np.ascontiguousarray(directions, dtype="<f4").tofile(folder / rel)
    return {"file": rel, "dtype": "float32", "shape": list(directions.shape), "byte_order": "little", "keys": keys}


def build_site(bundle, out, ort_folder=None, without=(), weights: str = "auto") -> dict:
    """Write the site for `bundle` at `out` without the parts in `without` (OPTIONAL), its graphs in the
    bundle's `weights` variants (WEIGHTS); returns its site manifest."""
    bundle, out = Path(bundle), Path(out)
    without = check_without(without)
    if weights not in WEIGHTS:
        raise WebSiteError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    dist = ort_dist(ort_folder)  # fail before any work
    missing = [name for name in (*MODULES, *STATIC, "index.html") if not (APP_DIR / name).is_file()]
    if missing:
        raise WebSiteError(f"the web app's sources are incomplete ({APP_DIR} lacks {', '.join(missing)}); "
                           "run from a checkout of the project")
    check_destination(out)
    manifest = verify_bundle(bundle)  # every listed file's size and sha256
    if not manifest.get("global_directions") and not manifest.get("mappers"):
        raise WebSiteError(f"bundle {bundle} has neither global-direction tables nor mappers: the page could not edit")
    tuned = manifest.get("global_directions") and manifest.get("edit_settings")
    if "text_encoder" in without and not tuned and ("mappers" in without or not manifest.get("mappers")):
        raise WebSiteError(f"without its text encoder a site edits only the bundle's tuned prompts and its mappers; bundle "
                           f"{bundle} has {'no tuned prompts' if manifest.get('global_directions') else 'no global directions'}"
                           " and the site no mappers: keep the text encoder")
    graph_names = page_graphs(manifest, without)
    chosen = {name: graph_variant(manifest, name, weights, bundle) for name in graph_names}  # before any writing
    with atomic_path(out, is_dir=True, replace=replace_problem) as tmp:
        for sub in ("js", "ort", "graphs", "tables", "tokenizer"):
            (tmp / sub).mkdir()
        for name in MODULES:
            shutil.copyfile(APP_DIR / name, tmp / "js" / name)
        for name in STATIC:
            shutil.copyfile(APP_DIR / name, tmp / name)
        ort = {}
        for backend, (module, wasm) in ORT_BACKENDS.items():
            for name in (module, wasm):
                shutil.copyfile(dist / name, tmp / "ort" / name)
            ort[backend] = {"module": f"ort/{module}", "wasm": f"ort/{wasm}"}
        graphs = {}
        for name, variant in chosen.items():
            entry = manifest["graphs"][name]
            rel = f"graphs/{name}.onnx"
            shutil.copyfile(bundle / entry["variants"][variant]["file"], tmp / rel)
            graphs[name] = {"file": rel, "variant": variant, "input": _io(entry["inputs"][0]),
                            "output": _io(entry["outputs"][0])}
        tables = {}
        if tuned:
            tables["text_directions"] = _tuned_directions(bundle, manifest, tmp,
                                                          graph_variant(manifest, "text_encoder", weights, bundle))
        for name, rel_npy in manifest["tables"].items():
            if name == "s_mean":
                continue  # the page does not use the style means
            array = load_table(bundle, manifest, rel_npy)
            if array.dtype.kind != "f":
                raise BundleError(f"bundle table {rel_npy} holds {array.dtype}, not floats")
            rel = f"tables/{name}.bin"
            np.ascontiguousarray(array, dtype="<f4").tofile(tmp / rel)
            tables[name] = {"file": rel, "dtype": "float32", "shape": list(array.shape), "byte_order": "little"}
        vocab = None  # the BPE merges: only a text encoder needs token ids
        if "text_encoder" not in without:
            vocab = f"tokenizer/{Path(manifest['clip']['tokenizer']['file']).name}"
            shutil.copyfile(bundle / manifest["clip"]["tokenizer"]["file"], tmp / vocab)
        (tmp / "tokenizer" / "text_tables.json").write_text(json.dumps(text_tables(), ensure_ascii=False))
        tokenizer = {"vocab": vocab, "tables": "tokenizer/text_tables.json",
                     "sot": manifest["clip"]["tokenizer"].get("sot"), "eot": manifest["clip"]["tokenizer"].get("eot")}
        site = site_manifest(manifest, graphs, tables, tokenizer, ort, without)
        site["files"] = {
            str(p.relative_to(tmp)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / SITE_MANIFEST).write_text(json.dumps(site, indent=1) + "\n")
        (tmp / "index.html").write_text(_index_html(tmp))
    return site


def site_size(folder) -> dict:
    """Bytes on disk: the whole site, what a first visit downloads before its first edit and what a visit that
    uses every graph downloads, per backend (onnxruntime-web's files for that backend only)."""
    folder = Path(folder)
    site = json.loads((folder / SITE_MANIFEST).read_text())
    size = lambda rels: sum((folder / rel).stat().st_size for rel in rels)  # noqa: E731
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    ort = {b: set(files.values()) for b, files in site["ort"].items()}
    first, everything = {}, {}
    for backend in ort:
        skip = set().union(*(files for b, files in ort.items() if b != backend))
        everything[backend] = total - size(skip)
        first[backend] = size(first_visit(site)) + size(ort[backend])
    return {"total": total, "first_visit": first, "per_visit": everything}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the headers that let onnxruntime-web use threads (cross-origin isolation)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                      ".json": "application/json", ".onnx": "application/octet-stream", ".bin": "application/octet-stream",
                      ".gz": "application/octet-stream"}

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code="-", size="-"):  # quiet: only failed requests are logged
        if str(getattr(code, "value", code)).startswith(("4", "5")):
            super().log_request(code, size)


def make_server(folder, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the site on 127.0.0.1 only (port 0: any free port)."""
    folder = Path(folder)
    if not (folder / SITE_MANIFEST).is_file():
        raise WebSiteError(f"{folder} is not a site (no {SITE_MANIFEST}); build one with `python cli.py web BUNDLE --out {folder}`")
    handler = functools.partial(_Handler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise WebSiteError(f"cannot serve on 127.0.0.1:{port} ({err.strerror}); choose another --port") from None
