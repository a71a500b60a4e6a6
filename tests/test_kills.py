"""A kill at any moment of `export` leaves the old or the new bundle at --out, never a half or nothing, and
the next run leaves no temporaries behind; concurrent exports and readers stay safe.

The old bundle is exported without tuned edit settings and the new one with them, so which one is at the
path can be told from its manifest (and both take the same, least time: the five core graphs). --out has a 200-character name: the temporaries' names must still fit.

Each export is `cli.py export` run in a process forked from a server that has imported the toolkit once
(torch, onnx and open_clip take seconds to import; the server runs no torch op before forking, so the
children start clean), and killed with SIGKILL at a random moment of its run.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.bundle import read_manifest, verify_bundle
from runtime.editor import Editor

ROOT = Path(__file__).resolve().parents[1]
KILLS = 12  # random moments; the two instants inside the swap are killed deterministically below
pytestmark = pytest.mark.slow

SERVER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import signal
import cli, export.bundle  # the slow imports, once
for line in sys.stdin:
    args, env = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ.update(env)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)
        try:
            cli.main(args)
        except SystemExit as stop:
            os._exit(stop.code if isinstance(stop.code, int) else 1)
        os._exit(0)
    print(pid, flush=True)
    if sys.stdin.readline().strip() == "kill":  # the child is not reaped before: its pid is still its own
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class Exports:
    """Starts exports in forked children of the server; `wait` or `kill` gives the exit code (-9: killed)."""

    def __init__(self, models, settings: Path):
        self.models, self.settings = models, settings
        self.server = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def args(self, out, new: bool) -> list[str]:
        args = ["export", "--generator", str(self.models["generator"]), "--clip", str(self.models["clip"]), "--out", str(out)]
        return args + (["--edit-settings", str(self.settings)] if new else [])

    def start(self, out, new: bool, **env) -> int:
        args = self.args(out, new)
        self.server.stdin.write(json.dumps([args, env]) + "\n")
        self.server.stdin.flush()
        return int(self.server.stdout.readline())

    def wait(self, kill: bool = False) -> int:
        self.server.stdin.write("kill\n" if kill else "wait\n")
        self.server.stdin.flush()
        return int(self.server.stdout.readline())

    def run(self, out, new: bool, **env) -> int:
        self.start(out, new, **env)
        return self.wait()

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=60)


def which(out: Path) -> str:
    """'old' or 'new' after checking every file of the bundle at `out` against its manifest."""
    return "new" if verify_bundle(out)["edit_settings"] else "old"


def temporaries(folder: Path, keep) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    settings = tmp_path_factory.mktemp("settings") / "settings.json"
    settings.write_text(json.dumps({"a smiling face": {"alpha": 3}}))
    server = Exports(models, settings)
    yield server
    server.close()


@pytest.fixture(scope="module")
def place(exports, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kills")
    out = folder / ("b" * 200)
    (folder / ("." + out.name + ".old")).mkdir()  # a user's sibling with the old swap's name: never touched
    (folder / ("." + out.name + ".old") / "mine.txt").write_text("mine")
    (folder / "keep.txt").write_text("keep")
    began = time.perf_counter()
    assert exports.run(out, new=True) == 0
    duration = time.perf_counter() - began
    assert which(out) == "new"
    return folder, out, {out.name, "keep.txt", "." + out.name + ".old"}, duration


def test_kill_at_random_moments_leaves_old_or_new(exports, place):
    folder, out, keep, duration = place
    rng = random.Random(0)
    seen = []
    for _ in range(KILLS):
        exports.start(out, new=rng.random() < 0.5)
        time.sleep(rng.uniform(0, duration * 1.05))
        exports.wait(kill=True)
        seen.append(which(out))  # verifies every file: a whole bundle, old or new
    assert exports.run(out, new=False) == 0  # the next run cleans what the killed ones left
    assert which(out) == "old"
    assert temporaries(folder, keep) == []
    assert (folder / ("." + out.name + ".old") / "mine.txt").read_text() == "mine"
    assert (folder / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize("point,env", [("after-exchange", {}), ("between-renames", {"STYLECLIP_NO_RENAMEAT2": "1"})])
def test_kill_inside_the_swap(exports, place, point, env):
    folder, out, keep, _ = place
    before = which(out)
    assert exports.run(out, new=before == "old", STYLECLIP_CRASH_AT=point, **env) == 137
    if point == "after-exchange":
        assert which(out) != before  # the new bundle is in place; the old one waits in a temporary
    else:  # without renameat2 the swap is two renames: the old bundle is aside until the next run
        assert not out.exists()
    assert temporaries(folder, keep)
    assert exports.run(out, new=False, **env) == 0  # puts the old one back (or removes it), then swaps
    assert which(out) == "old" and temporaries(folder, keep) == []


def test_concurrent_exports_and_a_reader(exports, place):
    folder, out, keep, _ = place
    editor = Editor(out)
    w = editor.sample([1, 2])
    before = editor.render(w)
    exports.start(out, new=True)
    ours = subprocess.run([sys.executable, str(ROOT / "cli.py"), *exports.args(out, new=True)], capture_output=True,
                          text=True)
    assert exports.wait() == 0 and ours.returncode == 0, ours.stderr
    assert which(out) == "new" and temporaries(folder, keep) == []
    np.testing.assert_array_equal(editor.render(w), before)  # a running Editor keeps its open graphs
    assert read_manifest(out)["graphs"].keys() == Editor(out).manifest["graphs"].keys()
