"""A kill at any moment of `export` leaves the old or the new bundle at --out, never a half or nothing, and
the next run leaves no temporaries behind; concurrent exports and readers stay safe.

The old bundle is exported without the mapper and the new one with it, so which one is at the path can be
told from its graph list. --out has a 200-character name: the temporaries' names must still fit.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.bundle import read_manifest, verify_bundle
from runtime.editor import Editor

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20
pytestmark = pytest.mark.slow


def export_command(models, out, with_mapper: bool):
    args = [sys.executable, str(ROOT / "cli.py"), "export", "--generator", models["generator"], "--clip", models["clip"],
            "--out", out]
    return [str(a) for a in args + (["--mapper", models["mapper"]] if with_mapper else [])]


def start(models, out, with_mapper, **env):
    return subprocess.Popen(export_command(models, out, with_mapper), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, **env})


def which(out: Path) -> str:
    """'old' or 'new' after checking every file of the bundle at `out` against its manifest."""
    manifest = verify_bundle(out)
    return "new" if "mapper_purple_hair" in manifest["graphs"] else "old"


def temporaries(folder: Path, keep) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def place(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kills")
    out = folder / ("b" * 200)
    (folder / ("." + out.name + ".old")).mkdir()  # a user's sibling with the old swap's name: never touched
    (folder / ("." + out.name + ".old") / "mine.txt").write_text("mine")
    (folder / "keep.txt").write_text("keep")
    proc = start(models, out, with_mapper=False)
    assert proc.wait() == 0, proc.stderr.read()
    assert which(out) == "old"
    return folder, out, {out.name, "keep.txt", "." + out.name + ".old"}


def test_kill_at_random_moments_leaves_old_or_new(models, place):
    folder, out, keep = place
    began = time.perf_counter()
    proc = start(models, out, with_mapper=True)
    assert proc.wait() == 0, proc.stderr.read()
    duration = time.perf_counter() - began
    rng = random.Random(0)
    seen = []
    for _ in range(KILLS):
        proc = start(models, out, with_mapper=rng.random() < 0.5)
        time.sleep(rng.uniform(0, duration * 1.05))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        seen.append(which(out))  # verifies every file: a whole bundle, old or new
    proc = start(models, out, with_mapper=False)  # the next run cleans what the killed ones left
    assert proc.wait() == 0, proc.stderr.read()
    assert which(out) == "old"
    assert temporaries(folder, keep) == []
    assert (folder / ("." + out.name + ".old") / "mine.txt").read_text() == "mine"
    assert (folder / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize("point,env", [("after-exchange", {}), ("between-renames", {"STYLECLIP_NO_RENAMEAT2": "1"})])
def test_kill_inside_the_swap(models, place, point, env):
    folder, out, keep = place
    before = which(out)
    proc = start(models, out, with_mapper=before == "old", STYLECLIP_CRASH_AT=point, **env)
    assert proc.wait() == 137
    if point == "after-exchange":
        assert which(out) != before  # the new bundle is in place; the old one waits in a temporary
    else:  # without renameat2 the swap is two renames: the old bundle is aside until the next run
        assert not out.exists()
    assert temporaries(folder, keep)
    proc = start(models, out, with_mapper=False, **env)  # puts the old one back (or removes it), then swaps
    assert proc.wait() == 0, proc.stderr.read()
    assert which(out) == "old" and temporaries(folder, keep) == []


def test_concurrent_exports_and_a_reader(models, place):
    folder, out, keep = place
    editor = Editor(out)
    w = editor.sample([1, 2])
    before = editor.render(w)
    procs = [start(models, out, with_mapper=True) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    assert which(out) == "new" and temporaries(folder, keep) == []
    np.testing.assert_array_equal(editor.render(w), before)  # a running Editor keeps its open graphs
    assert read_manifest(out)["graphs"].keys() == Editor(out).manifest["graphs"].keys()
    proc = start(models, out, with_mapper=False)
    assert proc.wait() == 0
