"""The bundle format (DESIGN §5): one folder, `manifest.json` and the files it lists.

The exporter writes bundles with these constants; the runtime reads them back and refuses any bundle
it cannot trust with a BundleError that names the entry and the problem: a wrong format or version, a
section of the wrong type or shape (checked when the manifest is read, not deep in the math), a path
that leaves the bundle folder, a listed file missing, resized or with another sha256, a graph whose
inputs and outputs differ from what the manifest declares.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

from .edit_settings import check_edit_settings
from .files import PRODUCER, foreign_files_problem, read_npy, regular_file, sha256_file
from .stylespace import StyleSpaceLayout
from .tokenizer import trim_padding

FORMAT = "styleclip-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
# Graphs every bundle has (read_manifest requires them); mappers add one `mapper_<name>` graph each. W+ renders
# as styles -> synthesis; bundles of older toolkits also carry `synthesis_wplus`, which is left unused.
CORE_GRAPHS = ("mapping", "styles", "synthesis", "text_encoder")
DTYPES = ("float32", "float16", "int64", "int32")
REEXPORT = "re-export the bundle with `python cli.py export`"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64", "tensor(int32)": "int32"}


class BundleError(ValueError):
    """A bundle that cannot be used, with the file and the problem."""


class _Invalid(Exception):
    """One problem found while checking the manifest's structure (becomes a BundleError)."""


def is_bundle(folder) -> bool:
    """Whether `folder` holds a manifest this toolkit wrote (any version): what export may replace."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def replace_problem(folder) -> str | None:
    """Why the existing `folder` must not be replaced by a new bundle, or None: it must be a bundle this
    toolkit wrote, holding only the files its manifest lists (plus the validation report)."""
    folder = Path(folder)
    if not is_bundle(folder):
        return (f"it is not a {PRODUCER} bundle (no {MANIFEST} of ours) and is left alone; "
                "choose another --out or remove the folder yourself")
    listed = set(json.loads((folder / MANIFEST).read_text()).get("files") or {}) | {MANIFEST}
    return foreign_files_problem(folder, listed, spare=("report",))


def read_manifest(folder) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist (build one with `python cli.py export` or `make demo`)")
    if not path.is_file():
        raise BundleError(f"{folder} is not a bundle: {MANIFEST} is missing (build one with `python cli.py export`)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} has {path.stat().st_size} bytes, more than any manifest; {REEXPORT}")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"{path} is not valid JSON ({err}); {REEXPORT}") from None
    except RecursionError:
        raise BundleError(f"{path} is nested too deeply to be a manifest; {REEXPORT}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    if "format_version" not in manifest:
        raise BundleError(f"{path} lacks 'format_version' (the integer {FORMAT_VERSION}); {REEXPORT}")
    version = manifest["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):  # "1", 1.0, true, null: a type mismatch
        raise BundleError(
            f"{path}: 'format_version' must be the integer {FORMAT_VERSION}, got {_json_type(version)} "
            f"(a type mismatch); write it as {FORMAT_VERSION}, without quotes or a decimal point, or {REEXPORT}"
        )
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path} has bundle format version {version}; this runtime reads version {FORMAT_VERSION}. "
            "Re-export the bundle with a matching toolkit."
        )
    try:
        _check_structure(manifest)
    except _Invalid as err:
        raise BundleError(f"{path} is invalid: {err}; {REEXPORT}") from None
    return manifest


# --- structure ---------------------------------------------------------------------------------------
def _need(section: dict, key: str, where: str, check, expected: str):
    if key not in section:
        raise _Invalid(f"its {where} lacks {key!r}")
    value = section[key]
    if not check(value):
        raise _Invalid(f"its {where} {key!r} must be {expected}, got {_show(value)}")
    return value


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value) -> str:
    """A JSON value in words, for a type mismatch: 'the string "1"', 'the boolean true', 'null'."""
    if value is None:
        return "null"
    kind = {bool: "boolean", str: "string", float: "decimal number", list: "array", dict: "object"}.get(type(value), "value")
    return f"the {kind} {_show(value)}"


def _is_int(v, lo=1, hi=1 << 31) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _section(m: dict, name: str) -> dict:
    if name not in m:
        raise _Invalid(f"it lacks its '{name}' section")
    if not isinstance(m[name], dict):
        raise _Invalid(f"its '{name}' section must be an object, got {_show(m[name])}")
    return m[name]


def safe_relative(rel) -> bool:
    """A path inside the bundle: relative, '/'-separated, no '..', no empty or odd parts."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel or rel.startswith("/"):
        return False
    parts = PurePosixPath(rel).parts
    canonical = str(PurePosixPath(rel)) == rel  # no "./", "//" or trailing "/"
    return canonical and bool(parts) and all(p not in ("", ".", "..") for p in parts) and ":" not in parts[0]


def _listed(m: dict, rel, where: str) -> str:
    if not safe_relative(rel):
        raise _Invalid(f"{where} names {_show(rel)}, which is not a path inside the bundle")
    if rel not in m["files"]:
        raise _Invalid(f"{where} names {rel!r}, which its 'files' section does not list")
    return rel


def _check_io(items, where: str) -> None:
    if not isinstance(items, list) or len(items) != 1:
        raise _Invalid(f"{where} must list exactly one tensor, got {_show(items)}")
    io = items[0]
    if not isinstance(io, dict):
        raise _Invalid(f"{where} must be an object with name, shape and dtype")
    _need(io, "name", where, _is_text, "a name")
    _need(io, "dtype", where, lambda v: v in DTYPES, f"one of {', '.join(DTYPES)}")
    _need(io, "shape", where, lambda v: isinstance(v, list) and 1 <= len(v) <= 8 and all(_is_int(d) or _is_text(d) for d in v),
          "a list of sizes and axis names")


def _expected_io(m: dict, name: str, total: int) -> tuple[list, list] | None:
    """The shapes the runtime relies on for graph `name`, from the generator and CLIP sections."""
    g = m["generator"]
    wplus, image = ["batch", g["n_latent"], g["style_dim"]], ["batch", 3, g.get("size"), g.get("size")]
    shapes = {"mapping": (["batch", g["style_dim"]], ["batch", g["style_dim"]]), "styles": (wplus, ["batch", total]),
              "synthesis": (["batch", total], image),
              "text_encoder": (["batch", None], ["batch", m["clip"].get("embed_dim")])}
    encoder = m.get("encoder")
    if isinstance(encoder, dict) and name == encoder.get("graph"):
        size = encoder.get("input_size")
        return ["batch", 3, size, size], wplus
    if name.startswith("mapper_"):
        return wplus, wplus
    return shapes.get(name)


def _same_shape(declared: list, expected: list) -> bool:
    """Axis 0 is the dynamic batch; None in `expected` takes a size or an axis name; other axes must match
    (an expected None size from an older manifest's missing key is not checked)."""
    return len(declared) == len(expected) and isinstance(declared[0], str) and all(
        e is None or d == e for d, e in zip(declared[1:], expected[1:]))


def _check_structure(m: dict) -> None:
    files = _section(m, "files")
    for rel, entry in files.items():
        if not safe_relative(rel):
            raise _Invalid(f"its file entry {_show(rel)} is not a path inside the bundle")
        if not isinstance(entry, dict) or not _is_int(entry.get("size"), 0, 1 << 40) \
                or not (isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])):
            raise _Invalid(f"its file entry {rel!r} lacks 'size' or 'sha256' (a byte count and 64 hex digits)")
    gen = _section(m, "generator")
    _need(gen, "n_latent", "'generator' section", _is_int, "a positive integer")
    _need(gen, "style_dim", "'generator' section", _is_int, "a positive integer")
    if "size" in gen:
        _need(gen, "size", "'generator' section", lambda v: _is_int(v, 4, 1 << 16), "a power of two")
    layout = _need(gen, "layout", "'generator' section", lambda v: isinstance(v, list) and bool(v), "the StyleSpace layout table")
    try:
        table = StyleSpaceLayout.from_list(layout)
    except (ValueError, TypeError, AttributeError) as err:
        raise _Invalid(f"its 'generator' layout is not a StyleSpace layout table ({err})") from None
    if table.n_latent != gen["n_latent"]:
        raise _Invalid(f"its 'generator' layout reads {table.n_latent} W+ rows, n_latent says {gen['n_latent']}")
    _check_sections(m, table.total)


def _check_sections(m: dict, total: int) -> None:
    clip = _section(m, "clip")
    _need(clip, "context_length", "'clip' section", lambda v: _is_int(v, 2, 4096), "an integer of at least 2")
    if "embed_dim" in clip:
        _need(clip, "embed_dim", "'clip' section", _is_int, "a positive integer")
    tokenizer = _need(clip, "tokenizer", "'clip' section", lambda v: isinstance(v, dict), "an object")
    if "file" not in tokenizer:
        raise _Invalid("its 'clip' section lacks the tokenizer 'file'")
    _listed(m, tokenizer["file"], "the tokenizer")
    templates = m.get("templates")
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
        raise _Invalid("it lacks its 'templates' section (a non-empty list of prompt templates)")
    for t in templates:
        if t.count("{}") != 1 or "{" in t.replace("{}", "") or "}" in t.replace("{}", ""):
            raise _Invalid(f"its prompt template {_show(t)} must hold exactly one '{{}}' and no other braces")
    tables = _section(m, "tables")
    for name, rel in tables.items():
        _listed(m, rel, f"table {name!r}")
    if "latent_avg" not in tables:
        raise _Invalid("its 'tables' section lacks 'latent_avg'")
    defaults = _section(m, "defaults")
    _need(defaults, "truncation", "'defaults' section", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
    for key in ("alpha", "beta"):
        if key in defaults:
            _need(defaults, key, "'defaults' section", _is_number, "a number")
    graphs = _section(m, "graphs")
    if missing := [g for g in CORE_GRAPHS if g not in graphs]:
        raise _Invalid(f"it lacks the graph(s) {', '.join(missing)}")
    for name, entry in graphs.items():
        where = f"graph {name!r}"
        if not isinstance(entry, dict):
            raise _Invalid(f"{where} must be an object")
        variants = entry.get("variants")
        if not isinstance(variants, dict) or not isinstance(variants.get("fp32"), dict) or "file" not in variants["fp32"]:
            raise _Invalid(f"graph {name!r} lacks its fp32 variant file")
        for vname, variant in variants.items():
            if not isinstance(variant, dict) or "file" not in variant:
                raise _Invalid(f"{where} variant {_show(vname)} lacks its 'file'")
            _listed(m, variant["file"], f"{where} variant {vname!r}")
        for kind in ("inputs", "outputs"):
            _check_io(entry.get(kind), f"{where} {kind}")
        expected = _expected_io(m, name, total)
        if expected is not None:
            for kind, shape in zip(("inputs", "outputs"), expected):
                if not _same_shape(entry[kind][0]["shape"], shape):
                    raise _Invalid(f"{where} {kind} have shape {_show(entry[kind][0]['shape'])}; the generator and CLIP "
                                   f"sections need {_show(['batch', *shape[1:]])}")
    for name, info in (m.get("mappers") or {}).items():
        if not isinstance(info, dict) or not _is_text(info.get("prompt")) or info.get("graph") not in graphs:
            raise _Invalid(f"mapper {name!r} lacks its 'prompt' or its graph")
    _check_encoder(m.get("encoder"), graphs)
    gd = m.get("global_directions")
    if gd is not None and not isinstance(gd, dict):
        raise _Invalid(f"its 'global_directions' section must be an object or null, got {_show(gd)}")
    if gd:
        if not {"fs3", "s_std"} <= set(tables):
            raise _Invalid("it lists global directions but lacks the 'fs3' or 's_std' table")
        _need(gd, "fs3_rows", "'global_directions' section", lambda v: _is_int(v, 1, total),
              "a positive row count")
    try:
        check_edit_settings(m.get("edit_settings") or {})  # optional section
    except ValueError as err:
        raise _Invalid(f"its 'edit_settings' section is invalid ({err})") from None


E4E_NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}  # what runtime/photos.py applies


def _check_encoder(encoder, graphs: dict) -> None:
    """The optional e4e section: its graph, its input size, and the normalization this runtime applies."""
    if encoder is None:
        return
    if not isinstance(encoder, dict):
        raise _Invalid(f"its 'encoder' section must be an object or null, got {_show(encoder)}")
    if encoder.get("graph") not in graphs:
        raise _Invalid(f"its 'encoder' section names the graph {_show(encoder.get('graph'))}, which it lacks")
    _need(encoder, "input_size", "'encoder' section", lambda v: _is_int(v, 16, 4096), "an image size of 16 to 4096")
    norm = encoder.get("normalization")
    if norm is not None and (not isinstance(norm, dict) or any(norm.get(k) != v for k, v in E4E_NORMALIZATION.items())):
        raise _Invalid(f"its 'encoder' normalization is {_show(norm)}; this runtime applies e4e's "
                       "Normalize(0.5, 0.5) (x / 127.5 - 1) only")


# --- files -------------------------------------------------------------------------------------------
def verify_file(folder, manifest: dict, rel: str) -> Path:
    """Path of a listed file after checking it lies inside the bundle folder (symbolic links resolved),
    is a regular file, and has the manifest's size and sha256."""
    entry = manifest["files"].get(rel)
    if entry is None:
        raise BundleError(f"{rel} is not listed in the bundle's manifest")
    if not safe_relative(rel):
        raise BundleError(f"the manifest entry {rel!r} is not a path inside the bundle; {REEXPORT}")
    folder = Path(folder)
    path = folder / rel
    if not os.path.lexists(path):
        raise BundleError(f"bundle file {rel} is missing from {folder}; re-export the bundle")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise BundleError(f"bundle file {rel} is a link that leads outside the bundle folder; it is not read")
    try:
        regular_file(path, f"bundle file {rel}")
    except (OSError, ValueError) as err:
        raise BundleError(str(err)) from None
    if path.stat().st_size != entry["size"]:
        raise BundleError(f"bundle file {rel} has {path.stat().st_size} bytes, the manifest says {entry['size']} (truncated or replaced)")
    if sha256_file(path) != entry["sha256"]:
        raise BundleError(f"bundle file {rel} does not match its sha256 in the manifest (corrupted or modified)")
    return path


def verify_bundle(folder) -> dict:
    """Read the manifest and check every listed file; returns the manifest."""
    manifest = read_manifest(folder)
    for rel in manifest["files"]:
        verify_file(folder, manifest, rel)
    return manifest


def table_shape(manifest: dict, name: str) -> tuple | None:
    """The shape the runtime needs for a table (None: not checked)."""
    gen = manifest["generator"]
    total = StyleSpaceLayout.from_list(gen["layout"]).total
    shapes = {"latent_avg": (gen["style_dim"],), "s_mean": (total,), "s_std": (total,)}
    if name == "fs3" and manifest.get("global_directions") and "embed_dim" in manifest["clip"]:
        return manifest["global_directions"]["fs3_rows"], manifest["clip"]["embed_dim"]
    return shapes.get(name)


def load_table(folder, manifest: dict, rel: str) -> np.ndarray:
    """A verified `.npy` table, never unpickled, of the shape the manifest implies."""
    path = verify_file(folder, manifest, rel)
    try:
        table = read_npy(path, f"bundle table {rel}")
    except ValueError as err:
        raise BundleError(str(err)) from None
    name = next((n for n, r in manifest["tables"].items() if r == rel), None)
    expected = table_shape(manifest, name) if name else None
    if expected is not None and table.shape != tuple(expected):
        raise BundleError(f"bundle table {rel} has shape {list(table.shape)}; the manifest implies {list(expected)}; {REEXPORT}")
    return table


def check_session(manifest: dict, graph: str, rel: str, session) -> None:
    """The opened graph's inputs and outputs (names, ranks, static sizes, dtypes) against the manifest:
    a graph swapped for another valid one (with its sha256 recomputed) fails here, not in a kernel."""
    entry = manifest["graphs"][graph]
    for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        declared = entry[kind]
        problem = None
        if len(actual) != len(declared):
            problem = f"has {len(actual)} {kind}, the manifest declares {len(declared)}"
        else:
            for want, got in zip(declared, actual):
                shape = list(got.shape)
                if got.name != want["name"]:
                    problem = f"names its {kind[:-1]} {got.name!r}, the manifest {want['name']!r}"
                elif _ORT_TYPES.get(got.type) != want["dtype"]:
                    problem = f"has {kind[:-1]} {got.name!r} of type {got.type}, the manifest says {want['dtype']}"
                elif len(shape) != len(want["shape"]) or any(
                        (isinstance(w, int) and g != w) or (isinstance(w, str) and isinstance(g, int))
                        for w, g in zip(want["shape"], shape)):
                    problem = f"has {kind[:-1]} {got.name!r} of shape {shape}, the manifest says {want['shape']}"
                if problem:
                    break
        if problem:
            raise BundleError(f"bundle graph {rel} ({graph}) {problem}: it is not the graph this bundle was exported "
                              f"with; {REEXPORT}")


def text_tokens(manifest: dict, tokens: np.ndarray) -> np.ndarray:
    """Token ids [N, context] as the bundle's text encoder takes them: with the padding cut where its
    token axis is dynamic (a causal CLIP pooled at end-of-text: same embeddings, far less work)."""
    if manifest["graphs"]["text_encoder"]["inputs"][0]["shape"][1] == "length":
        return trim_padding(tokens)
    return tokens
