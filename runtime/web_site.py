"""`cli.py web`: a bundle -> a self-contained static site that runs the same edits in the browser (DESIGN §12).

The site holds the page and its ES modules (web/src), onnxruntime-web's module and WebAssembly files
(from web/node_modules after `npm ci --prefix web`), the graphs the page runs (copied byte for byte),
the tables as little-endian binary, the tokenizer's vocabulary and text tables, and `site.json`: what
the page needs from the bundle's manifest plus the sha256 and size of every file. index.html pins the
sha256 of site.json and the SRI hashes of its scripts; the page checks every file it fetches with
crypto.subtle before it uses it.

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
CORE_GRAPHS = ("mapping", "styles", "synthesis", "text_encoder")


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


def page_graphs(manifest: dict) -> list[str]:
    graphs = list(CORE_GRAPHS) + [info["graph"] for info in (manifest.get("mappers") or {}).values()]
    encoder = manifest.get("encoder")  # issue 16: {"graph", "input_size", "normalization", ...}
    if encoder:
        if encoder.get("graph") not in manifest["graphs"]:
            raise BundleError(f"the bundle's encoder section names the graph {encoder.get('graph')!r}, which it lacks")
        graphs.append(encoder["graph"])
    return graphs


def _io(entry: dict) -> dict:
    return {"name": entry["name"], "shape": entry["shape"], "dtype": entry["dtype"]}


def site_manifest(manifest: dict, graphs: dict, tables: dict, tokenizer: dict, ort: dict) -> dict:
    """What the page reads: the bundle's generator, CLIP, templates, mappers, tuned settings and defaults."""
    gen, clip = manifest["generator"], manifest["clip"]
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
        "mappers": {name: {"graph": info["graph"], "prompt": info["prompt"]}
                    for name, info in (manifest.get("mappers") or {}).items()},
        "global_directions": manifest.get("global_directions"),
        "encoder": manifest.get("encoder"),  # input size / normalization of an `encoder` graph, when the bundle has one
        "graphs": graphs,
        "tables": tables,
        "tokenizer": tokenizer,
        "ort": ort,
    }


def _sri(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def _index_html(folder: Path) -> str:
    """index.html with an import map that pins every module's SRI hash and the sha256 of site.json."""
    imports = {f"./js/{m}": f"./js/{m}" for m in MODULES}
    integrity = {f"./js/{m}": _sri(folder / "js" / m) for m in MODULES}
    integrity.update({f"./ort/{module}": _sri(folder / "ort" / module) for module, _ in ORT_BACKENDS.values()})
    importmap = json.dumps({"imports": imports, "integrity": integrity}, indent=1)
    # Start every fetch while the page parses: the modules (else fetched level by level of imports) and the
    # data files every visit needs (not onnxruntime's, which depend on the backend the page picks).
    site = json.loads((folder / SITE_MANIFEST).read_text())
    data = [SITE_MANIFEST, *(g["file"] for g in site["graphs"].values()), *(t["file"] for t in site["tables"].values()),
            site["tokenizer"]["vocab"], site["tokenizer"]["tables"]]
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


def _tuned_directions(bundle: Path, manifest: dict, folder: Path) -> dict:
    """The text directions of the bundle's tuned prompts (from their tuned neutral texts), computed by the
    Python runtime: the page starts its first edit without waiting for its text encoder (any other prompt,
    or another neutral text, runs the page's own text encoder; the tests compare both with Python)."""
    from .editor import Editor

    editor = Editor(bundle)
    keys = [[prompt, settings.get("neutral", "a face")] for prompt, settings in manifest["edit_settings"].items()]
    directions = np.stack([editor.text_direction(target, neutral) for target, neutral in keys])
    rel = "tables/text_directions.bin"
    np.ascontiguousarray(directions, dtype="<f4").tofile(folder / rel)
    return {"file": rel, "dtype": "float32", "shape": list(directions.shape), "byte_order": "little", "keys": keys}


def build_site(bundle, out, ort_folder=None) -> dict:
    """Write the site for `bundle` at `out`; returns its site manifest."""
    bundle, out = Path(bundle), Path(out)
    dist = ort_dist(ort_folder)  # fail before any work
    missing = [name for name in (*MODULES, *STATIC, "index.html") if not (APP_DIR / name).is_file()]
    if missing:
        raise WebSiteError(f"the web app's sources are incomplete ({APP_DIR} lacks {', '.join(missing)}); "
                           "run from a checkout of the project")
    check_destination(out)
    manifest = verify_bundle(bundle)  # every listed file's size and sha256
    if not manifest.get("global_directions") and not manifest.get("mappers"):
        raise WebSiteError(f"bundle {bundle} has neither global-direction tables nor mappers: the page could not edit")
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
        for name in page_graphs(manifest):
            entry = manifest["graphs"][name]
            rel = f"graphs/{name}.onnx"
            shutil.copyfile(bundle / entry["variants"]["fp32"]["file"], tmp / rel)
            graphs[name] = {"file": rel, "input": _io(entry["inputs"][0]), "output": _io(entry["outputs"][0])}
        tables = {}
        if manifest.get("global_directions") and manifest.get("edit_settings"):
            tables["text_directions"] = _tuned_directions(bundle, manifest, tmp)
        for name, rel_npy in manifest["tables"].items():
            if name == "s_mean":
                continue  # the page does not use the style means
            array = load_table(bundle, manifest, rel_npy)
            if array.dtype.kind != "f":
                raise BundleError(f"bundle table {rel_npy} holds {array.dtype}, not floats")
            rel = f"tables/{name}.bin"
            np.ascontiguousarray(array, dtype="<f4").tofile(tmp / rel)
            tables[name] = {"file": rel, "dtype": "float32", "shape": list(array.shape), "byte_order": "little"}
        vocab = f"tokenizer/{Path(manifest['clip']['tokenizer']['file']).name}"
        shutil.copyfile(bundle / manifest["clip"]["tokenizer"]["file"], tmp / vocab)
        (tmp / "tokenizer" / "text_tables.json").write_text(json.dumps(text_tables(), ensure_ascii=False))
        tokenizer = {"vocab": vocab, "tables": "tokenizer/text_tables.json",
                     "sot": manifest["clip"]["tokenizer"].get("sot"), "eot": manifest["clip"]["tokenizer"].get("eot")}
        site = site_manifest(manifest, graphs, tables, tokenizer, ort)
        site["files"] = {
            str(p.relative_to(tmp)): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / SITE_MANIFEST).write_text(json.dumps(site, indent=1) + "\n")
        (tmp / "index.html").write_text(_index_html(tmp))
    return site


def site_size(folder) -> dict:
    """Bytes on disk: the whole site and what one visit downloads per backend."""
    folder = Path(folder)
    site = json.loads((folder / SITE_MANIFEST).read_text())
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    other = {b: set(files.values()) for b, files in site["ort"].items()}
    visit = {}
    for backend in other:
        skip = set().union(*(files for b, files in other.items() if b != backend))
        visit[backend] = total - sum((folder / rel).stat().st_size for rel in skip)
    return {"total": total, "per_visit": visit}


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
