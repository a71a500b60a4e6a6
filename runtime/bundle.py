"""The bundle format (DESIGN §5): one folder, `manifest.json` and the files it lists.

The exporter writes bundles with these constants; the runtime reads them back and refuses any bundle
it cannot trust (wrong format or version, a listed file missing, resized or with another sha256)
with a message that names the file and the problem.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .edit_settings import check_edit_settings
from .files import sha256_file
from .tokenizer import trim_padding

FORMAT = "styleclip-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Graphs every bundle has (read_manifest requires them); mappers add one `mapper_<name>` graph each.
CORE_GRAPHS = ("mapping", "styles", "synthesis", "synthesis_wplus", "text_encoder")
# What the runtime reads from each manifest section (runtime/editor.py): section -> required keys.
REQUIRED = {
    "files": (), "graphs": (), "tables": ("latent_avg",), "defaults": ("truncation",),
    "generator": ("layout", "n_latent", "style_dim"), "clip": ("context_length", "tokenizer"),
}
REEXPORT = "re-export the bundle with `python cli.py export`"


class BundleError(ValueError):
    """A bundle that cannot be used, with the file and the problem."""


def read_manifest(folder) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist (build one with `python cli.py export` or `make demo`)")
    if not path.is_file():
        raise BundleError(f"{folder} is not a bundle: {MANIFEST} is missing (build one with `python cli.py export`)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path} is not valid JSON ({err}); re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path} has bundle format version {version}; this runtime reads version {FORMAT_VERSION}. "
            "Re-export the bundle with a matching toolkit."
        )
    problem = _structure_problem(manifest)
    if problem:
        raise BundleError(f"{path} is incomplete: {problem}; {REEXPORT}")
    return manifest


def _structure_problem(m: dict) -> str | None:
    """The first thing the runtime needs that the manifest lacks, or None."""
    for section, keys in REQUIRED.items():
        if not isinstance(m.get(section), dict):
            return f"it lacks its '{section}' section"
        if missing := [k for k in keys if k not in m[section]]:
            return f"its '{section}' section lacks {', '.join(repr(k) for k in missing)}"
    if not isinstance(m["clip"]["tokenizer"], dict) or "file" not in m["clip"]["tokenizer"]:
        return "its 'clip' section lacks the tokenizer 'file'"
    if not isinstance(m.get("templates"), list) or not m["templates"] or not all(isinstance(t, str) for t in m["templates"]):
        return "it lacks its 'templates' section (a non-empty list of prompt templates)"
    for rel, entry in m["files"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            return f"its file entry {rel!r} lacks 'size' or 'sha256'"
    if missing := [g for g in CORE_GRAPHS if g not in m["graphs"]]:
        return f"it lacks the graph(s) {', '.join(missing)}"
    for name, entry in m["graphs"].items():
        variants = entry.get("variants") if isinstance(entry, dict) else None
        fp32 = variants.get("fp32") if isinstance(variants, dict) else None
        if not isinstance(fp32, dict) or "file" not in fp32:
            return f"graph {name!r} lacks its fp32 variant file"
    for name, info in (m.get("mappers") or {}).items():
        if not isinstance(info, dict) or "prompt" not in info or info.get("graph") not in m["graphs"]:
            return f"mapper {name!r} lacks its 'prompt' or its graph"
    enc = m.get("encoder")
    if enc and (not isinstance(enc, dict) or enc.get("graph") not in m["graphs"] or not isinstance(enc.get("input_size"), int)):
        return "its 'encoder' section lacks its graph or 'input_size'"
    if m.get("global_directions") and not {"fs3", "s_std"} <= set(m["tables"]):
        return "it lists global directions but lacks the 'fs3' or 's_std' table"
    try:
        check_edit_settings(m.get("edit_settings") or {})  # optional section
    except ValueError as err:
        return f"its 'edit_settings' section is invalid ({err})"
    return None


def verify_file(folder, manifest: dict, rel: str) -> Path:
    """Path of a listed file after checking its size and sha256 against the manifest."""
    entry = manifest["files"].get(rel)
    if entry is None:
        raise BundleError(f"{rel} is not listed in the bundle's manifest")
    path = Path(folder) / rel
    if not path.is_file():
        raise BundleError(f"bundle file {rel} is missing from {folder}; re-export the bundle")
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


def load_table(folder, manifest: dict, rel: str) -> np.ndarray:
    """A verified `.npy` table, never unpickled."""
    path = verify_file(folder, manifest, rel)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise BundleError(f"bundle table {rel} is not a plain .npy array ({err})") from None


def text_tokens(manifest: dict, tokens: np.ndarray) -> np.ndarray:
    """Token ids [N, context] as the bundle's text encoder takes them: with the padding cut where its
    token axis is dynamic (a causal CLIP pooled at end-of-text: same embeddings, far less work)."""
    if manifest["graphs"]["text_encoder"]["inputs"][0]["shape"][1] == "length":
        return trim_padding(tokens)
    return tokens
