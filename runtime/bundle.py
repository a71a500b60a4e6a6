"""The bundle format (DESIGN §5): one folder, `manifest.json` and the files it lists.

The exporter writes bundles with these constants; the runtime reads them back and refuses any bundle
it cannot trust (wrong format or version, a listed file missing, resized or with another sha256)
with a message that names the file and the problem.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .files import sha256_file

FORMAT = "styleclip-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Graph names; mappers add one `mapper_<name>` graph each.
CORE_GRAPHS = ("mapping", "styles", "synthesis", "synthesis_wplus", "text_encoder")


class BundleError(ValueError):
    """A bundle that cannot be used, with the file and the problem."""


def read_manifest(folder) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder} is not a bundle: {MANIFEST} is missing (build one with `cli.py export`)")
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
    for key in ("files", "graphs", "generator"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(f"{path} lacks its '{key}' section; re-export the bundle")
    return manifest


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
